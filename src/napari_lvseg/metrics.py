"""Segmentation metrics of one case and clinical quantification of a label stack.

Label arrays are (Z, Y, X) integer stacks in the scheme of ``labels``; spacing is (z, y, x) in mm.

- Study protocol: Dice per class and case in 3-D; a class absent from both truth and prediction gives
  NaN (`evaluation` leaves it out of that class's mean over cases).
- Pooled protocol: `overlap_counts` per case, which `evaluation` sums over all voxels of all cases.
- EMIDEC protocol: Dice per EMIDEC region (1.0 when both are empty), volume errors in % of the true
  myocardium, myocardium Hausdorff distances. The Hausdorff distance is NaN when either mask is
  empty (undefined); means over cases skip NaN, so a row with NaN HD marks a missed myocardium.

Scoring many cases (per-case and pooled means, EMIDEC means, bootstrap intervals, CSV and JSON reports) is
`evaluation.evaluate_cases`'s.
"""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError

CLASSES = (lb.CAVITY, lb.MYOCARDIUM, lb.INFARCT, lb.NO_REFLOW)
CLASS_KEYS = tuple(lb.SHORT_NAMES[c] for c in CLASSES)
N_RAYS = 180  # 2 degree steps: finer than the wall segments a reader scores
RAY_STEP = 0.1  # px; sampling step along a ray: lengths to within a few % of a pixel


# ---------------------------------------------------------------------------------------------
# Input checks


def _as_labels(array, what: str) -> np.ndarray:
    """``array`` as an integer label stack, or LvsegError naming ``what``."""
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise LvsegError(f"expected a (Z, Y, X) label stack or a (Y, X) slice, got shape {array.shape}", what)
    bad = lb.invalid_values(array)
    if bad:
        raise LvsegError(f"values {bad[:5]} are not label classes 0..{lb.N_CLASSES - 1}", what)
    return array.astype(np.uint8, copy=False)


def _pair(pred, truth, what: str = "case") -> tuple[np.ndarray, np.ndarray]:
    pred, truth = _as_labels(pred, f"{what} prediction"), _as_labels(truth, f"{what} truth")
    if pred.shape != truth.shape:
        raise LvsegError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}", what)
    return pred, truth


def _spacing(spacing, ndim: int = 3) -> tuple[float, ...]:
    values = tuple(float(s) for s in np.ravel(spacing))
    if len(values) != ndim or not all(math.isfinite(s) and s > 0 for s in values):
        axes = "(z, y, x)" if ndim == 3 else "(y, x)"
        raise LvsegError(f"spacing must be {ndim} positive numbers {axes}, got {spacing!r}")
    return values


# ---------------------------------------------------------------------------------------------
# Dice, the per-case protocols


def dice(pred_mask, true_mask) -> float:
    """Binary Dice 2|P∩T|/(|P|+|T|); NaN when both masks are empty (callers decide what that means)."""
    pred_mask, true_mask = np.asarray(pred_mask, bool), np.asarray(true_mask, bool)
    total = int(pred_mask.sum()) + int(true_mask.sum())
    if total == 0:
        return float("nan")
    return 2.0 * int(np.logical_and(pred_mask, true_mask).sum()) / total


def study_dice_per_case(pred, truth) -> dict:
    """Dice per class (cavity, myocardium, infarct, no_reflow) in 3-D; NaN where a class is absent in both."""
    return dice_from_counts(overlap_counts(pred, truth))


def dice_from_counts(counts) -> dict:
    """Dice per class of one case's `overlap_counts` (2, 4), as `dice` gives it; NaN where a class is absent."""
    return {key: (2.0 * int(o) / int(t) if t else float("nan")) for key, o, t in zip(CLASS_KEYS, *counts, strict=True)}


def overlap_counts(pred, truth) -> np.ndarray:
    """(2, 4) voxel counts of one case: |P∩T| and |P|+|T| per class (cavity, myocardium, infarct, no-reflow)."""
    pred, truth = _pair(pred, truth)
    counts = np.zeros((2, len(CLASSES)), dtype=np.int64)
    for k, c in enumerate(CLASSES):
        p, t = pred == c, truth == c
        counts[:, k] = int(np.logical_and(p, t).sum()), int(p.sum()) + int(t.sum())
    return counts


def hausdorff(pred_mask, true_mask, spacing=None, percentile: float | None = None) -> float:
    """Symmetric (percentile) Hausdorff distance between surfaces, in the units of ``spacing``.

    NaN when either mask is empty: the distance is undefined there.
    """
    pred_mask, true_mask = np.asarray(pred_mask, bool), np.asarray(true_mask, bool)
    if not pred_mask.any() or not true_mask.any():
        return float("nan")
    from monai.metrics import compute_hausdorff_distance

    with warnings.catch_warnings():  # MONAI warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            pred_mask[None, None].astype(np.float32), true_mask[None, None].astype(np.float32),
            include_background=True, percentile=percentile, spacing=list(_spacing(spacing, pred_mask.ndim)))
    return float(value.reshape(-1)[0])


