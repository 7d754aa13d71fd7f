"""Another heart's fine structure on this heart's smooth brightness: the realism controls' ``donor`` kinds
(`realism_controls.py`), an experiment, not part of the package.

A context generator draws the LV's brightness well but not its structure at 1-5 pixels, and a small classifier tells
its fill-ins from real LGE every time (training/RESULTS.md, "Realism, measured"). These controls ask whether that
structure could come from a *real slice of another heart*: each LV pixel (cavity and wall) takes the detail (the image
less its smoothing within its own class, so that class edges do not leak into it) of the donor pixel at the same
place in the heart. Two ways to map the donor onto this heart:

- ``polar`` (`donor_detail`): the same angle about the cavity's centre and the same fraction of the way from the
  cavity's centre to the endocardium, or from endocardium to epicardium; nearest neighbour, so no pixel is blurred,
  but pixels repeat where this heart has more of them at that place (8 % of neighbours equal, 1.4 % in real slices).
- ``aligned`` (`aligned_detail`): the donor turned (8 rotations/flips) and moved by whole pixels to overlap this heart
  most: no pixel resampled or repeated; pixels its LV does not cover keep no detail.
"""

from __future__ import annotations

import numpy as np

from napari_lvseg.labels import BACKGROUND, CAVITY

SMOOTH_SIGMA = 2.0   # px: what a class's smoothing keeps is this heart's brightness; what it leaves, the donor's


def class_smooth(image: np.ndarray, labels: np.ndarray, sigma: float = SMOOTH_SIGMA) -> np.ndarray:
    """``image`` smoothed within each class of ``labels`` (normalised convolution: a pixel averages only pixels of
    its own class), so that the smoothing does not carry one class's brightness across an edge into another."""
    from scipy import ndimage as ndi

    image = np.asarray(image, np.float64)
    out = image.copy()
    for value in np.unique(labels):
        mask = labels == value
        weight = ndi.gaussian_filter(mask.astype(np.float64), sigma, mode="nearest")
        total = ndi.gaussian_filter(np.where(mask, image, 0.0), sigma, mode="nearest")
        out[mask] = total[mask] / np.maximum(weight[mask], 1e-6)
    return out


def heart_coordinates(labels: np.ndarray, radius=None, thickness=None):
    """Each LV pixel's place in the heart, as points of a common plane: ``(points (N, 2), cavity (N,) bool, (ys,
    xs), (radius, thickness))``. A pixel at angle a about the cavity's centre sits at distance r from it: in the
    cavity r = radius x (1 - the fraction of the way from the endocardium to the centre), in the wall r = radius +
    (the fraction of the way through the wall) x thickness. ``radius`` and ``thickness`` default to this heart's
    own (mean endocardial radius, mean wall thickness); pass another heart's to place this one's pixels in that
    heart's frame. None where the slice has no cavity or no wall."""
    from scipy import ndimage as ndi

    cavity = labels == CAVITY
    wall = (labels != BACKGROUND) & ~cavity
    if not cavity.any() or not wall.any():
        return None
    if radius is None:
        radius = float(np.sqrt(cavity.sum() / np.pi))
        thickness = float(np.sqrt((cavity.sum() + wall.sum()) / np.pi)) - radius
    cy, cx = (float(v.mean()) for v in np.nonzero(cavity))
    to_wall = ndi.distance_transform_edt(cavity)
    centre = np.zeros(labels.shape, bool)
    centre[int(round(cy)), int(round(cx))] = True
    to_centre = ndi.distance_transform_edt(~centre)
    to_cavity = ndi.distance_transform_edt(~cavity)
    to_outside = ndi.distance_transform_edt(labels != BACKGROUND)
    ys, xs = np.nonzero(labels != BACKGROUND)
    in_cavity = cavity[ys, xs]
    depth = to_cavity[ys, xs] / np.maximum(to_cavity[ys, xs] + to_outside[ys, xs], 1e-6)
    inward = to_wall[ys, xs] / np.maximum(to_wall[ys, xs] + to_centre[ys, xs], 1e-6)   # 0 at the wall, 1 centre
    r = np.where(in_cavity, radius * (1.0 - inward), radius + depth * max(thickness, 1.0))
    angle = np.arctan2(ys - cy, xs - cx)
    return np.stack([r * np.sin(angle), r * np.cos(angle)], 1), in_cavity, (ys, xs), (radius, thickness)


