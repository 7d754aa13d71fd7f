"""How strict is the real-vs-synthetic classifier? Controls that need no generator: each real slice with its LV region
(the region a context generator fills in) replaced by a known change of itself, judged by the same two-sample test
as `measure_realism.py` (same crops, split, classifier and seed).

    python training/realism_controls.py identity blur:1 blur:1+grain blur:0.5 blur:0.5+grain \
        --out training/results/realism/controls.json --threads 1

Kinds: ``identity`` (the region replaced by itself, blended as a generator's fill-in is: the test should read 0.5),
``blur:S`` (the region Gaussian-blurred by S px: a fill-in with the real anatomy, only smoother), ``blur:S+grain``
(the same given back the slice's grain, `napari_lvseg.data.grain`), ``grain`` (the real region plus a second helping
of grain: noisier than the scanner's).
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


def changed(image, labels, kind: str, seed: int = 0) -> np.ndarray:
    """``image`` (Z, Y, X) with its LV region replaced by ``kind`` of itself, blended in as `synthesis` blends."""
    import torch
    from scipy import ndimage as ndi

    from napari_lvseg.data.grain import matched_grain
    from napari_lvseg.models.pix2pix import blend_weights
    from napari_lvseg.synthesis import region_slices

    blur, grain = 0.0, False
    for part in kind.split("+"):
        if part.startswith("blur:"):
            blur = float(part[5:])
        elif part == "grain":
            grain = True
        elif part != "identity":
            raise SystemExit(f"unknown control '{kind}': identity, blur:S, blur:S+grain or grain")
    region = region_slices(labels, labels)
    weights = blend_weights(torch.from_numpy(region), 3).numpy()
    out = np.asarray(image, np.float32).copy()
    for z in range(len(labels)):
        real = np.asarray(image[z], np.float64)
        fill = ndi.gaussian_filter(real, blur) if blur else real.copy()
        if grain:
            fill = fill + matched_grain(real, fill if blur else np.zeros_like(real), region[z],
                                        np.random.default_rng([seed, z]))
        r, w = region[z], weights[z]
        out[z][r] = w[r] * fill[r] + (1.0 - w[r]) * real[r]
    return out


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kinds", nargs="+")
    parser.add_argument("--data", default=os.environ.get("LVSEG_EMIDEC_DIR",
                                                         str(ROOT.parent / "shared/data/emidec-lge-128")))
    parser.add_argument("--split-file", default=str(ROOT / "training/split.json"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from napari_lvseg.realism import format_interval, lv_crops, two_sample_test
    from napari_lvseg.synthesis_edits import read_cases

    torch.set_num_threads(args.threads)
    split = json.loads(Path(args.split_file).read_text())
    sets = {"train": read_cases(args.data, split["train"]), "test": read_cases(args.data, split["val"] + split["test"])}
    results = {}
    for kind in args.kinds:
        crops = {part: (np.concatenate([lv_crops(i, lab, 64, c) for c, i, lab in rows]),
                        np.concatenate([lv_crops(changed(i, lab, kind, args.seed), lab, 64, c) for c, i, lab in rows]))
                 for part, rows in sets.items()}
        result = two_sample_test(*crops["train"], *crops["test"], seed=args.seed)
        results[kind] = result
        print(f"{kind}: held-out accuracy {format_interval(result)}; paired {result['paired_accuracy']:.3f}",
              flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
