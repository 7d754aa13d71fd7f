"""Context-preserving synthesis, measured: pixels kept outside the LV region, and the LGE physics per case.

    python training/context_synthesis_check.py --split val --out training/results/pix2pix_context/check_val.json \
        --png docs/context_generator.png

For each case of the split (EMIDEC crops), every LV slice's real mask is rendered
- by the labels-only generator (``--old``, default lvseg-pix2pix-resize): a whole image from the mask;
- by the context generator (``--new``, default lvseg-pix2pix-context) into the real slice itself (its LV region
  blanked and filled in; `synthesize(..., context=image, context_labels=mask)`);
- and, as a what-if, the mask with its infarct grown by 3 pixels and no-reflow added (simulator edits, seed 0),
  rendered by the context generator into the same real slice.
Outside region: the number of pixels outside the region that differ from the real image (must be 0).
Physics, per case with infarct (class means over its slices, each slice normalised by its own percentiles 1/99):
infarct > normal myocardium, no-reflow < infarct (where the case has no-reflow), blood pool > normal myocardium.
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
CHECKS = ("infarct>myocardium", "no_reflow<infarct", "blood_pool>myocardium")


def physics(images, labels) -> dict:
    """Class means (per-slice normalised) and the three checks of one case (None where a class is absent)."""
    from napari_lvseg.data.normalize import normalize_slices

    norm = normalize_slices(np.asarray(images, np.float32))
    means = {c: float(norm[labels == c].mean()) if (labels == c).any() else None for c in range(5)}
    cav, myo, inf, nr = means[1], means[2], means[3], means[4]
    out = {"means": means,
           "infarct>myocardium": None if inf is None or myo is None else bool(inf > myo),
           "no_reflow<infarct": None if nr is None or inf is None else bool(nr < inf),
           "blood_pool>myocardium": None if cav is None or myo is None else bool(cav > myo)}
    out["pass"] = all(out[k] is not False for k in CHECKS)
    return out


def edited(mask, rng):
    from napari_lvseg.data import simulator as sim

    out = np.stack([sim.grow_infarct(s, 3) if np.isin(s, (3, 4)).any() else s for s in mask])
    return np.stack([sim.add_no_reflow(s, rng) if (s == 3).any() else s for s in out])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="val", choices=("train", "val", "test"))
    parser.add_argument("--old", default="lvseg-pix2pix-resize")
    parser.add_argument("--new", default="lvseg-pix2pix-context")
    parser.add_argument("--out", help="JSON of the figures")
    parser.add_argument("--png", help="picture: mask, real, old, new, what-if mask, new what-if (4 rows)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from napari_lvseg.io import emidec
    from napari_lvseg.synthesis import load_synthesis_model, region_slices, synthesize

    data = Path(os.environ.get("LVSEG_EMIDEC_DIR", ROOT.parent / "shared/data/emidec-lge-128"))
    names = json.loads((ROOT / "training/split.json").read_text())[args.split]
    old, new = load_synthesis_model(args.old), load_synthesis_model(args.new, context=True)
    rows, changed_outside, outside_total, pictures = [], 0, 0, []
    rng = np.random.default_rng(0)
    for case in emidec.find_cases(data):
        if case.name not in names:
            continue
        image, labels = emidec.read_case(case)
        image, labels = image.data.astype(np.float32), labels.data
        keep = labels.reshape(len(labels), -1).any(1)
        image, labels = image[keep], labels[keep]
        what_if = edited(labels, rng)
        old_img = synthesize(labels, old, seed=0)
        new_img = synthesize(labels, new, seed=0, context=image, context_labels=labels)
        new_what_if = synthesize(what_if, new, seed=0, context=image, context_labels=labels)
        for target, out in ((labels, new_img), (what_if, new_what_if)):
            region = region_slices(target, labels, new[0].region_dilation)
            changed_outside += int(np.count_nonzero(out[~region] != image[~region]))
            outside_total += int((~region).sum())
        row = {"case": case.name, "slices": int(len(labels)), "infarct": bool((labels == 3).any()),
               "real": physics(image, labels), "old": physics(old_img, labels), "new": physics(new_img, labels),
               "new_what_if": physics(new_what_if, what_if)}
        rows.append(row)
        z = int(np.argmax([(s == 4).sum() * 100 + (s == 3).sum() for s in labels]))
        pictures.append((labels[z], image[z], old_img[z], new_img[z], what_if[z], new_what_if[z]))
        print(case.name, {k: (row[k]["pass"]) for k in ("real", "old", "new", "new_what_if")}, flush=True)

    infarct_rows = [r for r in rows if r["infarct"]]
    summary = {"split": args.split, "cases": len(rows), "infarct_cases": len(infarct_rows),
               "old": args.old, "new": args.new,
               "outside_region_pixels_changed": changed_outside, "outside_region_pixels": outside_total}
    for key in ("real", "old", "new", "new_what_if"):
        summary[f"{key}_physics_pass"] = f"{sum(r[key]['pass'] for r in infarct_rows)}/{len(infarct_rows)}"
        for check in CHECKS:
            values = [r[key][check] for r in infarct_rows if r[key][check] is not None]
            summary[f"{key}_{check}"] = f"{sum(values)}/{len(values)}"
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"summary": summary, "cases": rows}, indent=1))
    if args.png:
        picture(pictures, args.png)
    return 0


def picture(pictures, path) -> None:
    """Rows: the four cases with the most no-reflow / infarct; columns: mask, real, old, new, what-if mask, new."""
    from PIL import Image

    from napari_lvseg.data.normalize import normalize_slices

    from .figure_generators import colour, grey

    pictures = sorted(pictures, key=lambda p: -((p[0] == 4).sum() * 100 + (p[0] == 3).sum()))[:4]
    gap = 4
    rows = []
    for mask, real, old, new, what_if_mask, what_if in pictures:
        tiles = [colour(mask)] + [grey(normalize_slices(x)) for x in (real, old, new)]
        tiles += [colour(what_if_mask), grey(normalize_slices(what_if))]
        row = np.concatenate([np.pad(t, ((0, 0), (0, gap), (0, 0)), constant_values=255) for t in tiles], 1)
        rows.append(np.pad(row, ((0, gap), (0, 0), (0, 0)), constant_values=255))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).resize((rows[0].shape[1] * 2, len(rows) * rows[0].shape[0] * 2),
                                                   Image.NEAREST).save(path)


if __name__ == "__main__":
    sys.exit(main())
