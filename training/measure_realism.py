"""How real do a generator's images look? The two-sample test and the LGE physics checks of `napari_lvseg.realism`.

    python training/measure_realism.py --generators lvseg-pix2pix-resize lvseg-pix2pix \
        --out training/results/realism/realism.json --threads 1

For each generator: every LV slice of the 60 cases' real masks is rendered (seed 0; in the real image's own
surroundings where the generator takes a context). A small CNN learns real vs synthetic 64 x 64 LV crops on the
training split's pairs (42 cases) and is scored on the held-out pairs (validation + test split, 18 cases): held-out
accuracy with its exact binomial 95 % interval (0.5 = indistinguishable), and the paired (two-alternative) accuracy.
The physics checks (infarct > normal myocardium, no-reflow < infarct, blood pool > normal myocardium, class means of
each case's per-slice normalised images) are reported per split for the real images and the synthetic ones.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import os
import sys
from pathlib import Path

from napari_lvseg.synthesis import FILLS  # light: no torch

ROOT = Path(__file__).resolve().parents[1]


def _rate(summary: dict) -> str:
    rate = summary["pass_rate"]
    return "n/a" if rate is None else f"{summary['passed']}/{summary['n_infarct_cases']} ({rate:.0%})"


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generators", nargs="+", required=True, help="synthesis model names or folders")
    parser.add_argument("--data", default=os.environ.get("LVSEG_EMIDEC_DIR",
                                                         str(ROOT.parent / "shared/data/emidec-lge-128")))
    parser.add_argument("--split-file", default=str(ROOT / "training/split.json"))
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--test-splits", nargs="+", default=["val", "test"])
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--no-clip", action="store_true",
                        help="keep the normalised crops' values beyond the 1st/99th percentiles "
                             "(default: clip to 0..1)")
    parser.add_argument("--lv-margin", type=int, metavar="PX",
                        help="the classifier sees only the LV and PX pixels around it (the rest black): the heart "
                             "without its surroundings")
    parser.add_argument("--edits", action="store_true",
                        help="render each case's mask after one simulator edit (grow, shrink, move, add/remove "
                             "no-reflow, new infarct, clear: one drawn per case) and judge only the slices it changed")
    parser.add_argument("--fill", choices=FILLS, default="lv",
                        help="with --edits and a context generator: redraw the whole LV region (lv) or only the "
                             "pixels the edit changed (changes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write every figure (per case too) to this JSON file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from napari_lvseg.realism import format_interval, measure_realism

    torch.set_num_threads(args.threads)
    split = json.loads(Path(args.split_file).read_text())
    train = split[args.train_split]
    test = [c for name in args.test_splits for c in split[name]]
    results = {}
    for ref in args.generators:
        print(f"== {ref}", flush=True)
        result = measure_realism(ref, args.data, train, test, crop=args.crop, seed=args.seed, epochs=args.epochs,
                                 clip=not args.no_clip, lv_margin=args.lv_margin, edits=args.edits, fill=args.fill,
                                 progress=lambda text: print(f"  {text}", flush=True))
        results[ref] = result
        t = result["two_sample_test"]
        print(f"  rendering: {result['rendering']['how']}")
        print(f"  held-out accuracy {format_interval(t)}; paired {t.get('paired_accuracy', float('nan')):.3f}; "
              f"train accuracy {t['train_accuracy']:.3f}")
        for part in ("train", "test"):
            physics = result["physics"][part]
            print(f"  physics, {part} cases: real {_rate(physics['real']['summary'])}, "
                  f"synthetic {_rate(physics['synthetic']['summary'])} of the infarct cases pass")
        if result.get("edit_fidelity"):
            shown = "; ".join(f"{k} {v['changed_pixels']} (real {v['real_class']})"
                              for k, v in result["edit_fidelity"]["test"].items() if v["changed_pixels"] is not None)
            print(f"  pixels an edit turned into each class, held-out cases (slice-normalised means): {shown}")
        if args.out:   # after each generator: a long run keeps what it finished
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1)
                                      + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
