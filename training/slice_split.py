"""How much does a slice-level split raise Dice? The same recipe, split by slice instead of by case.

Every figure in RESULTS.md holds out whole cases: no slice of a test case is ever trained on. A split drawn over
slices puts neighbouring slices of one heart on both sides, and a network can then recall a lesion it saw one slice
away. This experiment measures that effect with scenario A's recipe (seg_real.json: 2-D, width 12, 45,000 samples).

    python training/slice_split.py make [--seed S]         # training/runs/slice_split/: every slice its own case
    python training/run.py train training/configs/seg_real_slice_split.json --workers 1
    python training/run.py train training/configs/seg_real_slice_split2.json --workers 1   # another split (S=2027)
    python training/slice_split.py evaluate training/runs/seg_real_slice_split training/runs/seg_real
    python training/slice_split.py evaluate --common training/runs/seg_real_slice_split training/runs/seg_real
    python training/slice_split.py compare training/runs/seg_real_slice_split training/runs/seg_mixed_slice_split

``evaluate`` scores each run on its own held-out part (the slice-level run on its held-out slices, a case-level run
on the 12 test cases of training/split.json) the same way: TTA, no post-processing, pooled Dice. ``--common``
scores every run on the same slices instead: those held out by both splits (the slice-level test slices of the 12
case-level test cases), which the case-level runs never saw and the slice-level run saw the neighbours of. The
slice-level split is the first slice-level run's (split.json); ``--split`` names another. ``compare`` scores two runs
on the same slices and gives the second's lead over the first with a paired interval (both drawn on the same hearts).
A seed other than 2026 writes its split as split_seed<S>.json beside the first; the slice folders are the same.
The derived data are EMIDEC data (CC BY-NC-SA 4.0) and stay under training/runs/, which git ignores.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import sys
from pathlib import Path

from . import run as runner  # training/run.py: configs, the EMIDEC folder, the engine driver

OUT = runner.ROOT / "training/runs/slice_split"
FRACTIONS = {"val": 0.1, "test": 0.2}   # as the case-level split: 6 and 12 of 60 cases


SEED = 2026


def split_file(seed: int = SEED, out=OUT) -> Path:
    return Path(out) / ("split.json" if seed == SEED else f"split_seed{seed}.json")


def make(data=None, out=OUT, seed: int = SEED) -> Path:
    """One EMIDEC case folder per slice (``<case>_z<k>``) and a random slice-level split of all of them."""
    import numpy as np

    from napari_lvseg.io import emidec
    from napari_lvseg.io.atomic import write_json_atomic
    from napari_lvseg.io.nifti import write_nifti

    names = []
    for case in emidec.find_cases(data or runner.emidec_dir()):
        image, labels = emidec.read_case(case)
        for z in range(image.data.shape[0]):
            name = f"{case.name}_z{z:02d}"
            write_nifti(out / "data" / name / "Images" / f"{name}.nii.gz", image.data[z:z + 1])
            write_nifti(out / "data" / name / "Contours" / f"{name}.nii.gz", labels.data[z:z + 1])
            names.append(name)
    if not names:
        raise SystemExit(f"{data or runner.emidec_dir()}: no EMIDEC cases")
    order = [str(n) for n in np.random.default_rng(seed).permutation(names)]
    n_test, n_val = (round(FRACTIONS[k] * len(order)) for k in ("test", "val"))
    split = {"description": f"Slice-level split of all {len(order)} slices of the 60 cases "
                            f"(numpy default_rng({seed})): training/slice_split.py",
             "test": sorted(order[:n_test]), "val": sorted(order[n_test:n_test + n_val]),
             "train": sorted(order[n_test + n_val:])}
    write_json_atomic(split_file(seed, out), split)
    return out


def held_out(run) -> tuple:
    """(data folder, case names) a run never trained on: its split's test part."""
    options = json.loads((Path(run) / "options.json").read_text())
    return options["data"][0], json.loads(Path(options["split"]).read_text())["test"]


def common_slices(split=None) -> list:
    """The slices held out by both splits: slice-level test slices (of ``split``, default the first slice-level
    split) of the case-level test cases."""
    cases = set(runner.split_names("test"))
    return [n for n in json.loads(Path(split or split_file()).read_text())["test"] if n.rsplit("_z", 1)[0] in cases]


def _hearts(run, common: bool = False, split=None) -> tuple:
    """(held-out slice count, {heart: (prediction, truth)}): a run's held-out slices (``common``: `common_slices` of
    ``split``) labelled with TTA and no post-processing, stacked by the heart they come from. Intervals draw hearts,
    not slices: a heart's slices are alike, and drawing them one by one would narrow the interval. Pooled Dice over
    the hearts is pooled Dice over their slices."""
    import numpy as np

    data, names = (OUT / "data", common_slices(split)) if common else held_out(run)
    model = runner.load_on(run)
    cases, hearts = runner.read_cases(names, data), {}
    for name, (image, labels) in cases.items():
        hearts.setdefault(name.rsplit("_z", 1)[0], []).append((runner.raw_labels(model, image.data), labels.data))
    return len(cases), {name: tuple(map(np.concatenate, zip(*pairs, strict=True))) for name, pairs in hearts.items()}


