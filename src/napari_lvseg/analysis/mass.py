"""Masses in grams of the myocardium (2+3+4), infarct (3+4) and no-reflow (4), at 1.05 g/ml (myocardial
density, `metrics.MYOCARDIUM_G_PER_MM3`), beside their volumes.

Grams need the voxel volume in mm³, from the file's voxel size. The readers give 1.0 where a file says nothing,
and the EMIDEC crops carry 1 mm placeholders; a voxel of exactly 1 x 1 x 1 mm is therefore taken as *unknown*
(no short-axis LGE stack has 1 mm slices: they are 5-10 mm apart), and the figures say "pixel size unknown"
instead of inventing grams. Papillary muscles and trabeculae count as they are labelled: EMIDEC labels them
cavity, so they are not in the myocardial mass.
"""

from __future__ import annotations

import math

import numpy as np

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError
from napari_lvseg.metrics import MYOCARDIUM_G_PER_MM3, _as_labels, _spacing

UNKNOWN = "pixel size unknown"
DENSITY_G_PER_ML = MYOCARDIUM_G_PER_MM3 * 1000.0


def spacing_known(spacing) -> bool:
    """False for None and for the readers' 1 x 1 x 1 mm placeholder (see the module's note)."""
    if spacing is None:
        return False
    values = [float(v) for v in np.ravel(spacing)]
    return not all(v == 1.0 for v in values)


def masses(labels, spacing=None) -> dict:
    """``{'known': bool, 'voxel_mm3', 'density_g_per_ml': 1.05, and per region (myocardium, infarct, no_reflow):
    '<region>_px', '<region>_ml', '<region>_g'}``; with the spacing unknown, the ml and g are NaN and 'note' says
    "pixel size unknown". ``spacing``: (z, y, x) mm."""
    labels = _as_labels(labels, "labels")
    labels = labels[None] if labels.ndim == 2 else labels
    known = spacing_known(spacing)
    if known:
        z, y, x = _spacing(spacing)
        voxel = z * y * x
    else:
        voxel = math.nan
    out = {"known": known, "voxel_mm3": voxel, "density_g_per_ml": DENSITY_G_PER_ML}
    if not known:
        out["note"] = UNKNOWN
    for name in lb.EMIDEC_REGIONS:
        px = int(lb.region(labels, name).sum())
        out[f"{name}_px"] = px
        out[f"{name}_ml"] = px * voxel / 1000.0
        out[f"{name}_g"] = px * voxel * MYOCARDIUM_G_PER_MM3
    return out


def format_mass(value_g: float) -> str:
    """'123.4 g', or "pixel size unknown" for NaN."""
    if value_g is None or math.isnan(value_g):
        return UNKNOWN
    return f"{value_g:.1f} g"


def check_spacing_option(values) -> tuple:
    """A user's --spacing Z Y X in mm: three positive numbers."""
    try:
        return _spacing(values)
    except LvsegError as error:
        raise LvsegError(f"--spacing: {error.message}") from None
