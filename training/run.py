"""Experiments: drive the package's engine from config files. Every step is resumable.

Each step is also ``python -m training STEP ...`` (``python -m training --help``: every step and study).

    python training/run.py train training/configs/seg_real.json      # scenario A (resumes if stopped)
    python training/run.py tune training/runs/seg_real              # post-processing, chosen on the validation split
    python training/run.py tune RUN --from training/runs/seg_real   # ... copied from a run that had validation cases
    python training/run.py last training/runs/seg_real OUT          # the run's last epoch as a model folder
    python training/run.py member lvseg-seg 2 OUT                   # one network of an ensemble as a model folder
    python training/run.py run training/configs/seg_real.json        # train + tune + evaluate
    python training/run.py evaluate training/runs/seg_real --tta    # test-split tables -> RUN/test_metrics_tta.json
    python training/run.py ensemble training/runs/ens RUN RUN ...   # average runs into one model (then tune, evaluate)
    python training/run.py scenario A | B | L | C | all              # everything for a scenario, in order
    python training/run.py scenario all --seeds 0 1 2 --parallel --device cuda --workers 2 --skip-pix2pix
                                        # every seed of both scenarios at once (a GPU machine)
    bash training/gpu_batch.sh C "0 1 2" 420   # the same, as one timed batch on a lent GPU machine

Which runs an ensemble takes is chosen on the validation split by training/choose_ensemble.py.

A seed other than the config's trains into <out>_seed<k>.

Paths in configs are relative to the repository root; ${EMIDEC} is the EMIDEC folder
(LVSEG_EMIDEC_DIR, default ../shared/data/emidec-lge-128). A config names its base ("base": "seg_real.json") and sets
only what differs (training/config.py; ``python -m training config CONFIG`` prints what it resolves to).
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import read_config

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"A": ["seg_real"], "B": ["pix2pix", "synthetic:seg_mixed", "seg_mixed"],
             # the wide setting: A's and B's data with width 20, batch 32 and twice the samples
             "L": ["seg_large", "pix2pix", "synthetic:seg_mixed", "seg_mixed_large"],
             # the wide setting with 2.5-D input (each slice with its neighbours above and below)
             "C": ["seg_context_large", "pix2pix", "synthetic:seg_mixed_context_large", "seg_mixed_context_large"]}
# post-processing tried on the validation split (`tune_postprocess`, training/choose_ensemble.py): the infarct and
# no-reflow probability weights, then the minimum volumes. Each list starts with "no change", so a tie keeps it.
WEIGHT_GRID = {"infarct_weight": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0], "no_reflow_weight": [1.0, 1.5, 2.0, 3.0, 4.0, 6.0]}
VOLUME_GRID = {"min_infarct_voxels": [0, 50, 100, 200, 400], "min_no_reflow_voxels": [0, 10, 25, 50, 100]}
POSTPROCESS_GRID = {**WEIGHT_GRID, **VOLUME_GRID}


def emidec_dir() -> str:
    return os.environ.get("LVSEG_EMIDEC_DIR", str(ROOT.parent / "shared/data/emidec-lge-128"))


def _path(value: str) -> str:
    value = value.replace("${EMIDEC}", emidec_dir())
    return value if os.path.isabs(value) else str(ROOT / value)


def load_config(path) -> dict:
    """A config's options (bases resolved, `training.config`) with its paths as the runner reads them: ${EMIDEC} and
    paths relative to the repository root made absolute; a model name (no slash) left as it is."""
    config = read_config(path)
    if not config.get("out"):
        raise SystemExit(f"{path}: no 'out' (a task base: name a config built on it)")
    config["data"] = [_path(p) for p in config["data"]]
    for key in ("split", "out", "init", "seg_guide"):
        # a model reference without a slash is a registry name ("lvseg-pix2pix"), not a path
        if config.get(key) and (key in ("split", "out") or "/" in config[key]):
            config[key] = _path(config[key])
    return config


def run_folder(config_path, seed=None) -> Path:
    config = load_config(config_path)
    out = Path(config["out"])
    return out if seed is None or seed == config.get("seed", 0) else out.with_name(f"{out.name}_seed{seed}")


def train(config_path, epochs=None, seed=None, workers=None, device=None, deadline=None, threads=None) -> Path:
    """Train (or resume) a config's run; ``deadline`` (Unix time): stop there, keeping the best model so far.

    ``threads`` overrides the config's torch threads (two runs sharing two cores: one each)."""
    from napari_lvseg.engine import StopToken, TrainOptions, train as run_engine

    config = load_config(config_path)
    known = set(TrainOptions.__dataclass_fields__)
    options = TrainOptions(**{k: v for k, v in config.items() if k in known})
    options.out = str(run_folder(config_path, seed))
    for name, value in (("epochs", epochs), ("seed", seed), ("workers", workers), ("device", device),
                        ("threads", threads)):
        if value is not None:
            setattr(options, name, value)
    resume = (Path(options.out) / "last.pt").exists()
    stop = StopToken()
    for event in run_engine(options, stop=stop, resume=resume):
        if deadline and time.time() > deadline and not stop.requested:
            stop.stop("time limit reached")
        if event.kind == "step" and event.step % 20 == 0:
            print(f"step {event.step}/{event.total_steps} epoch {event.epoch} loss {event.losses['loss']:.4f} "
                  f"{event.samples_per_s or 0:.1f} samples/s eta {event.eta or 0:.0f}s", flush=True)
        elif event.kind != "step":
            metrics = json.dumps({k: round(v, 4) for k, v in event.metrics.items()}) if event.metrics else ""
            print(f"[{event.kind}] epoch {event.epoch} {event.message} {metrics}", flush=True)
    return Path(options.out)