def _tag(common: bool, split) -> str:
    return f"common_{Path(split).stem}" if common and split else "common" if common else "held_out"


def evaluate(run, common: bool = False, split=None) -> dict:
    """Pooled Dice of a run on its held-out cases or slices (``common``: on `common_slices` of ``split``): TTA,
    no post-processing; with a 95% interval over the hearts the slices come from, drawn with replacement."""
    from napari_lvseg.evaluation import evaluate_cases
    from napari_lvseg.io.atomic import write_json_atomic

    held, hearts = _hearts(run, common, split)
    report = evaluate_cases(hearts, emidec=False)
    result = {"run": str(run), "held_out": held,
              "slices": sum(len(truth) for _, truth in hearts.values()), "hearts": len(hearts),
              "pooled": report.pooled, "bootstrap": report.intervals["pooled"] if report.intervals else None}
    write_json_atomic(Path(run) / f"{_tag(common, split)}_pooled.json", result)
    return result


def compare(first, second, common: bool = False, split=None) -> dict:
    """Two runs on the same held-out slices: each one's pooled Dice and ``second`` minus ``first`` with a paired 95%
    interval over draws of hearts (both runs scored on the same drawn hearts). Written beside ``second``."""
    from napari_lvseg.evaluation import evaluate_cases, pooled_difference_interval
    from napari_lvseg.io.atomic import write_json_atomic

    parts = [held_out(run) for run in (first, second)]
    if not common and (Path(parts[0][0]).resolve(), parts[0][1]) != (Path(parts[1][0]).resolve(), parts[1][1]):
        raise SystemExit(f"{first} and {second} hold out different slices; compare them with --common")
    scored = [_hearts(run, common, split)[1] for run in (first, second)]
    names = sorted(scored[0])
    reports = [evaluate_cases({name: hearts[name] for name in names}, emidec=False, bootstrap=0) for hearts in scored]
    result = {"first": str(first), "second": str(second), "hearts": len(names),
              "slices": sum(len(scored[0][name][1]) for name in names),
              "pooled": [report.pooled for report in reports],
              "difference": pooled_difference_interval(*reports)}
    write_json_atomic(Path(second) / f"{_tag(common, split)}_vs_{Path(first).name}.json", result)
    return result


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("make")
    p.add_argument("--seed", type=int, default=SEED, help="the random slice-level split's seed")
    p = sub.add_parser("evaluate")
    p.add_argument("runs", nargs="+")
    p.add_argument("--common", action="store_true", help="every run on the slices both splits hold out")
    p.add_argument("--split", help="the slice-level split for --common (default: the first, split.json)")
    p = sub.add_parser("compare", help="second run minus first on the same slices, paired interval over hearts")
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--common", action="store_true", help="on the slices both splits hold out")
    p.add_argument("--split", help="the slice-level split for --common (default: the first, split.json)")
    args = parser.parse_args(argv)
    if args.cmd == "make":
        print(split_file(args.seed, make(seed=args.seed)))
        return 0
    keys = ("cavity", "myocardium", "infarct", "no_reflow", "mean")
    if args.cmd == "compare":
        r = compare(args.first, args.second, args.common, args.split)
        print(f"{r['slices']} slices of {r['hearts']} hearts, pooled Dice | " + " | ".join(keys))
        for run, pooled in zip((args.first, args.second), r["pooled"], strict=True):
            print(f"{Path(run).name} | " + " | ".join(f"{pooled[k]:.3f}" for k in keys))
        print("second - first (95% interval over draws of hearts) | " + " | ".join(
            "{:+.3f} ({:+.3f} to {:+.3f})".format(*r["difference"][k]) for k in keys))
        return 0
    print("| run | held out | slices | cavity | myocardium | infarct | no-reflow | mean |\n"
          "|---|---|---|---|---|---|---|---|")
    for run in args.runs:
        r = evaluate(run, args.common, args.split)
        p = r["pooled"]
        print(f"| {Path(run).name} | {r['held_out']} | {r['slices']} | "
              + " | ".join(f"{p[k]:.3f}" for k in ("cavity", "myocardium", "infarct", "no_reflow", "mean")) + " |")
        if r["bootstrap"]:
            low, high = r["bootstrap"]["mean"]
            print(f"  (pooled mean, 95% interval over draws of the {r['hearts']} hearts: {low:.3f} to {high:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
