"""Intensity-threshold reference methods for infarct inside the (corrected) myocardium, as clinical software does
them, so a reader can check the network against them.

- n-SD: infarct where the intensity exceeds the remote myocardium's mean + n standard deviations (n = 2, 3, 5).
  Remote = the normal-myocardium label (2) or a user mask; per slice where the slice holds at least
  `MIN_REMOTE_PX` remote pixels (the coil's sensitivity changes from slice to slice), else the stack's remote.
- FWHM: infarct where the intensity exceeds half the maximum of the hyperenhanced region, per slice. The
  hyperenhanced region is the labelled infarct (3+4) of the slice, or a user mask. "Half" is taken between the
  image's floor (its minimum: 0 for a raw magnitude image, the clipping floor for data clipped to a range, such as
  the EMIDEC crops at about 1790) and the maximum: with an offset, half of the raw maximum would be below every
  pixel.

Both look only inside the myocardium (2+3+4) of the labels. No-reflow is dark, not enhanced, so a threshold misses
it; readers add it to the infarct by hand, and so does ``fill_no_reflow=True`` (the default): labelled no-reflow
(4) counts as infarct, as the network's infarct (3+4) does. Results: a label map (0 outside, 3 on the pixels
found) and the infarct % of the myocardium.
"""

from __future__ import annotations

import math

import numpy as np

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError
from napari_lvseg.metrics import _as_labels

N_SD = (2, 3, 5)
MIN_REMOTE_PX = 30


def _inputs(image, labels, mask=None, what="mask"):
    labels = _as_labels(labels, "labels")
    image = np.asarray(image, dtype=np.float64)
    if image.shape != labels.shape:
        raise LvsegError(f"image shape {image.shape} and label shape {labels.shape} differ")
    if labels.ndim == 2:
        labels, image = labels[None], image[None]
    if mask is not None:
        mask = np.asarray(mask, bool)
        mask = mask[None] if mask.ndim == 2 else mask
        if mask.shape != labels.shape:
            raise LvsegError(f"{what} shape {mask.shape} differs from the labels' {labels.shape}")
    return image, labels, mask


def _result(found, myo, labels, method, thresholds, fill_no_reflow, squeeze):
    if fill_no_reflow:
        found = found | (labels == lb.NO_REFLOW)
    out = np.where(found & myo, lb.INFARCT, 0).astype(np.uint8)
    n_myo = int(myo.sum())
    return {"method": method, "labels": out[0] if squeeze else out, "thresholds": thresholds,
            "infarct_px": int((out > 0).sum()), "myocardium_px": n_myo,
            "infarct_pct": 100.0 * int((out > 0).sum()) / n_myo if n_myo else math.nan}


def n_sd(image, labels, n: float = 2, remote=None, fill_no_reflow: bool = True) -> dict:
    """Infarct where intensity > mean + n SD of the remote myocardium (label 2, or the ``remote`` mask).

    Returns ``{'method': 'n-SD', 'labels', 'thresholds' (per slice, NaN where the slice has no myocardium),
    'infarct_px', 'myocardium_px', 'infarct_pct'}``.
    """
    squeeze = np.ndim(labels) == 2
    image, labels, remote = _inputs(image, labels, remote, "remote mask")
    myo = lb.region(labels, "myocardium")
    remote = (labels == lb.MYOCARDIUM) if remote is None else remote
    if remote.sum() < 2:
        raise LvsegError("no remote myocardium to measure (label 2 is empty and no remote mask was given)")
    stack = image[remote]
    thresholds = []
    found = np.zeros(labels.shape, bool)
    for z in range(len(labels)):
        if not myo[z].any():
            thresholds.append(math.nan)
            continue
        values = image[z][remote[z]] if remote[z].sum() >= MIN_REMOTE_PX else stack
        t = float(values.mean() + n * values.std())
        thresholds.append(t)
        found[z] = image[z] > t
    return _result(found, myo, labels, f"{n:g}-SD", thresholds, fill_no_reflow, squeeze)


def fwhm(image, labels, region=None, fill_no_reflow: bool = True) -> dict:
    """Infarct where intensity >= halfway between the image's floor and the maximum of the slice's hyperenhanced
    region (the labelled infarct 3+4 or the ``region`` mask). Slices without such a region get none."""
    squeeze = np.ndim(labels) == 2
    image, labels, region = _inputs(image, labels, region, "region mask")
    myo = lb.region(labels, "myocardium")
    region = lb.region(labels, "infarct") if region is None else region
    floor = float(image.min())
    thresholds = []
    found = np.zeros(labels.shape, bool)
    for z in range(len(labels)):
        seed = region[z] & myo[z]
        if not seed.any():
            thresholds.append(math.nan)
            continue
        t = floor + 0.5 * (float(image[z][seed].max()) - floor)
        thresholds.append(t)
        found[z] = image[z] >= t
    return _result(found, myo, labels, "FWHM", thresholds, fill_no_reflow, squeeze)


def reference_methods(image, labels, remote=None, region=None, fill_no_reflow: bool = True) -> list:
    """The 2-, 3- and 5-SD and FWHM results (each `n_sd` / `fwhm`'s dict), plus the labels' own as a first row
    ``{'method': 'labels', ...}``, for a side-by-side table."""
    labels_arr = _as_labels(labels, "labels")
    myo = lb.region(labels_arr, "myocardium")
    infarct = lb.region(labels_arr, "infarct")
    n_myo = int(myo.sum())
    rows = [{"method": "labels", "labels": np.where(infarct, lb.INFARCT, 0).astype(np.uint8), "thresholds": [],
             "infarct_px": int(infarct.sum()), "myocardium_px": n_myo,
             "infarct_pct": 100.0 * int(infarct.sum()) / n_myo if n_myo else math.nan}]
    rows += [n_sd(image, labels_arr, n, remote, fill_no_reflow) for n in N_SD]
    rows.append(fwhm(image, labels_arr, region, fill_no_reflow))
    return rows
