"""Two recipes on the same held-out hearts: paired differences, per class, with intervals over the hearts.

    python training/cv_paired.py training/configs/seg_context_scanner.json \
        training/configs/seg_context_scanner_edits.json --folds 5 --seeds 0 --last \
        --post '{"infarct_weight": 3.0, "no_reflow_weight": 1.0, "min_infarct_voxels": 200, "min_no_reflow_voxels": 50}'

Each case is read by the network of the fold that held it out (8x TTA, the probabilities `cross_validate` caches in each
run), under one post-processing fixed in advance, for both configs and each seed. Only the folds both configs finished
at every seed count. The differences SECOND - FIRST are the study's: per case (mean over cases of each class's 3-D
Dice, a class absent from truth and prediction skipped) and pooled (all voxels of all cases), per class and their mean;
with two seeds, the mean of the two seeds' differences. The interval draws the hearts with replacement (2,000 draws,
the same draw for both configs and every seed): what one heart makes hard for one recipe it makes hard for the other,
and that cancels. It covers the choice of hearts, not the training seed; the seeds' own spread is printed beside it.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np

from .cross_validate import RESULTS, _labelled, _relative, out_of_fold

CLASSES = (1, 2, 3, 4)
DRAWS = 2000
LEVEL = 0.95


def case_counts(labels, truth) -> np.ndarray:
    """(classes, 3) array of |P∩T|, |P|, |T| per class of one case."""
    counts = np.zeros((len(CLASSES), 3))
    for j, c in enumerate(CLASSES):
        p, t = labels == c, truth == c
        counts[j] = (p & t).sum(), p.sum(), t.sum()
    return counts


def stacked(counts: dict) -> tuple:
    """``{case: (classes, 3) counts}`` -> (names, (cases, classes, 3) array), the cases in name order."""
    names = sorted(counts)
    return names, np.stack([counts[name] for name in names])


def overlaps(labelled: dict) -> tuple:
    """``{case: (labels, truth)}`` -> (names, (cases, classes, 3) array of |P∩T|, |P|, |T| per class)."""
    return stacked({name: case_counts(*pair) for name, pair in labelled.items()})


def study_means(counts: np.ndarray) -> dict:
    """Per case and pooled Dice per class and their mean, from `overlaps` counts (cases may repeat: a bootstrap draw).
    Per case: a class absent from truth and prediction is skipped for that case; pooled: over all voxels."""
    sizes = counts[..., 1] + counts[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a draw without any no-reflow: NaN, left out of the mean
        dice = np.where(sizes > 0, 2 * counts[..., 0] / sizes, np.nan)
        per_case = np.nanmean(dice, axis=0)
        total = counts.sum(axis=0)
        pooled = 2 * total[:, 0] / (total[:, 1] + total[:, 2])
    return {"per_case": np.append(per_case, np.nanmean(per_case)), "pooled": np.append(pooled, np.nanmean(pooled))}


def paired(first: list, second: list, draws: int = DRAWS, level: float = LEVEL, seed: int = 0) -> dict:
    """``first``/``second``: one `overlaps` count array per training seed, the cases in the same order. Returns each
    protocol's first and second values and their difference (mean over seeds), with the bootstrap interval of the
    difference and the spread of the seeds' differences."""
    def difference(index):
        diffs = [{k: study_means(b[index])[k] - study_means(a[index])[k] for k in ("per_case", "pooled")}
                 for a, b in zip(first, second)]
        return {k: np.mean([d[k] for d in diffs], axis=0) for k in ("per_case", "pooled")}, diffs

    everyone = np.arange(len(first[0]))
    point, by_seed = difference(everyone)
    rng = np.random.default_rng(seed)
    samples = {k: [] for k in point}
    for _ in range(draws):
        drawn, _ = difference(rng.integers(0, len(everyone), len(everyone)))
        for k in samples:
            samples[k].append(drawn[k])
    tail = 100 * (1 - level) / 2
    keys = [*(f"class_{c}" for c in CLASSES), "mean"]
    result = {}
    for protocol in point:
        low, high = np.nanpercentile(np.array(samples[protocol]), [tail, 100 - tail], axis=0)
        firsts = np.mean([study_means(a)[protocol] for a in first], axis=0)
        seconds = np.mean([study_means(b)[protocol] for b in second], axis=0)
        seed_sd = (np.std([d[protocol] for d in by_seed], axis=0, ddof=1) if len(by_seed) > 1
                   else np.full(len(keys), np.nan))
        result[protocol] = {key: {"first": round(float(firsts[i]), 4), "second": round(float(seconds[i]), 4),
                                  "difference": round(float(point[protocol][i]), 4),
                                  "interval": [round(float(low[i]), 4), round(float(high[i]), 4)],
                                  "seed_sd": None if np.isnan(seed_sd[i]) else round(float(seed_sd[i]), 4)}
                            for i, key in enumerate(keys)}
    return result


