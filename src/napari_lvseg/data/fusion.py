"""Cross-subject lesion fusion: an infarct (with its no-reflow) from a donor slice, fitted into a recipient's wall.

The study's third mask-simulator strategy. Every pixel of an LV wall (classes 2, 3, 4) has polar coordinates about
the cavity's centre: its angle, and its transmural depth, the fraction of the way from the endocardium (0) to the
epicardium (1) (distance to the cavity / (distance to the cavity + distance to the background)). The fit is affine
in those coordinates: angle + ``rotation``, depth unchanged. Each wall pixel of the recipient takes the class
(normal, infarct, no-reflow) of the donor wall pixel nearest to its mapped coordinates (angles scaled by the donor's
mid-wall radius, depths by its wall thickness, so both are in pixels). The lesion so keeps its angular sector and
its transmural extent as a fraction of the wall, whatever the two walls' sizes; the recipient's wall and cavity are
never changed.

`fusion_problems` says whether a result is anatomically possible: the lesion lies inside the recipient's wall and
touches its endocardium, is connected (one 8-connected piece, as the donor's must be), its share of the wall is
within a factor of the donor's, its no-reflow lies inside the infarct (every piece 4-adjacent to infarct, none
lost), and the slice passes the simulator's anatomy check. `fuse_lesion` refuses a result with problems, naming them.

The recipient is chosen by nearest-neighbour matching of the LV's size and shape per slice (`lv_shape`: LV
diameter, cavity area, wall thickness, eccentricity; `nearest_recipients`). `move_infarct` is a fusion of a slice
with itself, rotated: the same lesion elsewhere on the same wall.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import LvsegError
from ..labels import BACKGROUND, CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW
from .simulator import _as_labels, anatomy_problems

_WALL = (MYOCARDIUM, INFARCT, NO_REFLOW)
_LESION = (INFARCT, NO_REFLOW)
_CROSS = ndi.generate_binary_structure(2, 1)
_SQUARE = np.ones((3, 3), bool)
SHAPE_FEATURES = ("diameter", "cavity_area", "thickness", "eccentricity")
AREA_RATIO = (0.5, 2.0)   # fused lesion's share of the wall / the donor's, allowed range


class FusionRejected(LvsegError):
    """A fusion whose result is not anatomically possible (or whose inputs cannot make one); says why."""


# -- geometry ------------------------------------------------------------------------------------------------------
def lv_shape(labels) -> dict | None:
    """Size and shape of a slice's LV: ``diameter`` (of the disc with the LV's area: cavity + wall), ``cavity_area``
    (px), ``thickness`` (mean wall thickness: outer minus inner equivalent radius), ``eccentricity`` (of the LV's
    second moments, 0 = round). None for a slice without a cavity and a wall."""
    labels = _as_labels(labels)
    cavity, wall = labels == CAVITY, np.isin(labels, _WALL)
    if not cavity.any() or not wall.any():
        return None
    lv = cavity | wall
    inner, outer = np.sqrt(cavity.sum() / np.pi), np.sqrt(lv.sum() / np.pi)
    points = np.argwhere(lv).astype(float)
    eigen = np.sort(np.linalg.eigvalsh(np.cov(points.T)))
    eccentricity = float(np.sqrt(max(0.0, 1.0 - eigen[0] / eigen[1]))) if eigen[1] > 0 else 0.0
    return {"diameter": float(2 * outer), "cavity_area": float(cavity.sum()), "thickness": float(outer - inner),
            "eccentricity": eccentricity}


def shape_vector(shape: dict) -> np.ndarray:
    return np.array([shape[k] for k in SHAPE_FEATURES], float)


def nearest_recipients(donor_shape: dict, candidates: list, k: int = 1) -> list:
    """Indices of the ``k`` candidates (`lv_shape` dicts; None ones skipped) nearest to the donor's LV: Euclidean
    distance of the features, each scaled by its spread (standard deviation) over the candidates and the donor."""
    usable = [i for i, c in enumerate(candidates) if c is not None]
    if not usable:
        raise FusionRejected("no candidate recipient slice has an LV (cavity and wall)")
    matrix = np.array([shape_vector(candidates[i]) for i in usable])
    donor = shape_vector(donor_shape)
    spread = np.concatenate([matrix, donor[None]]).std(0)
    spread[spread == 0] = 1.0
    distance = np.sqrt((((matrix - donor) / spread) ** 2).sum(1))
    return [usable[j] for j in np.argsort(distance, kind="stable")[:k]]


def _polar(labels: np.ndarray) -> tuple:
    """(angle, depth) of every pixel about the cavity's centre, and the wall's mid radius and mean thickness (px)."""
    cavity = labels == CAVITY
    centre = np.array(ndi.center_of_mass(cavity))
    yy, xx = np.indices(labels.shape, dtype=float)
    angle = np.arctan2(yy - centre[0], xx - centre[1])
    padded = np.pad(labels, 1)   # the image border counts as background
    from_cavity = ndi.distance_transform_edt(padded != CAVITY)[1:-1, 1:-1]
    from_outside = ndi.distance_transform_edt(padded != BACKGROUND)[1:-1, 1:-1]
    depth = from_cavity / np.maximum(from_cavity + from_outside, 1e-6)
    wall = np.isin(labels, _WALL)
    radius = np.hypot(yy - centre[0], xx - centre[1])
    thickness = lv_shape(labels)["thickness"]
    return angle, depth, float(radius[wall].mean()), max(float(thickness), 1.0)


def _lesion_problems(labels: np.ndarray, what: str) -> list:
    lesion = np.isin(labels, _LESION)
    problems = []
    if not lesion.any():
        return [f"{what} has no infarct"]
    if ndi.label(lesion, _SQUARE)[1] > 1:
        problems.append(f"{what}'s lesion is in several pieces")
    if not (ndi.binary_dilation(labels == CAVITY, _CROSS) & lesion).any():
        problems.append(f"{what}'s lesion does not touch the endocardium")
    return problems


def _check_slice(labels, what: str) -> np.ndarray:
    labels = _as_labels(labels)
    if not (labels == CAVITY).any() or not np.isin(labels, _WALL).any():
        raise FusionRejected(f"{what} slice has no LV (cavity and wall)")
    problems = anatomy_problems(labels)
    if problems:
        raise FusionRejected(f"{what} slice fails the anatomy check: {problems[0]}")
    return labels


def donor_problems(labels) -> list:
    """Why a slice cannot give its lesion (empty: it can): an LV that passes the anatomy check, with one connected
    lesion that touches the endocardium."""
    try:
        labels = _check_slice(labels, "donor")
    except FusionRejected as exc:
        return [exc.message]
    return _lesion_problems(labels, "donor")


def fusion_problems(fused, recipient, donor, area_ratio=AREA_RATIO) -> list:
    """What makes ``fused`` (the recipient with the donor's lesion) anatomically impossible; empty: it is possible."""
    fused, recipient, donor = _as_labels(fused), _as_labels(recipient), _as_labels(donor)
    problems = []
    wall = np.isin(recipient, _WALL)
    lesion = np.isin(fused, _LESION)
    if (lesion & ~wall).any():
        problems.append(f"{int((lesion & ~wall).sum())} lesion pixels outside the recipient's wall")
    if (np.isin(fused, _WALL) != wall).any() or ((fused == CAVITY) != (recipient == CAVITY)).any():
        problems.append("the recipient's cavity or wall changed")
    problems += [p.replace("fused slice's", "the fused") for p in _lesion_problems(fused, "fused slice")]
    if lesion.any():
        share = lesion.sum() / wall.sum()
        donor_share = np.isin(donor, _LESION).sum() / max(np.isin(donor, _WALL).sum(), 1)
        ratio = share / max(donor_share, 1e-9)
        if not area_ratio[0] <= ratio <= area_ratio[1]:
            problems.append(f"the lesion covers {share:.0%} of the wall against the donor's {donor_share:.0%} "
                            f"(ratio {ratio:.2f}, allowed {area_ratio[0]:g}-{area_ratio[1]:g})")
    no_reflow = fused == NO_REFLOW
    if (donor == NO_REFLOW).any() and not no_reflow.any():
        problems.append("the donor's no-reflow was lost in the fit")
    pieces, n = ndi.label(no_reflow, _SQUARE)
    infarct_near = ndi.binary_dilation(fused == INFARCT, _CROSS)
    if n and not all((infarct_near & (pieces == k)).any() for k in range(1, n + 1)):
        problems.append("no-reflow outside the infarct (a no-reflow piece does not touch infarct)")
    problems += [p for p in anatomy_problems(fused) if p not in problems]
    return problems


# -- the fit -------------------------------------------------------------------------------------------------------
def fit_lesion(donor, recipient, rotation: float = 0.0) -> np.ndarray:
    """The recipient slice with its lesion replaced by the donor's, mapped in polar coordinates (angle + ``rotation``
    degrees, transmural depth fraction kept); no check (`fuse_lesion` checks)."""
    from scipy.spatial import cKDTree

    donor, recipient = _check_slice(donor, "donor"), _check_slice(recipient, "recipient")
    d_angle, d_depth, d_radius, d_thick = _polar(donor)
    r_angle, r_depth, _, _ = _polar(recipient)
    d_wall = np.isin(donor, _WALL)
    points = np.stack([d_angle[d_wall] * d_radius, d_depth[d_wall] * d_thick], 1)
    classes = np.where(np.isin(donor[d_wall], _LESION), donor[d_wall], MYOCARDIUM)
    # angles wrap: the donor's wall is given three times, one turn apart
    turn = 2 * np.pi * d_radius
    tree = cKDTree(np.concatenate([points, points + [turn, 0], points - [turn, 0]]))
    classes = np.tile(classes, 3)
    r_wall = np.isin(recipient, _WALL)
    source_angle = np.angle(np.exp(1j * (r_angle[r_wall] - np.deg2rad(rotation))))
    query = np.stack([source_angle * d_radius, r_depth[r_wall] * d_thick], 1)
    _, nearest = tree.query(query)
    out = recipient.copy()
    out[r_wall] = classes[nearest]
    return out


def fuse_lesion(donor, recipient, rotation: float = 0.0, area_ratio=AREA_RATIO) -> np.ndarray:
    """`fit_lesion`, checked: a donor with one connected lesion touching its endocardium, and a result that passes
    `fusion_problems`; otherwise `FusionRejected` naming the problems."""
    problems = donor_problems(donor)
    if problems:
        raise FusionRejected("cannot fuse: " + "; ".join(problems))
    fused = fit_lesion(donor, recipient, rotation)
    problems = fusion_problems(fused, recipient, donor, area_ratio)
    if problems:
        raise FusionRejected("fusion rejected: " + "; ".join(problems[:3]))
    return fused


def move_infarct(labels, degrees: float) -> np.ndarray:
    """The slice's lesion (with its no-reflow) turned ``degrees`` about the cavity's centre along the same wall,
    its transmural extent kept (a fusion of the slice with itself); `FusionRejected` where the result is impossible."""
    return fuse_lesion(labels, labels, rotation=degrees)


def donor_slices(stacks: list) -> list:
    """[(stack index, slice index)] of the slices of ``stacks`` ((Z, Y, X) label arrays) that can give a lesion."""
    return [(i, z) for i, stack in enumerate(stacks) for z, s in enumerate(np.asarray(stack))
            if np.isin(s, _LESION).any() and not donor_problems(s)]


def fuse_from_donor(donor, recipients: list, rng: np.random.Generator, k: int = 3, tries: int = 3,
                    shapes: list | None = None) -> tuple:
    """Fuse the donor slice's lesion into one of the ``k`` recipient slices (label arrays) nearest to it in LV size
    and shape, picked at random; on a rejection the next nearest is tried (``tries`` in all). ``shapes``: the
    recipients' `lv_shape`s, where the caller has them already. Returns
    (fused, recipient index, reasons of the rejections before it); `FusionRejected` with the reasons if all fail."""
    shape = lv_shape(donor)
    if shape is None:
        raise FusionRejected("donor slice has no LV (cavity and wall)")
    shapes = [lv_shape(r) for r in recipients] if shapes is None else shapes
    order = nearest_recipients(shape, shapes, k=max(k, tries))
    first = order[:k]
    start = int(rng.integers(len(first)))
    order = first[start:] + first[:start] + order[k:]
    reasons = []
    for index in order[:tries]:
        try:
            return fuse_lesion(donor, recipients[index]), index, reasons
        except FusionRejected as exc:
            reasons.append(exc.message)
    raise FusionRejected("no recipient took the lesion: " + " | ".join(reasons[:3]))