def make_synthetic(config_path, device=None) -> Path:
    """The config's synthetic pair folder, made once (an existing complete folder is kept)."""
    from napari_lvseg.io.pairs import PairFolder
    from napari_lvseg.synthesis import synthesize_dataset

    config = load_config(config_path)
    spec = config["synthetic"]
    out = Path(config["data"][1])
    if PairFolder.is_pair_folder(out) and len(PairFolder.open(out).records()) >= spec["n"]:
        print(f"{out}: {spec['n']} synthetic pairs already there")
        return out
    if out.exists():
        raise SystemExit(f"{out}: an incomplete synthetic folder; remove it and run again")
    split = json.loads(Path(config["split"]).read_text())
    if spec.get("edits"):   # the training cases' real masks edited, each rendered in its own real image
        from napari_lvseg.synthesis_edits import synthesize_edited_dataset

        synthesize_edited_dataset(config["data"][0], spec["n"], out, spec["edits"], model=_path(spec["generator"]),
                                  seed=spec["seed"], cases=split["train"], stacks=spec.get("stacks", False),
                                  device=device, grain=spec.get("grain", True), fill=spec.get("fill", "lv"))
        return out
    synthesize_dataset(masks_from=config["data"][0], n=spec["n"], out=out, model=_path(spec["generator"]),
                       seed=spec["seed"], cases=split["train"], device=device, stacks=spec.get("stacks", False),
                       slice_seeds=spec.get("slice_seeds", False))
    return out


def load_on(run, device=None):
    """(network, card) of a run folder, on ``device`` (default: CPU)."""
    from napari_lvseg.models.registry import load_model

    net, card = load_model(str(run), task="segmentation")
    return net.to(device or "cpu"), card


def split_names(split_name: str) -> list:
    """The case names of a part (train / val / test) of training/split.json."""
    return json.loads((ROOT / "training/split.json").read_text())[split_name]


def read_cases(names, data=None) -> dict:
    """``{case name: (image, labels)}`` (`Volume`s) of the named EMIDEC cases under ``data`` (default: the EMIDEC
    folder), in folder order."""
    from napari_lvseg.io import emidec

    return {case.name: emidec.read_case(case) for case in emidec.find_cases(data or emidec_dir())
            if case.name in names}


def raw_probabilities(model, image, tta=True):
    """A ``(network, card)``'s class probabilities (Z, 5, Y, X) for an image stack."""
    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.inference import predict_probabilities

    net, card = model
    return predict_probabilities(net, normalize_slices(image, card.normalization), tta=tta)


def raw_labels(model, image, tta=True):
    """A ``(network, card)``'s labels for an image stack, before post-processing."""
    return raw_probabilities(model, image, tta).argmax(1).astype("uint8")


def evaluate(run, tta=False, split_name="test", device=None) -> dict:
    """Segment the split's cases with the run's model; the evaluation report (per case, pooled, EMIDEC, 95% intervals
    over the cases; `napari_lvseg.evaluation`) to RUN/<split>_metrics[_tta].json, which `summary` reads."""
    from napari_lvseg.evaluation import evaluate_cases
    from napari_lvseg.inference import segment

    model = load_on(run, device)
    cases, t0 = [], time.time()
    for name, (image, labels) in read_cases(split_names(split_name)).items():
        cases.append((name, segment(image.data, model, tta=tta).labels, labels.data, labels.spacing))
    seconds = time.time() - t0
    report = evaluate_cases(cases, meta={"run": str(run), "split": split_name, "tta": tta,
                                         "seconds": round(seconds, 1)})
    print(report.tables())
    report.to_json(Path(run) / f"{split_name}_metrics{'_tta' if tta else ''}.json")
    return report.to_dict()