def table(result: dict) -> str:
    names = ("cavity", "myocardium", "infarct", "no-reflow", "**mean**")
    rows = ["| protocol | first | second | " + " | ".join(names) + " |", "|---" * (3 + len(names)) + "|"]
    for protocol, scores in result.items():
        cells = [f"{s['difference']:+.3f} ({s['interval'][0]:+.3f} to {s['interval'][1]:+.3f})"
                 for s in scores.values()]
        rows.append(f"| {protocol.replace('_', ' ')} | {scores['mean']['first']:.3f} | {scores['mean']['second']:.3f} "
                    f"| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def counts_file(config, folds: int, seed, post: dict, last: bool) -> Path:
    """Where a config's per-case counts under ``post`` are kept: training/results/cv/counts/, one file per config,
    folds count, seed, epoch choice and post-processing (a digest of its options)."""
    digest = hashlib.sha1(json.dumps(post, sort_keys=True).encode()).hexdigest()[:8]
    return RESULTS / "counts" / (f"{Path(config).stem}_cv{folds}" + (f"_seed{seed}" if seed is not None else "")
                                 + ("_last" if last else "") + f"_post{digest}.json")


def fold_counts(config, folds: int, seed, post: dict, last: bool) -> dict:
    """``{fold: {case: (classes, 3) counts}}`` of a config's finished folds under ``post``. Counted from the fold
    runs' cached probabilities where the runs are here, and kept (`counts_file`, committed with the results), so a
    fold whose run folder is gone (a later session, a fresh checkout) still counts."""
    from napari_lvseg.io.atomic import write_json_atomic
    from napari_lvseg.postprocess import DEFAULT_POSTPROCESS

    post = {**DEFAULT_POSTPROCESS, **post}
    store = counts_file(config, folds, seed, post, last)
    kept = json.loads(store.read_text())["folds"] if store.exists() else {}
    for k, cases in out_of_fold(config, folds, seed, last=last).items():
        kept[str(k)] = {name: case_counts(*case).astype(int).tolist() for name, case in _labelled(cases, post).items()}
    if kept:
        store.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(store, {"config": _relative(Path(config)), "seed": seed, "last": last, "post": post,
                                  "counts": "per case, per class (cavity, myocardium, infarct, no-reflow): "
                                            "|P∩T|, |P|, |T| in voxels",
                                  "folds": dict(sorted(kept.items(), key=lambda kv: int(kv[0])))})
    return {int(k): {name: np.asarray(c, float) for name, c in cases.items()} for k, cases in kept.items()}


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[None],
                        help="training seeds run for both configs (default: the configs' own)")
    parser.add_argument("--post", default="{}", help="post-processing options, JSON (default: the LV component only)")
    parser.add_argument("--last", action="store_true", help="each fold's last epoch, not the one its fold chose")
    parser.add_argument("--out", help="write the figures to this JSON file (default: training/results/cv/...)")
    args = parser.parse_args(argv)
    try:
        post = json.loads(args.post)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--post: not JSON ({error})") from None
    runs = {(which, s): fold_counts(config, args.folds, s, post, args.last)
            for which, config in (("first", args.first), ("second", args.second)) for s in args.seeds}
    common = sorted(set.intersection(*(set(folds) for folds in runs.values())))
    if not common:
        raise SystemExit("no fold that both configs finished at every seed")
    counts = {}
    for key, folds in runs.items():
        names, counts[key] = stacked({name: case for k in common for name, case in folds[k].items()})
    result = paired([counts["first", s] for s in args.seeds], [counts["second", s] for s in args.seeds])
    out = Path(args.out) if args.out else RESULTS / (
        f"paired_{Path(args.first).stem}_vs_{Path(args.second).stem}_cv{args.folds}"
        + "".join(f"_seed{s}" for s in args.seeds if s is not None) + ("_last" if args.last else "") + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    from napari_lvseg.io.atomic import write_json_atomic

    write_json_atomic(out, {"first": _relative(Path(args.first)), "second": _relative(Path(args.second)),
                            "folds": common, "cases": len(names), "seeds": args.seeds, "post": post,
                            "draws": DRAWS, "level": LEVEL, **result})
    print(f"{len(names)} held-out cases (folds {', '.join(map(str, common))}), seeds {args.seeds}; second - first, "
          f"{LEVEL:.0%} interval over {DRAWS} draws of the hearts")
    print(table(result))
    print(_relative(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
