"""A picture of generators side by side: test-split masks, the real images, then each generator's image of the mask.

    python training/figure_generators.py docs/guided_generator.png lvseg-pix2pix training/runs/pix2pix_guided_last

One row per test case (its slice with the most no-reflow, then infarct; the four richest cases), seed 0. A context
generator renders each mask into its own real slice (the whole LV region redrawn, the grain on), as the realism test.
Grey levels: each image normalised per slice (percentiles 1/99 -> black/white), as the networks see it.

    python training/figure_generators.py docs/synthetic_stacks.png --stacks training/runs/synthetic_stacks

draws synthetic stacks instead: one row per stack (the first four with no-reflow), four neighbouring LV slices
around the no-reflow, each as mask and image.
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
GAP = 4


def grey(image):
    return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)


def colour(labels):
    from napari_lvseg.labels import COLORS

    out = np.zeros(labels.shape + (3,), np.uint8)
    for value, rgba in COLORS.items():
        out[labels == value] = (np.asarray(rgba[:3]) * 255).astype(np.uint8)
    return out


def stack_tiles(folder: str, rows: int = 4, width: int = 4) -> list:
    """Mask and image of ``width`` neighbouring LV slices of the first ``rows`` stacks with no-reflow."""
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.labels import CAVITY, NO_REFLOW

    source = load_source(folder)
    out = []
    for _, images, labels in source.volumes():
        lv = [z for z in range(len(labels)) if (labels[z] == CAVITY).any()]
        with_no_reflow = [z for z in lv if (labels[z] == NO_REFLOW).any()]
        if not with_no_reflow or len(lv) < width:
            continue
        start = min(max(lv.index(with_no_reflow[0]) - 1, 0), len(lv) - width)
        out.append([tile for z in lv[start:start + width] for tile in (colour(labels[z]), grey(images[z]))])
        if len(out) == rows:
            break
    return out


def tiles_for(generators: list, data: str, rows: int = 4) -> list:
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.engine.synthesis import from_tanh, generate_slices
    from napari_lvseg.labels import INFARCT, NO_REFLOW
    from napari_lvseg.models.registry import load_model

    source = load_source(data, cases=json.loads((ROOT / "training/split.json").read_text())["test"])
    richest = {}
    for i, (case, labels) in enumerate(zip(source.cases, source.labels)):
        score = int((labels == NO_REFLOW).sum()) * 10 + int((labels == INFARCT).sum())
        if score > richest.get(case, (0, -1))[0]:
            richest[case] = (score, i)
    chosen = [i for _, i in sorted(richest.values(), reverse=True)[:rows]]
    masks = source.labels[chosen]
    columns = [source.images[chosen]]
    for ref in generators:
        generator, card = load_model(ref, task="synthesis")
        if card.params.get("conditioning") == "context":   # the mask rendered into its own real slice, the grain on
            from napari_lvseg.synthesis_edits import Renderer

            columns.append(normalize_slices(Renderer((generator, card))(masks, source.images[chosen], 0, masks)))
        else:
            columns.append(normalize_slices(from_tanh(generate_slices(generator, masks, seed=0))))

    return [[colour(masks[k])] + [grey(column[k]) for column in columns] for k in range(len(chosen))]


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="PNG file")
    parser.add_argument("generators", nargs="*")
    parser.add_argument("--stacks", metavar="PAIR_FOLDER", help="draw synthetic stacks of this pair folder instead")
    parser.add_argument("--data", default=os.environ.get("LVSEG_EMIDEC_DIR",
                                                         str(ROOT.parent / "shared/data/emidec-lge-128")))
    args = parser.parse_args(argv)
    from PIL import Image

    if bool(args.stacks) == bool(args.generators):
        parser.error("give generators or --stacks PAIR_FOLDER")
    tiles = stack_tiles(args.stacks) if args.stacks else tiles_for(args.generators, args.data)
    if not tiles:
        parser.error(f"{args.stacks}: no stack with no-reflow and 4 LV slices")
    size = tiles[0][0].shape[0]
    canvas = np.full((len(tiles) * (size + GAP), len(tiles[0]) * (size + GAP), 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            canvas[r * (size + GAP):r * (size + GAP) + size, c * (size + GAP):c * (size + GAP) + size] = tile
    Image.fromarray(canvas).resize((canvas.shape[1] * 2, canvas.shape[0] * 2), Image.NEAREST).save(args.out)
    what = "mask and image of 4 slices" if args.stacks else f"mask, real, {', '.join(args.generators)}"
    print(f"{args.out}: {len(tiles)} rows x {len(tiles[0])} columns ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