def postprocess_grid(raw: dict):
    """``(options, {case: (post-processed labels, truth)})`` for every option set of `POSTPROCESS_GRID`, in grid
    order (class weights outermost, smallest first: `max` over it keeps the smaller weights on a tie).

    ``raw``: ``{case: (predicted probabilities (Z, 5, Y, X), truth)}``."""
    import itertools

    from napari_lvseg.postprocess import apply_minimum_volumes, clean_anatomy, labels_from_probabilities

    def grid(spec):
        return [dict(zip(spec, values)) for values in itertools.product(*spec.values())]

    for weights in grid(WEIGHT_GRID):
        # `postprocess` = clean_anatomy then apply_minimum_volumes: the costly cleaning once per weights
        cleaned = {k: (clean_anatomy(labels_from_probabilities(p, weights), weights), t) for k, (p, t) in raw.items()}
        for volumes in grid(VOLUME_GRID):
            options = {**weights, **volumes}
            yield options, {k: (apply_minimum_volumes(c, options), t) for k, (c, t) in cleaned.items()}


def postprocess_scores(raw: dict) -> list:
    """``[(per-case mean Dice, options)]`` for every option set of `POSTPROCESS_GRID`, in grid order."""
    from napari_lvseg.evaluation import evaluate_cases

    return [(evaluate_cases(cases, emidec=False, bootstrap=0).per_case["mean"], options)
            for options, cases in postprocess_grid(raw)]


def tune_postprocess(run, tta=True, device=None) -> dict:
    """Choose the post-processing (class weights, minimum volumes) on the validation split (never the test split).

    Writes the choice into the run's model card ("postprocess"), which `segment` then applies.
    """
    model = load_on(run, device)
    raw = {name: (raw_probabilities(model, image.data, tta), labels.data)
           for name, (image, labels) in read_cases(split_names("val")).items()}
    scores = postprocess_scores(raw)
    for score, options in scores:
        print(f"{options} -> validation mean Dice {score:.4f}")
    best_score, best = max(scores, key=lambda item: item[0])
    baseline = scores[0][0]  # the grid's first option set changes nothing
    _write_postprocess(run, model, {**best, "tuned_on": "validation split", "val_mean_dice": round(best_score, 4),
                                    "val_mean_dice_without": round(baseline, 4)})
    print(f"chosen {best}: {best_score:.4f} (without: {baseline:.4f})")
    return best


def _write_postprocess(run, model, postprocess: dict) -> None:
    """Store a post-processing choice in the run's model card, which `segment` then applies."""
    from napari_lvseg.models.weights import save_model

    net, card = model
    card.extra["postprocess"] = postprocess
    save_model(Path(run), net.cpu(), card)


def adopt_postprocess(run, source) -> dict:
    """Give a run the post-processing another run chose on validation (a run trained without validation cases)."""
    from napari_lvseg.models.card import read_card

    chosen = read_card(Path(source)).extra.get("postprocess")
    if not chosen:
        raise SystemExit(f"{source}: no tuned post-processing in its card; run `tune` on it first")
    # the chosen options only: the source's validation scores are not this run's
    postprocess = {**{k: chosen[k] for k in POSTPROCESS_GRID if k in chosen},
                   "tuned_on": f"validation split, by {Path(source).name}"}
    _write_postprocess(run, load_on(run), postprocess)
    print(f"{run}: post-processing of {source}: {postprocess}")
    return postprocess


def export_last(run, out) -> Path:
    """The run's network at its last checkpoint (not the best epoch) as a model folder, card and post-processing
    kept: compares a run with one trained without validation, whose model is always its last epoch. For a
    generator, the last epoch is the one to use (validation PSNR favours the blurry early epochs)."""
    from napari_lvseg.models.weights import save_model

    net, card = load_last(run)
    card.name = f"{card.name}-last"
    save_model(Path(out), net, card)
    return Path(out)


def load_last(run):
    """``(network, card)`` of a run at its last checkpoint; the card's epochs are that checkpoint's, and the
    validation figures (which belong to the best epoch) are dropped."""
    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.models.registry import load_model

    net, card = load_model(str(run))
    state = load_checkpoint(Path(run) / "last.pt")
    net.load_state_dict(state["task"].get("generator", state["task"].get("model")))
    card.metrics.pop("validation", None)
    card.training = {**card.training, "epochs": state["epoch"]}
    return net, card


