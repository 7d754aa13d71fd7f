"""Experiments: drive the package's engine from config files. Every step is resumable.

    python training/run.py train training/configs/seg_real.json      # scenario A (resumes if stopped)
    python training/run.py tune training/runs/seg_real              # post-processing, chosen on the validation split
    python training/run.py evaluate training/runs/seg_real --tta    # test-split tables -> RUN/test_metrics_tta.json
    python training/run.py scenario A | B | all                      # everything for a scenario, in order

Paths in configs are relative to the repository root; ${EMIDEC} is the EMIDEC folder
(LVSEG_EMIDEC_DIR, default ../shared/data/emidec-lge-128).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"A": ["seg_real"], "B": ["pix2pix", "synthetic:seg_mixed", "seg_mixed"]}


def emidec_dir() -> str:
    return os.environ.get("LVSEG_EMIDEC_DIR", str(ROOT.parent / "shared/data/emidec-lge-128"))


def _path(value: str) -> str:
    value = value.replace("${EMIDEC}", emidec_dir())
    return value if os.path.isabs(value) else str(ROOT / value)


def load_config(path) -> dict:
    config = json.loads(Path(path).read_text())
    config["data"] = [_path(p) for p in config["data"]]
    for key in ("split", "out", "init"):
        if config.get(key):
            config[key] = _path(config[key])
    return config


def train(config_path, epochs=None) -> Path:
    from napari_lvseg.engine import TrainOptions, train as run_engine

    config = load_config(config_path)
    known = set(TrainOptions.__dataclass_fields__)
    options = TrainOptions(**{k: v for k, v in config.items() if k in known})
    if epochs:
        options.epochs = epochs
    resume = (Path(options.out) / "last.pt").exists()
    for event in run_engine(options, resume=resume):
        if event.kind == "step" and event.step % 20 == 0:
            print(f"step {event.step}/{event.total_steps} epoch {event.epoch} loss {event.losses['loss']:.4f} "
                  f"{event.samples_per_s or 0:.1f} samples/s eta {event.eta or 0:.0f}s", flush=True)
        elif event.kind != "step":
            print(f"[{event.kind}] epoch {event.epoch} {event.message} "
                  f"{json.dumps({k: round(v, 4) for k, v in event.metrics.items()}) if event.metrics else ''}", flush=True)
    return Path(options.out)


def make_synthetic(config_path) -> Path:
    from napari_lvseg.synthesis import synthesize_dataset

    config = load_config(config_path)
    spec = config["synthetic"]
    out = Path(config["data"][1])
    split = json.loads(Path(config["split"]).read_text())
    synthesize_dataset(masks_from=config["data"][0], n=spec["n"], out=out, model=_path(spec["generator"]),
                       seed=spec["seed"], cases=split["train"])
    return out


def evaluate(run, tta=False, split_name="test") -> dict:
    """Segment the split's cases with the run's model; study, pooled and EMIDEC tables to RUN/<split>_metrics.json."""
    from napari_lvseg.inference import segment
    from napari_lvseg.io import emidec
    from napari_lvseg.io.atomic import write_json_atomic
    from napari_lvseg.metrics import emidec_table, format_table, pooled_dice, study_table
    from napari_lvseg.models.store import load_model

    split = json.loads((ROOT / "training/split.json").read_text())[split_name]
    model = load_model(str(run), task="segmentation")
    cases, spacing, t0 = {}, {}, time.time()
    for case in emidec.find_cases(emidec_dir()):
        if case.name in split:
            image, labels = emidec.read_case(case)
            cases[case.name] = (segment(image.data, model, tta=tta).labels, labels.data)
            spacing[case.name] = labels.spacing
    seconds = time.time() - t0
    study, pooled = study_table(cases), pooled_dice(list(cases.values()))
    emidec_rows = emidec_table(cases, spacing=spacing)
    print(format_table(study, None))
    print(format_table(emidec_rows, None))
    print("pooled:", {k: round(v, 4) for k, v in pooled.items()})
    result = {"run": str(run), "split": split_name, "tta": tta, "cases": len(cases), "seconds": round(seconds, 1),
              "study": study, "emidec": emidec_rows, "pooled": pooled}
    name = f"{split_name}_metrics{'_tta' if tta else ''}.json"
    write_json_atomic(Path(run) / name, result)
    return result


def tune_postprocess(run, tta=True) -> dict:
    """Choose the post-processing minimum volumes on the validation split (never the test split).

    Writes the choice into the run's model card ("postprocess"), which `segment` then applies.
    """
    import itertools

    import numpy as np

    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.inference import postprocess, predict_probabilities
    from napari_lvseg.io import emidec
    from napari_lvseg.metrics import study_table
    from napari_lvseg.models.store import load_model, read_card, save_model

    split = json.loads((ROOT / "training/split.json").read_text())["val"]
    net, card = load_model(str(run), task="segmentation")
    raw = {}
    for case in emidec.find_cases(emidec_dir()):
        if case.name in split:
            image, labels = emidec.read_case(case)
            prob = predict_probabilities(net, normalize_slices(image.data, card.normalization), tta=tta)
            raw[case.name] = (prob.argmax(1).astype(np.uint8), labels.data)
    grid = {"min_infarct_voxels": [0, 50, 100, 200, 400], "min_no_reflow_voxels": [0, 10, 25, 50, 100]}
    scores = []
    for values in itertools.product(*grid.values()):
        options = dict(zip(grid, values))
        table = study_table({k: (postprocess(p, options), t) for k, (p, t) in raw.items()})
        scores.append((table[-1]["mean"], options))
        print(f"{options} -> validation mean Dice {table[-1]['mean']:.4f}")
    best_score, best = max(scores, key=lambda item: item[0])
    baseline = next(score for score, o in scores if not any(o.values()))
    card = read_card(Path(run))
    card.extra["postprocess"] = {**best, "tuned_on": "validation split", "val_mean_dice": round(best_score, 4),
                                 "val_mean_dice_without": round(baseline, 4)}
    save_model(Path(run), net, card)
    print(f"chosen {best}: {best_score:.4f} (without: {baseline:.4f})")
    return best


def markdown(run) -> str:
    """The run's test tables as Markdown rows for RESULTS.md (study per case, pooled, EMIDEC)."""
    lines = []
    for path in sorted(Path(run).glob("test_metrics*.json")):
        data = json.loads(path.read_text())
        s, p, e = data["study"][-1], data["pooled"], data["emidec"][-1]
        tag = f"{Path(run).name}{' + TTA' if data['tta'] else ''}"
        f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
        lines.append(f"| {tag} | per case | {f(s['cavity'])} | {f(s['myocardium'])} | {f(s['infarct'])} | "
                     f"{f(s['no_reflow'])} | {f(s['mean'])} |")
        lines.append(f"| {tag} | pooled | {f(p['cavity'])} | {f(p['myocardium'])} | {f(p['infarct'])} | "
                     f"{f(p['no_reflow'])} | {f(p['mean'])} |")
        lines.append(f"| {tag} | EMIDEC | myo {f(e['dice_myocardium'])} | infarct {f(e['dice_infarct'])} | "
                     f"no-reflow {f(e['dice_no_reflow'])} | HD95 {f(e['hd95_myocardium'])} | "
                     f"vol err inf {f(e['vol_err_infarct_pct'])} % / nr {f(e['vol_err_no_reflow_pct'])} % |")
    return "\n".join(lines)