def emidec_case_metrics(pred, truth, spacing=(1.0, 1.0, 1.0)) -> dict:
    """EMIDEC metrics for one case (3-D).

    ``dice_<region>`` for myocardium (2+3+4), infarct (3+4), no_reflow (4), 1.0 when both are empty;
    ``vol_err_<infarct|no_reflow>_pct`` = |V_pred - V_true| / V_true_myocardium * 100 and the signed
    ``vol_diff_..._pct`` (NaN when the true myocardium is empty); ``hd_myocardium`` and
    ``hd95_myocardium`` in the units of ``spacing`` (z, y, x; None = 1 voxel), NaN when either myocardium is empty.
    """
    pred, truth = _pair(pred, truth)
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    spacing = _spacing(spacing) if spacing is not None else (1.0, 1.0, 1.0)
    result = {}
    for name in lb.EMIDEC_REGIONS:
        d = dice(lb.region(pred, name), lb.region(truth, name))
        result[f"dice_{name}"] = 1.0 if math.isnan(d) else d
    true_myo = int(lb.region(truth, "myocardium").sum())
    for name in ("infarct", "no_reflow"):
        diff = int(lb.region(pred, name).sum()) - int(lb.region(truth, name).sum())
        signed = 100.0 * diff / true_myo if true_myo else float("nan")
        result[f"vol_err_{name}_pct"] = abs(signed)
        result[f"vol_diff_{name}_pct"] = signed
    pred_myo, truth_myo = lb.region(pred, "myocardium"), lb.region(truth, "myocardium")
    result["hd_myocardium"] = hausdorff(pred_myo, truth_myo, spacing)
    result["hd95_myocardium"] = hausdorff(pred_myo, truth_myo, spacing, percentile=95)
    return result


# ---------------------------------------------------------------------------------------------
# Clinical quantification


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else float("nan")


def max_transmurality(labels2d) -> float:
    """Largest infarct share (%) of the myocardial wall crossed by a ray from the cavity centroid.

    ``N_RAYS`` rays over 360 degrees; along each, the length inside infarct (3+4) pixels over the length
    inside myocardium (2+3+4) pixels. Lengths rather than pixel counts, so that a diagonal ray is not
    off by a whole pixel of an 8-pixel wall. The centre is the cavity centroid, or the myocardium
    centroid on slices without cavity (apex). NaN without myocardium; 0 with myocardium but no infarct.
    """
    labels2d = np.asarray(labels2d)
    myo = lb.region(labels2d, "myocardium")
    if not myo.any():
        return float("nan")
    infarct = lb.region(labels2d, "infarct")
    if not infarct.any():
        return 0.0
    cavity = labels2d == lb.CAVITY
    cy, cx = np.argwhere(cavity if cavity.any() else myo).mean(axis=0)
    height, width = labels2d.shape
    angles = np.linspace(0.0, 2 * np.pi, N_RAYS, endpoint=False)[:, None]
    # Rays end just past the farthest myocardium pixel (a sample rounds to a pixel at most 0.71 px away), not at
    # the image's corner: the same lengths for a fraction of the samples, so the table can follow each stroke.
    wall = np.argwhere(myo)
    reach = float(np.hypot(wall[:, 0] - cy, wall[:, 1] - cx).max()) + 1.0
    radii = np.arange(0.0, reach, RAY_STEP)[None, :]
    # Nearest-pixel samples at a fixed step: a pixel's sample count is the ray's length inside it.
    ys = np.rint(cy + radii * np.sin(angles)).astype(np.int64)
    xs = np.rint(cx + radii * np.cos(angles)).astype(np.int64)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    flat = np.where(inside, ys * width + xs, 0)
    myo_length = (myo.ravel()[flat] & inside).sum(axis=1)
    infarct_length = (infarct.ravel()[flat] & inside).sum(axis=1)
    hit = myo_length > 0
    if not hit.any():  # no ray from the centre crosses the wall (e.g. a stray painted pixel)
        return 0.0
    return float(100.0 * np.max(infarct_length[hit] / myo_length[hit]))


MYOCARDIUM_G_PER_MM3 = 1.05e-3   # myocardial density 1.05 g/ml, the usual factor for LV mass in cardiac MR


