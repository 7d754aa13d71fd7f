"""How well do networks trained on real images read a generator's images? A check on synthetic lesions.

    python training/judge_synthesis.py --split test --judges training/runs/cv/seg_real_cv4f2 \
        --generators lvseg-pix2pix training/runs/pix2pix_guided_last [--out FILE.json]

For every slice of the split's cases with infarct, each generator renders the real mask (seed 0); each
judge (a segmentation model trained on real images only) segments the real slice and each rendered one.
The figures are Dice per class against the real mask, over all those slices (pooled). A generator whose
no-reflow the judges miss teaches no-reflow poorly; one they read better than the real images renders
lesions more plainly than real LGE does. A judge should not be the generator's own guide, nor have seen
the split's cases.
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cavity", "myocardium", "infarct", "no_reflow")


def pooled_dice(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Dice per class over all pixels of the slices (`evaluation`'s pooled protocol), to 3 decimals; NaN for a class
    absent from both."""
    from napari_lvseg.evaluation import evaluate_cases

    pooled = evaluate_cases([(pred, truth)], emidec=False, bootstrap=0).pooled
    return {name: round(pooled[name], 3) for name in CLASSES}


def segment(model, slices: np.ndarray) -> np.ndarray:
    """Argmax labels of normalised slices (N, S, S); each slice its own neighbours for a 2.5-D model."""
    import torch

    from napari_lvseg.data.normalize import model_context
    from napari_lvseg.models.heads import labels_of

    x = torch.from_numpy(slices[:, None]).float().repeat(1, 1 + 2 * model_context(model), 1, 1)
    with torch.no_grad():
        out = model(x)
    return labels_of(model, out).numpy()   # whatever the model's head (models/heads.py)


def judge(split: str, judges: list, generators: list, data: str) -> dict:
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.engine.synthesis import from_tanh, generate_slices
    from napari_lvseg.models.registry import load_model

    cases = json.loads((ROOT / "training/split.json").read_text())[split]
    source = load_source(data, cases=cases)
    keep = np.array([(labels >= 3).any() for labels in source.labels])
    real, masks = source.images[keep], source.labels[keep]
    images = {"real": real}
    for ref in generators:
        generator, _ = load_model(ref, task="synthesis")
        images[ref] = normalize_slices(from_tanh(generate_slices(generator, masks, seed=0)))
    result = {"split": split, "slices": int(keep.sum()), "judges": {}}
    for ref in judges:
        model, _ = load_model(ref, task="segmentation")
        result["judges"][ref] = {name: pooled_dice(segment(model, x), masks) for name, x in images.items()}
    return result


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--judges", nargs="+", required=True, help="segmentation models trained on real images")
    parser.add_argument("--generators", nargs="+", required=True)
    parser.add_argument("--data", default=os.environ.get("LVSEG_EMIDEC_DIR",
                                                         str(ROOT.parent / "shared/data/emidec-lge-128")))
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = judge(args.split, args.judges, args.generators, args.data)
    print(f"{result['slices']} slices with infarct of the {args.split} split; pooled Dice "
          f"({', '.join(CLASSES)}) against the real masks")
    for ref, rows in result["judges"].items():
        print(f"judge {ref}")
        for name, dice in rows.items():
            print(f"  {name:45s} " + "  ".join(f"{dice[c]:.3f}" for c in CLASSES))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