def scenario(which: str) -> None:
    for step in SCENARIOS[which]:
        if step.startswith("synthetic:"):
            make_synthetic(ROOT / f"training/configs/{step.split(':')[1]}.json")
            continue
        run = train(ROOT / f"training/configs/{step}.json")
        if not step.startswith("pix2pix"):
            tune_postprocess(run)
            evaluate(run, tta=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("train")
    p.add_argument("config")
    p.add_argument("--epochs", type=int)
    p = sub.add_parser("synthetic")
    p.add_argument("config")
    p = sub.add_parser("evaluate")
    p.add_argument("run")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--split", default="test")
    p = sub.add_parser("table")
    p.add_argument("run")
    p = sub.add_parser("tune")
    p.add_argument("run")
    p = sub.add_parser("scenario")
    p.add_argument("which", choices=["A", "B", "all"])
    args = parser.parse_args(argv)
    if args.cmd == "train":
        train(args.config, args.epochs)
    elif args.cmd == "synthetic":
        make_synthetic(args.config)
    elif args.cmd == "table":
        print(markdown(args.run))
    elif args.cmd == "tune":
        tune_postprocess(args.run)
    elif args.cmd == "evaluate":
        evaluate(args.run, args.tta, args.split)
    else:
        for which in (["A", "B"] if args.which == "all" else [args.which]):
            scenario(which)
    return 0


if __name__ == "__main__":
    sys.exit(main())
