"""A picture of generators side by side: test-split masks, the real images, then each generator's image of the mask.

    python training/figure_generators.py docs/guided_generator.png lvseg-pix2pix training/runs/pix2pix_guided_last

One row per test case (its slice with the most no-reflow, then infarct; the four richest cases), seed 0.
Grey levels: each image normalised per slice (percentiles 1/99 -> black/white), as the networks see it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GAP = 4


def tiles_for(generators: list, data: str, rows: int = 4) -> list:
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.data.normalize import normalize_slices
    from napari_lvseg.engine.synthesis import from_tanh, generate_slices
    from napari_lvseg.labels import COLORS, INFARCT, NO_REFLOW
    from napari_lvseg.models.store import load_model

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
        generator, _ = load_model(ref, task="synthesis")
        columns.append(normalize_slices(from_tanh(generate_slices(generator, masks, seed=0))))

    def grey(image):
        return np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)

    def colour(labels):
        out = np.zeros(labels.shape + (3,), np.uint8)
        for value, rgba in COLORS.items():
            out[labels == value] = (np.asarray(rgba[:3]) * 255).astype(np.uint8)
        return out

    return [[colour(masks[k])] + [grey(column[k]) for column in columns] for k in range(len(chosen))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="PNG file")
    parser.add_argument("generators", nargs="+")
    parser.add_argument("--data", default=os.environ.get("LVSEG_EMIDEC_DIR",
                                                         str(ROOT.parent / "shared/data/emidec-lge-128")))
    args = parser.parse_args(argv)
    from PIL import Image

    tiles = tiles_for(args.generators, args.data)
    size = tiles[0][0].shape[0]
    canvas = np.full((len(tiles) * (size + GAP), len(tiles[0]) * (size + GAP), 3), 255, np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            canvas[r * (size + GAP):r * (size + GAP) + size, c * (size + GAP):c * (size + GAP) + size] = tile
    Image.fromarray(canvas).resize((canvas.shape[1] * 2, canvas.shape[0] * 2), Image.NEAREST).save(args.out)
    print(f"{args.out}: {len(tiles)} cases x {len(tiles[0])} columns (mask, real, {', '.join(args.generators)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