def donor_detail(labels: np.ndarray, donor_image: np.ndarray, donor_labels: np.ndarray,
                 sigma: float = SMOOTH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """``(detail, where)``: the donor slice's fine structure (its image less its `class_smooth`, float64, in the
    donor's units) mapped onto the LV pixels of ``labels`` (cavity onto cavity, wall onto wall, by `heart_coordinates`
    in this heart's frame), and the bool mask of the pixels that got it (zeros and False where either slice has no
    cavity or no wall)."""
    from scipy.spatial import cKDTree

    detail, where = np.zeros(labels.shape), np.zeros(labels.shape, bool)
    target = heart_coordinates(labels)
    if target is None:
        return detail, where
    points, in_cavity, (ys, xs), frame = target
    source = heart_coordinates(donor_labels, *frame)
    if source is None:
        return detail, where
    d_points, d_cavity, (dys, dxs), _ = source
    d_detail = (np.asarray(donor_image, np.float64) - class_smooth(donor_image, donor_labels, sigma))[dys, dxs]
    for part in (True, False):   # cavity pixels from the donor's cavity, wall pixels from its wall
        mine, theirs = in_cavity == part, d_cavity == part
        _, nearest = cKDTree(d_points[theirs]).query(points[mine])
        detail[ys[mine], xs[mine]] = d_detail[theirs][nearest]
        where[ys[mine], xs[mine]] = True
    return detail, where


def _dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 rotations/flips of a slice (k in 0..7)."""
    out = np.rot90(array, k % 4)
    return out[:, ::-1] if k >= 4 else out


def _groups(labels: np.ndarray) -> np.ndarray:
    """0 outside the LV, 1 cavity, 2 wall (normal myocardium, infarct and no-reflow alike)."""
    return np.where(labels == BACKGROUND, 0, np.where(labels == CAVITY, 1, 2)).astype(np.uint8)


def aligned(labels: np.ndarray, donor_image: np.ndarray, donor_labels: np.ndarray, shifts: int = 3):
    """``(image, labels, overlap)``: the donor slice turned (one of 8 rotations/flips) and moved by whole pixels
    (so no pixel is resampled or repeated) onto ``labels``' grid where its cavity and wall overlap this heart's
    most (mean Dice of the two; ``overlap``). Pixels the donor does not cover: NaN in the image, 255 in labels."""
    target = _groups(labels)
    h, w = labels.shape
    ty, tx = (float(v.mean()) for v in np.nonzero(target))
    best = (-1.0, None)
    for k in range(8):
        lab = _dihedral(_groups(donor_labels), k)
        dy0, dx0 = (float(v.mean()) for v in np.nonzero(lab))
        for sy in range(-shifts, shifts + 1):
            for sx in range(-shifts, shifts + 1):
                oy, ox = int(round(ty - dy0)) + sy, int(round(tx - dx0)) + sx
                moved = _moved(lab, oy, ox, (h, w), 255)
                score = np.mean([2.0 * np.sum((target == g) & (moved == g)) / max(np.sum(target == g)
                                                                                + np.sum(moved == g), 1)
                                 for g in (1, 2)])
                if score > best[0]:
                    best = (score, (k, oy, ox))
    k, oy, ox = best[1]
    image = _moved(_dihedral(np.asarray(donor_image, np.float64), k), oy, ox, (h, w), np.nan)
    moved_labels = _moved(_dihedral(np.asarray(donor_labels, np.uint8), k), oy, ox, (h, w), 255)
    return image, moved_labels, float(best[0])


def _moved(array: np.ndarray, oy: int, ox: int, shape, fill) -> np.ndarray:
    """``array`` placed with its origin at (oy, ox) on a grid of ``shape``, ``fill`` where it does not reach."""
    out = np.full(shape, fill, dtype=np.result_type(array.dtype, np.asarray(fill).dtype))
    h, w = array.shape
    y0, x0 = max(oy, 0), max(ox, 0)
    y1, x1 = min(oy + h, shape[0]), min(ox + w, shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = array[y0 - oy:y1 - oy, x0 - ox:x1 - ox]
    return out


def aligned_detail(labels: np.ndarray, donor_image: np.ndarray, donor_labels: np.ndarray,
                   sigma: float = SMOOTH_SIGMA):
    """``(detail, where, overlap)``: the donor's fine structure (its image less its `class_smooth`), `aligned` onto
    ``labels``' LV, and the LV pixels that got it: those the donor's own LV covers."""
    smooth = class_smooth(donor_image, donor_labels, sigma)
    image, moved_labels, overlap = aligned(labels, np.asarray(donor_image, np.float64) - smooth, donor_labels)
    where = (labels != BACKGROUND) & (moved_labels != BACKGROUND) & (moved_labels != 255) & np.isfinite(image)
    return np.where(where, image, 0.0), where, overlap