def quantify(labels, spacing=None) -> dict:
    """Myocardium size, infarct and no-reflow % of myocardium, and maximum transmurality, per slice and total.

    ``labels``: (Z, Y, X) (a (Y, X) slice counts as one slice). With ``spacing`` (z, y, x) in mm, sizes are
    also given as ``myocardium_mm2`` per slice, and in total as ``myocardium_mm3``, the myocardial mass
    ``myocardium_g``, ``infarct_mm3`` and ``no_reflow_mm3`` (infarct includes no-reflow, as in the percentages).
    An in-plane ``spacing`` (y, x) alone, as a 2-D slice has, gives the areas (mm²) and no volumes.
    Percentages are NaN on slices without myocardium; the total transmurality is the maximum over slices.
    """
    labels = _as_labels(labels, "labels")
    if labels.ndim == 2:
        labels = labels[None]
    if spacing is not None:
        in_plane = np.size(spacing) == 2
        if in_plane and len(labels) > 1:
            raise LvsegError(f"a stack of {len(labels)} slices needs its spacing as (z, y, x), got {spacing!r}")
        spacing = (float("nan"), *_spacing(spacing, 2)) if in_plane else _spacing(spacing)
    slices = []
    for z, slice2d in enumerate(labels):
        myo = int(lb.region(slice2d, "myocardium").sum())
        infarct = int(lb.region(slice2d, "infarct").sum())
        no_reflow = int(lb.region(slice2d, "no_reflow").sum())
        row = {"slice": z, "myocardium_px": myo}
        if spacing is not None:
            row["myocardium_mm2"] = myo * spacing[1] * spacing[2]
        row.update(infarct_px=infarct, no_reflow_px=no_reflow, infarct_pct=_percent(infarct, myo),
                   no_reflow_pct=_percent(no_reflow, myo), transmurality_pct=max_transmurality(slice2d))
        slices.append(row)
    myo = sum(row["myocardium_px"] for row in slices)
    infarct = sum(row["infarct_px"] for row in slices)
    no_reflow = sum(row["no_reflow_px"] for row in slices)
    total = {"myocardium_px": myo}
    if spacing is not None and in_plane:
        total["myocardium_mm2"] = myo * spacing[1] * spacing[2]
    elif spacing is not None:
        voxel = spacing[0] * spacing[1] * spacing[2]
        total.update(myocardium_mm3=myo * voxel, myocardium_g=myo * voxel * MYOCARDIUM_G_PER_MM3,
                     infarct_mm3=infarct * voxel, no_reflow_mm3=no_reflow * voxel)
    transmural = [row["transmurality_pct"] for row in slices if not math.isnan(row["transmurality_pct"])]
    total.update(infarct_px=infarct, no_reflow_px=no_reflow, infarct_pct=_percent(infarct, myo),
                 no_reflow_pct=_percent(no_reflow, myo),
                 transmurality_pct=max(transmural) if transmural else float("nan"))
    return {"slices": slices, "total": total}


def quantification_rows(q: dict) -> list[dict]:
    """Flat rows for a CSV: one per slice, then one with ``slice='total'``.

    With spacing, slice rows carry ``myocardium_mm2`` and the total the volumes and mass; other cells stay empty.
    """
    rows = [dict(row) for row in q["slices"]]
    rows.append({"slice": "total", **q["total"]})
    return rows


# ---------------------------------------------------------------------------------------------
# Output


def _columns(rows: list[dict]) -> list[str]:
    columns = []
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return str(value)


def write_csv(rows: list[dict], path) -> Path:
    """Write ``rows`` (dicts; columns in first-seen order) as CSV, atomically. NaN becomes an empty cell."""
    path = Path(path)
    if not path.parent.is_dir():
        raise LvsegError("folder does not exist", path.parent)
    columns = _columns(rows)
    from .io.atomic import atomic_path

    with atomic_path(path, suffix="") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_cell(row.get(key)) for key in columns])
    return path


def _text_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "n/a" if math.isnan(value) else f"{float(value):.3f}"
    return str(value)


def format_table(rows: list[dict], columns=None) -> str:
    """Aligned plain-text table (header, rule, rows); numbers right-aligned, floats to 3 decimals, NaN 'n/a'."""
    columns = list(columns) if columns is not None else _columns(rows)
    cells = [[_text_cell(row.get(key)) for key in columns] for row in rows]
    numeric = [all(isinstance(row.get(key), (int, float, np.number)) and not isinstance(row.get(key), bool)
                   for row in rows if row.get(key) is not None) for key in columns]
    widths = [max([len(str(key))] + [len(line[i]) for line in cells]) for i, key in enumerate(columns)]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line([str(key) for key in columns]), line(["-" * w for w in widths])]
    out.extend(line(values) for values in cells)
    return "\n".join(out)
