"""Choose an ensemble's members on the validation split, by greedy forward selection.

    python training/choose_ensemble.py training/runs/ens_greedy RUN RUN ... [--max-members 5] [--max-mb 21]

Each candidate run's softmax probabilities (TTA) on the validation and test cases are computed once
and cached in RUN/probs_<split>_tta<views>.npz; an ensemble's probabilities are their mean, exactly what
`SegmentationEnsemble` with TTA computes. Selection starts from the best single run and adds, one at a
time, the run that raises the validation per-case mean Dice most (post-processing tuned on validation
for every candidate, as `run.py tune` does), stopping when nothing raises it, at --max-members, or when
the float16 weights would pass --max-mb. The test split is only reported, for every step of the path.
The chosen ensemble is written to OUT (card with its tuned post-processing) and OUT/selection.json;
then `python training/run.py evaluate OUT --tta` gives its test tables the standard way.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import sys
from pathlib import Path

import numpy as np

from . import run as runner  # training/run.py: the split, the EMIDEC folder, loading and ensembling runs


def split_cases(split_name: str) -> dict:
    """``{case name: (image, labels)}`` of a split of training/split.json."""
    return {name: (image.data, labels.data)
            for name, (image, labels) in runner.read_cases(runner.split_names(split_name)).items()}


def probabilities_cache(run, split_name: str) -> Path:
    """Where a run's TTA probabilities on a split are cached: the number of TTA views in the name, so that a cache made
    with 8 views (before 2026-12) is not taken for one made with 4."""
    from napari_lvseg.inference import TTA_TRANSFORMS

    return Path(run) / f"probs_{split_name}_tta{len(TTA_TRANSFORMS)}.npz"


def cached_probabilities(run, split_name: str, cases: dict) -> dict:
    """``{case: probabilities (Z, 5, Y, X) float16}`` of a run on a split, with TTA; cached in the run folder."""
    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.inference import predict_probabilities

    cache, weights = probabilities_cache(run, split_name), Path(run) / "model.safetensors"
    # a cache older than the run's weights (retrained, resumed) is stale
    if cache.is_file() and not (weights.is_file() and weights.stat().st_mtime > cache.stat().st_mtime):
        with np.load(cache) as stored:
            if set(stored.files) == set(cases):
                return {name: stored[name] for name in cases}
    net, card = runner.load_on(run)
    probs = {name: predict_probabilities(net, normalize_slices(image, card.normalization), tta=True).astype(np.float16)
             for name, (image, _) in cases.items()}
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **probs)
    tmp.replace(cache)
    return probs


def mean_probabilities(members: list, name: str) -> np.ndarray:
    """A case's mean probabilities (Z, 5, Y, X) over the members."""
    return sum(m[name].astype(np.float32) for m in members) / len(members)


def score(members: list, truths: dict, post: dict) -> tuple[float, float, dict]:
    """(per-case mean Dice, pooled mean Dice, per-case table's mean row) of the members' mean probabilities."""
    from napari_lvseg.evaluation import evaluate_cases
    from napari_lvseg.postprocess import postprocessed_labels

    cases = {name: (postprocessed_labels(mean_probabilities(members, name), post), truth)
             for name, truth in truths.items()}
    report = evaluate_cases(cases, emidec=False, bootstrap=0)
    return report.per_case["mean"], report.pooled["mean"], report.study_rows[-1]


def tuned(members: list, truths: dict) -> tuple[float, dict]:
    """(best validation per-case mean, post-processing) of the members' mean probabilities, over the grid
    `run.tune_postprocess` tries."""
    raw = {name: (mean_probabilities(members, name), truth) for name, truth in truths.items()}
    return max(runner.postprocess_scores(raw), key=lambda item: item[0])


def weights_mb(run) -> float:
    """Size of a run's network in float16 (how `training/bundle.py` ships it), in MB."""
    net, _ = runner.load_on(run)
    return sum(p.numel() for p in net.state_dict().values()) * 2 / 1e6


def greedy(runs: list, val: dict, test: dict, max_members: int, max_mb: float) -> list[dict]:
    """The selection path: one entry per step (members, sizes, validation and test scores)."""
    val_truth = {name: labels for name, (_, labels) in val.items()}
    test_truth = {name: labels for name, (_, labels) in test.items()}
    probs = {run: (cached_probabilities(run, "val", val), cached_probabilities(run, "test", test)) for run in runs}
    size = {run: weights_mb(run) for run in runs}
    chosen, path, best = [], [], -1.0
    while len(chosen) < max_members:
        trials = []
        for run in runs:
            if run in chosen or sum(size[r] for r in chosen) + size[run] > max_mb:
                continue
            trial = chosen + [run]
            val_mean, post = tuned([probs[r][0] for r in trial], val_truth)
            trials.append((val_mean, run, post))
            print(f"  {' + '.join(Path(r).name for r in trial)}: validation {val_mean:.4f}", flush=True)
        if not trials or max(trials, key=lambda t: t[0])[0] <= best:
            break
        best, run, post = max(trials, key=lambda t: t[0])
        chosen.append(run)
        per_case, pooled, row = score([probs[r][1] for r in chosen], test_truth, post)
        path.append({"members": [str(r) for r in chosen], "mb_float16": round(sum(size[r] for r in chosen), 2),
                     "postprocess": post, "val_per_case_mean": round(best, 4),
                     "test_per_case_mean": round(per_case, 4), "test_pooled_mean": round(pooled, 4),
                     "test_per_case": {k: round(v, 4) for k, v in row.items() if k != "case"}})
        print(f"step {len(chosen)}: + {Path(run).name} -> validation {best:.4f}; test per case {per_case:.4f}, "
              f"pooled {pooled:.4f}", flush=True)
    return path


def main(argv=None, prog=None) -> int:
    from napari_lvseg.io.atomic import write_json_atomic
    from napari_lvseg.models.card import read_card
    from napari_lvseg.models.weights import save_model

    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--max-members", type=int, default=5)
    parser.add_argument("--max-mb", type=float, default=21.0, help="float16 weights limit of the ensemble")
    args = parser.parse_args(argv)
    path = greedy(args.runs, split_cases("val"), split_cases("test"), args.max_members, args.max_mb)
    final = path[-1]
    out = runner.ensemble(args.out, final["members"])
    net, _ = runner.load_on(out)
    card = read_card(out)
    card.extra["postprocess"] = {**final["postprocess"], "tuned_on": "validation split",
                                 "val_mean_dice": final["val_per_case_mean"]}
    save_model(out, net, card)
    write_json_atomic(out / "selection.json", {"candidates": args.runs, "max_members": args.max_members,
                                               "max_mb": args.max_mb, "path": path})
    print(f"chosen: {', '.join(final['members'])} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