def export_member(model, index: int, out) -> Path:
    """Network ``index`` of an ensemble model (``lvseg-seg``) as a model folder of its own, its card made from
    the ensemble's (case lists, normalisation) and the member's training block; no post-processing."""
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.models.weights import save_model

    net, card = load_model(model, task="segmentation")
    members = card.params.get("members", [])
    if not 0 <= index < len(members):
        raise SystemExit(f"{model}: an ensemble of {len(members)} networks has no member {index}")
    info = card.training["ensemble_of"][index]
    cases = {key: card.training[key] for key in ("train_cases", "val_cases")}   # the ensemble's: its members' union
    member = ModelCard(name=f"{card.name}-member{index}", task="segmentation",
                       architecture=members[index]["architecture"], params=members[index]["params"],
                       normalization=card.normalization, classes=card.classes, input_size=card.input_size,
                       licence=card.licence, training={**cases, **info},
                       notes=f"member {index} of {card.name} ({info.get('name')})",
                       extra={k: card.extra[k] for k in ("expects",) if k in card.extra})
    save_model(Path(out), net.members[index], member)
    return Path(out)


def ensemble(out, runs, name=None) -> Path:
    """A model folder averaging the runs' networks; tune and evaluate it like a run."""
    from napari_lvseg.models.ensemble import combine
    from napari_lvseg.models.weights import save_model

    net, card = combine([str(r) for r in runs], name or Path(out).name)
    save_model(Path(out), net, card)
    return Path(out)


def config(name) -> Path:
    return ROOT / f"training/configs/{name}.json"


def segmentation_run(config_path, seed=None, device=None, workers=None, deadline=None) -> Path:
    """Train a segmentation config, tune its post-processing on validation, then its test tables (TTA)."""
    run = train(config_path, seed=seed, device=device, workers=workers, deadline=deadline)
    tune_postprocess(run, device=device)
    evaluate(run, tta=True, device=device)
    return run


def summary(runs, metrics_file="test_metrics_tta.json") -> str:
    """Markdown tables of the runs' test Dice: per case and pooled (study classes), then the EMIDEC protocol;
    each followed by mean ± sd over the seeds of a config (runs <config out> and <config out>_seed<k>)."""
    import re

    import numpy as np

    def table(header, protocols):
        rows, groups = [], {}
        for run in runs:
            data = json.loads((Path(run) / metrics_file).read_text())
            group = re.sub(r"_seed\d+$", "", Path(run).name)
            for protocol, pick in protocols.items():
                values = pick(data)
                rows.append(f"| {Path(run).name} | {protocol} | " + " | ".join(f"{x:.3f}" for x in values) + " |")
                groups.setdefault((group, protocol), []).append(values)
        for (group, protocol), values in groups.items():
            if len(values) > 1:
                a = np.array(values, dtype=float)
                cells = " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a.mean(0), a.std(0, ddof=1)))
                rows.append(f"| **{group}, {len(values)} seeds** | {protocol} | {cells} |")
        return "\n".join([f"| run | protocol | {' | '.join(header)} |", "|---" * (len(header) + 2) + "|", *rows])

    study = ("cavity", "myocardium", "infarct", "no_reflow", "mean")
    emidec = ("dice_myocardium", "dice_infarct", "dice_no_reflow")
    return (table(("cavity", "myocardium", "infarct", "no-reflow", "mean"),
                  {"per case": lambda d: [d["study"][-1][k] for k in study],
                   "pooled": lambda d: [d["pooled"][k] for k in study]})
            + "\n\n"
            + table(("myocardium (2+3+4)", "infarct (3+4)", "no-reflow"),
                    {"EMIDEC": lambda d: [d["emidec"][-1][k] for k in emidec]}))


def scenario(which: str, seeds=(None,), device=None, workers=None, deadline=None, skip_pix2pix=False,
             launch=None) -> list:
    """Every step of a scenario in order; the segmentation runs of each seed are trained here, one after
    another, or handed to ``launch(step, seed)``. Returns what each run gave (its folder, or launch's result)."""
    runs = []
    for step in SCENARIOS[which]:
        if step.startswith("synthetic:"):
            make_synthetic(config(step.split(":")[1]), device)
        elif step == "pix2pix":
            if not skip_pix2pix:
                train(config(step), device=device, workers=workers, deadline=deadline)
        else:
            for seed in seeds:
                runs.append(launch(step, seed) if launch else
                            segmentation_run(config(step), seed, device, workers, deadline))
    return runs


