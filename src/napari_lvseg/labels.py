"""The class scheme: one place for label values, names, colours and EMIDEC region groups.

0 background, 1 LV cavity, 2 normal myocardium, 3 infarct, 4 no-reflow (microvascular obstruction).
The classes are mutually exclusive: a pixel carries exactly one of them.
"""

from __future__ import annotations

import numpy as np

BACKGROUND, CAVITY, MYOCARDIUM, INFARCT, NO_REFLOW = 0, 1, 2, 3, 4
N_CLASSES = 5
FOREGROUND = (CAVITY, MYOCARDIUM, INFARCT, NO_REFLOW)

NAMES = {
    BACKGROUND: "background",
    CAVITY: "LV cavity",
    MYOCARDIUM: "normal myocardium",
    INFARCT: "infarct",
    NO_REFLOW: "no-reflow",
}
SHORT_NAMES = {BACKGROUND: "background", CAVITY: "cavity", MYOCARDIUM: "myocardium",
               INFARCT: "infarct", NO_REFLOW: "no_reflow"}

# Fixed display colours (RGBA, 0..1): chosen to stay distinguishable for common colour-vision deficiencies.
COLORS = {
    BACKGROUND: (0.0, 0.0, 0.0, 0.0),
    CAVITY: (0.95, 0.85, 0.25, 1.0),      # yellow
    MYOCARDIUM: (0.20, 0.55, 0.95, 1.0),  # blue
    INFARCT: (0.95, 0.30, 0.20, 1.0),     # red-orange
    NO_REFLOW: (0.30, 0.90, 0.40, 1.0),   # green
}

# EMIDEC challenge regions: each a set of label values.
EMIDEC_REGIONS = {
    "myocardium": (MYOCARDIUM, INFARCT, NO_REFLOW),
    "infarct": (INFARCT, NO_REFLOW),
    "no_reflow": (NO_REFLOW,),
}


def napari_colormap() -> dict:
    """Colours in the form napari's Labels layer takes (``{value: rgba, None: transparent}``)."""
    cmap = {value: rgba for value, rgba in COLORS.items()}
    cmap[None] = (0.0, 0.0, 0.0, 0.0)
    return cmap


def region(labels: np.ndarray, name: str) -> np.ndarray:
    """Boolean mask of an EMIDEC region ("myocardium", "infarct", "no_reflow")."""
    return np.isin(labels, EMIDEC_REGIONS[name])


def invalid_values(labels: np.ndarray) -> list:
    """Values present in ``labels`` that are not a class (non-integers and anything outside 0..4)."""
    values = np.unique(labels)
    values = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    bad = [v for v in values.tolist() if v != int(v) or not 0 <= int(v) < N_CLASSES]
    if labels.dtype.kind == "f" and not np.isfinite(labels).all():
        bad.append(float("nan"))
    return bad
