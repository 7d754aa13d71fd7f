"""How strict is the real-vs-synthetic classifier? Controls that need no generator: each real slice with its LV region
(the region a context generator fills in) replaced by a known change of itself, judged by the same two-sample test
as `measure_realism.py` (same crops, split, classifier and seed).

    python training/realism_controls.py identity blur:1 blur:1+grain blur:0.5 blur:0.5+grain \
        --out training/results/realism/controls.json --threads 1
    python training/realism_controls.py smooth:2 smooth:2+donor:polar smooth:2+donor:aligned \
        smooth:2+donor:aligned+match smooth:2+ownshift:0 smooth:2+ownshift:2 \
        --out training/results/realism/controls_donor_detail.json --threads 1

Kinds: ``identity`` (the region replaced by itself, blended as a generator's fill-in is: the test should read 0.5),
``blur:S`` (the region Gaussian-blurred by S px: a fill-in with the real anatomy, only smoother), ``blur:S+grain``
(the same given back the slice's grain, `napari_lvseg.data.grain`), ``grain`` (the real region plus a second helping
of grain: noisier than the scanner's). A fill-in with this heart's brightness and another heart's structure:
``smooth:S`` (each class smoothed by S px within itself, `donor_detail.class_smooth`: the brightness a perfect
generator would draw, without the detail), ``smooth:S+donor:polar`` / ``smooth:S+donor:aligned`` (plus a training
case's detail, `donor_detail`; ``+match``: brought to this slice's grain), ``smooth:S+ownshift:N`` (plus the slice's
own detail moved N px along both axes; 0 gives the identity back).
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


def changed(image, labels, kind: str, seed: int = 0, donors=None) -> np.ndarray:
    """``image`` (Z, Y, X) with its LV region replaced by ``kind`` of itself, blended in as `synthesis` blends;
    ``donors``: `synthesis.Donor` slices of other cases, for the ``donor`` kinds."""
    import torch
    from scipy import ndimage as ndi

    from napari_lvseg.data.grain import matched_grain
    from napari_lvseg.models.pix2pix import blend_weights
    from napari_lvseg.synthesis import region_slices

    from .donor_detail import class_smooth

    blur, grain, smooth, donor, match, shift = 0.0, False, 0.0, None, False, None
    for part in kind.split("+"):
        if part.startswith("blur:"):
            blur = float(part[5:])
        elif part.startswith("smooth:"):
            smooth = float(part[7:])
        elif part in ("donor:polar", "donor:aligned"):
            donor = part[6:]
        elif part.startswith("ownshift:"):
            shift = int(part[9:])
        elif part == "grain":
            grain = True
        elif part == "match":
            match = True
        elif part != "identity":
            raise SystemExit(f"unknown control '{kind}': see the module's doc for the kinds")
    if (donor or shift is not None or match) and not smooth:
        raise SystemExit(f"'{kind}': donor, ownshift and match go with smooth:S")
    region = region_slices(labels, labels)
    weights = blend_weights(torch.from_numpy(region), 3).numpy()
    out = np.asarray(image, np.float32).copy()
    for z in range(len(labels)):
        real = np.asarray(image[z], np.float64)
        fill = ndi.gaussian_filter(real, blur) if blur else real.copy()
        if grain:
            fill = fill + matched_grain(real, fill if blur else np.zeros_like(real), region[z],
                                        np.random.default_rng([seed, z]))
        if smooth:   # each class smoothed within itself: the real brightness, no detail
            fill = class_smooth(fill, labels[z], smooth)
        if shift is not None:   # plus this slice's own detail, moved by whole pixels
            fill = fill + np.roll(real - class_smooth(real, labels[z], smooth), (shift, shift), (0, 1))
        if donor and labels[z].any():   # plus another heart's detail, in this slice's intensity scale
            fill = fill + _donor_detail(real, labels[z], region[z], donors, donor, smooth, match)
        r, w = region[z], weights[z]
        out[z][r] = w[r] * fill[r] + (1.0 - w[r]) * real[r]
    return out


def _donor_detail(real, labels, region, donors, how: str, sigma: float, match: bool) -> np.ndarray:
    """The detail of the donor slice nearest ``labels`` in LV size (``polar``) or, of the 8 nearest, the one that
    overlaps this heart most (``aligned``), scaled by the two slices' percentile ranges (1-99); ``match``: then
    brought to this slice's grain, measured on its residual just outside the region (not the pixels replaced)."""
    from scipy import ndimage as ndi

    from napari_lvseg.data.grain import residual, robust_spread
    from napari_lvseg.synthesis import rank_donors

    from .donor_detail import aligned_detail, donor_detail

    ranked = rank_donors(labels, donors)
    if how == "aligned":
        *found, chosen = max((aligned_detail(labels, d.image, d.labels, sigma) + (d,) for d in ranked[:8]),
                             key=lambda t: t[2])
        detail, where = found[0], found[1]
    else:
        chosen = ranked[0]
        detail, where = donor_detail(labels, chosen.image, chosen.labels, sigma)
    lo, hi = np.percentile(real, [1, 99])
    d_lo, d_hi = np.percentile(chosen.image, [1, 99])
    scale = (hi - lo) / max(d_hi - d_lo, 1e-6)
    detail = detail * scale
    if match:
        ring = ndi.binary_dilation(region, iterations=6) & ~region
        have = robust_spread(residual(chosen.image)[chosen.labels > 0] * scale)
        detail = detail * (robust_spread(residual(real)[ring]) / max(have, 1e-9))
    return np.where(where, detail, 0.0)


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
    from napari_lvseg.synthesis import donors_from_volumes
    from napari_lvseg.synthesis_edits import read_cases

    torch.set_num_threads(args.threads)
    split = json.loads(Path(args.split_file).read_text())
    sets = {"train": read_cases(args.data, split["train"]), "test": read_cases(args.data, split["val"] + split["test"])}
    donors = donors_from_volumes(sets["train"])

    def others(case):   # the donor kinds: never a case's own slices ("Case_X slice Z")
        return [d for d in donors if d.name.rsplit(" slice ", 1)[0] != case]

    results = {}
    for kind in args.kinds:
        crops = {part: (np.concatenate([lv_crops(i, lab, 64, c) for c, i, lab in rows]),
                        np.concatenate([lv_crops(changed(i, lab, kind, args.seed, others(c)), lab, 64, c)
                                        for c, i, lab in rows]))
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