def parallel(scenarios, seeds, device=None, workers=None, deadline=None, skip_pix2pix=False) -> list:
    """Every seed of the scenarios' segmentation runs at once, one process each (a GPU machine).

    Scenario A's runs start at once; scenario B's once its synthetic set is ready.
    """
    import subprocess

    def launch(step, seed):
        cmd = [sys.executable, __file__, "run", str(config(step))]
        for flag, value in (("--seed", seed), ("--device", device), ("--workers", workers), ("--deadline", deadline)):
            if value is not None:
                cmd += [flag, str(value)]
        run = run_folder(config(step), seed)
        run.parent.mkdir(parents=True, exist_ok=True)
        with open(run.with_suffix(".log"), "a") as log:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), run

    started = [item for which in scenarios
               for item in scenario(which, seeds, device, workers, deadline, skip_pix2pix, launch)]
    failed = [run for proc, run in started if proc.wait() != 0]
    if failed:
        print("failed (see RUN.log):", ", ".join(map(str, failed)))
    return [run for _, run in started if run not in failed]


def main(argv=None, prog=None) -> int:
    from napari_lvseg.cli_args import positive_int

    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    def compute(p):
        p.add_argument("--device", help="cpu | cuda (default: the config's, auto)")
        p.add_argument("--workers", type=int, help="data-loading processes per run")
        p.add_argument("--deadline", type=float, help="Unix time at which training stops, keeping the best model")

    p = sub.add_parser("train")
    p.add_argument("config")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=positive_int, help="torch threads (default: the config's); changes only "
                   "rounding")
    compute(p)
    p = sub.add_parser("run", help="train, tune and evaluate one segmentation config")
    p.add_argument("config")
    p.add_argument("--seed", type=int)
    compute(p)
    p = sub.add_parser("synthetic")
    p.add_argument("config")
    p.add_argument("--device")
    p = sub.add_parser("evaluate")
    p.add_argument("run")
    p.add_argument("--tta", action="store_true")
    p.add_argument("--split", default="test")
    p.add_argument("--device")
    p = sub.add_parser("ensemble", help="average several runs' networks into one model folder")
    p.add_argument("out")
    p.add_argument("runs", nargs="+")
    p.add_argument("--name")
    p = sub.add_parser("summary", help="test Dice of several runs, mean ± sd over seeds")
    p.add_argument("runs", nargs="+")
    p = sub.add_parser("tune")
    p.add_argument("run")
    p.add_argument("--device")
    p.add_argument("--from", dest="source", help="copy this run's tuned post-processing instead (no validation)")
    p = sub.add_parser("last", help="a run's last-epoch network as a model folder")
    p.add_argument("run")
    p.add_argument("out")
    p = sub.add_parser("member", help="one network of an ensemble model as a model folder")
    p.add_argument("model")
    p.add_argument("index", type=int)
    p.add_argument("out")
    p = sub.add_parser("scenario")
    p.add_argument("which", choices=["A", "B", "L", "C", "all"])
    p.add_argument("--seeds", type=int, nargs="+", help="seeds to train (default: the config's)")
    p.add_argument("--parallel", action="store_true", help="train all seeds of all scenarios at once")
    p.add_argument("--skip-pix2pix", action="store_true", help="use the generator the config names as it is")
    compute(p)
    args = parser.parse_args(argv)
    if args.cmd == "train":
        train(args.config, args.epochs, args.seed, args.workers, args.device, args.deadline, args.threads)
    elif args.cmd == "run":
        segmentation_run(args.config, args.seed, args.device, args.workers, args.deadline)
    elif args.cmd == "synthetic":
        make_synthetic(args.config, args.device)
    elif args.cmd == "ensemble":
        ensemble(args.out, args.runs, args.name)
    elif args.cmd == "summary":
        print(summary(args.runs))
    elif args.cmd == "tune" and args.source:
        adopt_postprocess(args.run, args.source)
    elif args.cmd == "tune":
        tune_postprocess(args.run, device=args.device)
    elif args.cmd == "last":
        export_last(args.run, args.out)
    elif args.cmd == "member":
        export_member(args.model, args.index, args.out)
    elif args.cmd == "evaluate":
        evaluate(args.run, args.tta, args.split, args.device)
    else:
        which = ["A", "B"] if args.which == "all" else [args.which]
        seeds = args.seeds or [None]
        compute_args = dict(device=args.device, workers=args.workers, deadline=args.deadline,
                            skip_pix2pix=args.skip_pix2pix)
        if args.parallel:
            parallel(which, seeds, **compute_args)
        else:
            for w in which:
                scenario(w, seeds, **compute_args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
