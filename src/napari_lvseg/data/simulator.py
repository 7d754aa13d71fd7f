"""Mask simulator: plausible new LV label maps from a template, an anatomy check, and label edit ops.

Every op works on one slice (Y, X) and returns a new uint8 array; given a stack (Z, Y, X) it loops
over the slices (see ``apply_to_stack``). The exception is ``simulate_stack`` (and ``random_variant``
of a stack), which varies a stack as one heart. All randomness comes from a ``np.random.Generator``.

Anatomy rules (``anatomy_problems``), chosen so that every one of the 409 real EMIDEC slices in
emidec-lge-128 passes them while hand-made nonsense fails (the image border counts as background):

1. values are classes 0..4;
2. the cavity never touches background (4-connectivity): the wall (2, 3, 4) encloses it;
3. the cavity is one 4-connected piece, and a slice with a wall has a cavity;
4. the wall is one 8-connected piece;
5. no background enclosed by the LV (no holes in wall + cavity);
6. every 8-connected no-reflow component is 4-adjacent to infarct (3).

Rules that real EMIDEC masks break were left out: "every infarct component touches the cavity"
(19 components in 16 slices are not subendocardial), "no-reflow never touches background"
(8 slices, transmural no-reflow) and "no-reflow never touches normal myocardium" (6 slices).
The generators here are stricter than the check: they grow infarct from the endocardium and
place no-reflow subendocardially.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage as ndi

from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import (
    BACKGROUND,
    CAVITY,
    FOREGROUND,
    INFARCT,
    MYOCARDIUM,
    N_CLASSES,
    NO_REFLOW,
    invalid_values,
)

_CROSS = ndi.generate_binary_structure(2, 1)  # 4-connectivity
_SQUARE = np.ones((3, 3), bool)  # 8-connectivity
_WALL = (MYOCARDIUM, INFARCT, NO_REFLOW)
_LESION = (INFARCT, NO_REFLOW)
_GEOMETRY_TRIES = 6
_NO_REFLOW_TRIES = 4


# ----------------------------------------------------------------------------------------------
# input handling

def _as_labels(labels, ndim=(2,)) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim not in ndim:
        raise LvsegError(f"labels must be {' or '.join(f'{n}-D' for n in ndim)}, got shape {labels.shape}")
    bad = invalid_values(labels)
    if bad:
        raise LvsegError(f"labels contain values that are not classes 0..4: {bad[:5]}")
    return labels.astype(np.uint8)


def apply_to_stack(fn, labels, *args, **kwargs) -> np.ndarray:
    """``fn`` on one slice (Y, X), or on each slice of a stack (Z, Y, X) in order (a shared rng stays deterministic)."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return fn(labels, *args, **kwargs)
    if labels.ndim != 3:
        raise LvsegError(f"labels must be a slice (Y, X) or a stack (Z, Y, X), got shape {labels.shape}")
    out = []
    for z, s in enumerate(labels):
        try:
            out.append(fn(s, *args, **kwargs))
        except LvsegError as exc:  # say which slice of the stack failed
            raise LvsegError(f"slice {z}: {exc}", exc.path) from None
    return np.stack(out).astype(np.uint8)


def _per_slice(fn):
    """Let a slice op take a stack too, by looping over its slices."""
    @functools.wraps(fn)
    def wrapper(labels, *args, **kwargs):
        if np.ndim(labels) == 3:
            return apply_to_stack(wrapper, labels, *args, **kwargs)
        return fn(_as_labels(labels), *args, **kwargs)
    return wrapper


def _dilate(mask: np.ndarray, diagonal: bool = False) -> np.ndarray:
    """One-pixel dilation (4-connectivity, or 8 with ``diagonal``); faster than ndi.binary_dilation here."""
    p = np.pad(mask, 1)
    out = mask | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
    if diagonal:
        out |= p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:]
    return out


def _touches(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` is 4-adjacent to (or overlaps) ``b``."""
    return bool((_dilate(a) & b).any())


@functools.lru_cache(maxsize=32)
def _spline_matrix(n: int, cell: int) -> np.ndarray:
    """(n, n // cell + 4) cubic B-spline weights: a coarse grid of knots to ``n`` smooth samples."""
    knots = np.arange(n // cell + 4) - 1.5
    t = np.abs(np.arange(n)[:, None] / cell - knots[None, :])
    return np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))


def _smooth_noise(rng, shape, cell: int) -> np.ndarray:
    """Smooth random field in [-1, 1] with features about ``cell`` px wide (cubic B-spline of coarse noise)."""
    rows, cols = _spline_matrix(shape[0], cell), _spline_matrix(shape[1], cell)
    field = rows @ rng.standard_normal((rows.shape[1], cols.shape[1])) @ cols.T
    return field / (np.abs(field).max() + 1e-12)


# ----------------------------------------------------------------------------------------------
# anatomy check

def _slice_problems(labels: np.ndarray) -> list[str]:
    p = np.pad(labels, 1)  # the image border counts as background
    cavity, background = p == CAVITY, p == BACKGROUND
    wall = np.isin(p, _WALL)
    problems = []
    if _touches(cavity, background):
        problems.append("cavity touches background (not enclosed by myocardium)")
    if cavity.any() and ndi.label(cavity, _CROSS)[1] > 1:
        problems.append("cavity is in several pieces")
    if wall.any() and not cavity.any():
        problems.append("myocardium without a cavity")
    if ndi.label(wall, _SQUARE)[1] > 1:
        problems.append("myocardial wall is in several pieces")
    outside, _ = ndi.label(background, _CROSS)  # the padded frame is one piece: the outside
    if (background & (outside != outside[0, 0])).any():
        problems.append("background enclosed by the LV")
    no_reflow, n = ndi.label(p == NO_REFLOW, _SQUARE)
    if n:
        # A no-reflow piece touches infarct iff some 4-neighbour of infarct carries its number.
        touching = set(np.unique(no_reflow[_dilate(p == INFARCT)]).tolist())
        if not set(range(1, n + 1)) <= touching:
            problems.append("no-reflow outside infarct (a no-reflow region does not touch infarct)")
    return problems


def anatomy_problems(labels) -> list[str]:
    """What is anatomically wrong with a slice or stack (empty list: it passes). Stack problems name the slice."""
    labels = _as_labels(labels, ndim=(2, 3))
    if labels.ndim == 2:
        return _slice_problems(labels)
    return [f"slice {z}: {text}" for z, s in enumerate(labels) for text in _slice_problems(s)]


def check_anatomy(labels, path=None) -> None:
    """Raise ``LvsegError`` naming the problems when ``labels`` fail the anatomy check."""
    problems = anatomy_problems(labels)
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise LvsegError("labels fail the anatomy check: " + "; ".join(problems[:3]) + more, path)


def check_training_mask(mask, name: str) -> None:
    """Refuse a mask that would teach a network nonsense: no LV at all, or anatomically impossible."""
    if not np.isin(mask, FOREGROUND).any():
        raise LvsegError(f"'{name}' holds no LV (no class 1..4): draw a new LV mask or open one")
    try:
        check_anatomy(mask)
    except LvsegError as exc:
        raise LvsegError(f"'{name}' is not a training mask ({exc}): fix it and synthesize again") from None


# ----------------------------------------------------------------------------------------------
# geometry

def _lv_centre(labels: np.ndarray) -> np.ndarray:
    return np.array(ndi.center_of_mass(labels != BACKGROUND))


def _draw_warp(rng, shape, max_rotation, scale, elastic) -> tuple:
    """Random warp parameters: rotation (radians), scale factor, elastic displacement fields (or None), max px."""
    angle = np.deg2rad(rng.uniform(-max_rotation, max_rotation))
    factor = rng.uniform(*scale)
    fields = [elastic * _smooth_noise(rng, shape, 16) for _ in range(2)] if elastic > 0 else None
    return angle, factor, fields, elastic


def _apply_warp(labels: np.ndarray, warp: tuple, centre) -> np.ndarray:
    """``labels`` rotated and scaled about ``centre`` (y, x), then displaced by the elastic fields."""
    angle, factor, fields, elastic = warp
    shape = labels.shape
    if not (labels != BACKGROUND).any():
        return labels.copy()
    # Only the box the warped LV can reach is computed; the rest stays background.
    reach = np.hypot(*(np.argwhere(labels != BACKGROUND) - centre).T).max() * factor + elastic + 2
    lo = np.clip(np.floor(centre - reach), 0, None).astype(int)
    hi = np.minimum(np.ceil(centre + reach).astype(int) + 1, shape)
    box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
    yy, xx = np.mgrid[box].astype(np.float32)
    dy, dx = yy - centre[0], xx - centre[1]
    cos, sin = np.cos(angle) / factor, np.sin(angle) / factor
    src_y = centre[0] + cos * dy - sin * dx
    src_x = centre[1] + sin * dy + cos * dx
    if fields is not None:  # smooth random displacement, at most ``elastic`` px
        src_y += fields[0][box]
        src_x += fields[1][box]
    # One-hot + bilinear + argmax: smoother borders than nearest-neighbour on the label values.
    present = [k for k in range(1, N_CLASSES) if (labels == k).any()]
    scores = [ndi.map_coordinates((labels == k).astype(np.float32), [src_y, src_x], order=1, mode="constant")
              for k in present]
    scores.insert(0, 1.0 - np.sum(scores, axis=0))
    out = np.zeros(shape, np.uint8)
    out[box] = np.array([0, *present], np.uint8)[np.argmax(scores, axis=0)]
    return out


@_per_slice
def vary_geometry(labels, rng: np.random.Generator, max_rotation: float = 180.0,
                  scale: tuple[float, float] = (0.85, 1.15), elastic: float = 3.0) -> np.ndarray:
    """Rotate (degrees) and scale about the LV centre, plus a smooth elastic warp (max px).

    Retries with gentler settings until the result passes the anatomy check and keeps the same
    classes; falls back to an unchanged copy.
    """
    if _slice_problems(labels):
        return labels.copy()
    return _vary_stack_geometry(labels[None], rng, max_rotation, scale, elastic)[0]


def _vary_stack_geometry(stack: np.ndarray, rng, max_rotation: float = 180.0,
                         scale: tuple[float, float] = (0.85, 1.15), elastic: float = 3.0) -> np.ndarray:
    """``vary_geometry`` for a whole stack: one rotation, scale and elastic field, about the stack's LV centre,
    so the slices stay aligned. Retries gentler until every slice keeps its classes and anatomy."""
    if not stack.any():
        return stack.copy()
    centre = np.array(ndi.center_of_mass((stack != BACKGROUND).any(0)))
    classes = [set(np.unique(s).tolist()) for s in stack]
    for attempt in range(_GEOMETRY_TRIES):
        gentle = 0.6 ** attempt
        lo, hi = scale
        warp = _draw_warp(rng, stack.shape[1:], max_rotation, (1 + (lo - 1) * gentle, 1 + (hi - 1) * gentle),
                          elastic * gentle)
        out = np.stack([_apply_warp(s, warp, centre) for s in stack])
        if all(set(np.unique(o).tolist()) == c and not _slice_problems(o) for o, c in zip(out, classes)):
            return out
    return stack.copy()


# ----------------------------------------------------------------------------------------------
# infarct and no-reflow

def _depth(labels: np.ndarray) -> np.ndarray:
    """Fraction of the way from endocardium (0) to epicardium (1), for every pixel."""
    from_cavity = ndi.distance_transform_edt(labels != CAVITY)
    from_outside = ndi.distance_transform_edt(labels != BACKGROUND)
    return from_cavity / np.maximum(from_cavity + from_outside, 1e-6)


def _geodesic(costs: np.ndarray, seeds) -> np.ndarray:
    """Least cumulative cost from the seeds (8-connected moves); inf where ``costs`` is inf."""
    from skimage.graph import MCP_Geometric

    distance, _ = MCP_Geometric(costs).find_costs([tuple(s) for s in seeds])
    return distance


def _roughness(rng, shape, amount=0.4) -> np.ndarray:
    """Smooth random factor around 1: irregular lesion borders."""
    return 1.0 + amount * _smooth_noise(rng, shape, 6)


def _count_in(fraction_range, total: int, rng) -> int:
    """A random count whose fraction of ``total`` lies inside the range (as close as integers allow)."""
    lo, hi = sorted(fraction_range)
    low, high = int(np.ceil(lo * total)), int(np.floor(hi * total))
    if low > high:
        return max(1, int(round(rng.uniform(lo, hi) * total)))
    return int(rng.integers(max(low, 1), max(high, 1) + 1))


def _endocardial_border(labels: np.ndarray) -> np.ndarray:
    return (labels == MYOCARDIUM) & _dilate(labels == CAVITY)


def _clear_lesions(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    out[np.isin(out, _LESION)] = MYOCARDIUM
    return out


@_per_slice
def grow_infarct_from_seeds(labels, rng: np.random.Generator, infarct_fraction=(0.1, 0.5),
                            transmurality=(0.3, 1.0), n_seeds=(1, 3), angles=None) -> np.ndarray:
    """Replace the infarct: grow it from 1-3 endocardial seeds outward through the wall.

    The seeds are random endocardial pixels within 60 degrees of the first (one coronary territory) or,
    given ``angles`` (radians, ``arctan2(dy, dx)`` about the LV centre), the pixels nearest those
    directions: neighbouring slices of a stack share their seeds' directions.

    The infarct region (3 + 4) ends up covering ``infarct_fraction`` of the wall. Each seed gets a
    transmurality (fraction of the wall depth) that growth fills first before it goes deeper.
    """
    out = _clear_lesions(labels)
    border = np.argwhere(_endocardial_border(out))
    wall = out == MYOCARDIUM
    if len(border) == 0:
        return out
    target = min(_count_in(infarct_fraction, int(wall.sum()), rng), int(wall.sum()))
    centre = _lv_centre(out)
    directions = np.arctan2(*(border - centre).T)
    if angles is None:
        first = rng.integers(len(border))
        near = np.flatnonzero(np.abs(np.angle(np.exp(1j * (directions - directions[first])))) < np.pi / 3)
        extra = rng.choice(near, size=min(int(rng.integers(n_seeds[0], n_seeds[1] + 1)) - 1, len(near)),
                           replace=False)
        seeds = [first, *extra]
    else:
        seeds = [int(np.argmin(np.abs(np.angle(np.exp(1j * (directions - a)))))) for a in angles]
    depth = _depth(out)
    rough = _roughness(rng, out.shape)
    distance = np.full(out.shape, np.inf)
    for seed in seeds:
        reach = rng.uniform(*transmurality)
        beyond = np.clip((depth - reach) / max(1.0 - reach, 1e-3), 0, None)
        costs = np.where(wall, rough * (1.0 + 30.0 * beyond), np.inf)
        distance = np.minimum(distance, _geodesic(costs, [border[seed]]))
    order = np.argsort(distance, axis=None, kind="stable")[:target]
    order = order[np.isfinite(distance.ravel()[order])]
    out.ravel()[order] = INFARCT
    return out


def _grow_core(labels: np.ndarray, rng, seeds, count: int, component: np.ndarray) -> np.ndarray | None:
    """``count`` more no-reflow pixels grown from ``seeds`` through ``component`` (deeper costs more,
    so the core stays subendocardial); None if the result breaks the anatomy rules."""
    depth = _depth(labels)
    costs = np.where(component, _roughness(rng, labels.shape, 0.3) * (1.0 + 8.0 * depth), np.inf)
    distance = _geodesic(costs, seeds).ravel()
    order = np.argsort(distance, kind="stable")
    order = order[np.isfinite(distance[order]) & (labels.ravel()[order] == INFARCT)][:count]
    out = labels.copy()
    out.ravel()[order] = NO_REFLOW
    return None if _slice_problems(out) else out


def _core_seed(labels: np.ndarray, component: np.ndarray, rng, near=None) -> np.ndarray:
    """A subendocardial pixel of an infarct component: near ``near`` or, by default, its most central one."""
    candidates = np.argwhere(component & _dilate(labels == CAVITY, diagonal=True))
    if len(candidates) == 0:  # not subendocardial in this slice: use its least deep pixels
        depth = _depth(labels)
        candidates = np.argwhere(component & (depth <= depth[component].min() + 0.1))
    if near is not None:
        return candidates[np.argmin(((candidates - np.asarray(near)) ** 2).sum(1))]
    # Most central along the lesion: farthest from healthy tissue, with a little jitter.
    inside = ndi.distance_transform_edt(np.isin(labels, _LESION) | (labels == CAVITY))
    score = inside[tuple(candidates.T)] + rng.uniform(0, 1.0, len(candidates))
    return candidates[np.argmax(score)]


@_per_slice
def place_no_reflow(labels, rng: np.random.Generator, fraction=(0.1, 0.4)) -> np.ndarray:
    """Replace the no-reflow: subendocardial core(s) inside the infarct, ``fraction`` of the infarct region.

    Returns the labels without no-reflow when no placement passes the anatomy check (tiny infarcts).
    """
    out = labels.copy()
    out[out == NO_REFLOW] = INFARCT
    lesions, n = ndi.label(out == INFARCT, _SQUARE)
    if n == 0:
        return out
    sizes = np.bincount(lesions.ravel())[1:]
    total = int(sizes.sum())
    for _ in range(_NO_REFLOW_TRIES):
        count = _count_in(fraction, total, rng)
        # Cores in the largest lesion and, sometimes, in other lesions big enough to hold one.
        chosen = [int(np.argmax(sizes)) + 1]
        chosen += [k + 1 for k in range(n) if k + 1 != chosen[0] and sizes[k] >= 8 and rng.random() < 0.5]
        if sizes[np.array(chosen) - 1].sum() <= count:
            chosen = list(range(1, n + 1))
        component = np.isin(lesions, chosen)
        if count >= component.sum():
            continue
        seeds = [_core_seed(out, lesions == k, rng) for k in chosen]
        result = _grow_core(out, rng, seeds, count, component)
        if result is not None:
            return result
    return out


@_per_slice
def simulate_mask(template, rng: np.random.Generator, infarct_fraction=(0.1, 0.5), no_reflow_fraction=(0.1, 0.4),
                  p_infarct: float = 0.8, p_no_reflow: float = 0.5, **geometry) -> np.ndarray:
    """A new plausible label map: ``template`` geometrically varied, with a freshly grown infarct
    (probability ``p_infarct``) and no-reflow (probability ``p_no_reflow`` given an infarct).

    ``geometry`` goes to ``vary_geometry``. The template must pass the anatomy check; so does the result.
    """
    check_anatomy(template)
    out = vary_geometry(template, rng, **geometry)
    if rng.random() < p_infarct:
        out = grow_infarct_from_seeds(out, rng, infarct_fraction)
        if rng.random() < p_no_reflow:
            out = place_no_reflow(out, rng, no_reflow_fraction)
        else:
            out = remove_no_reflow(out)
    else:
        out = _clear_lesions(out)
    if _slice_problems(out):  # defensive: the steps above each keep the anatomy valid
        return _clear_lesions(template)
    return out


def _consecutive(items: list, fraction, rng) -> list:
    """A random run of consecutive ``items`` whose length is ``fraction`` (a range) of them, at least one."""
    length = min(len(items), max(1, int(round(rng.uniform(*fraction) * len(items)))))
    start = int(rng.integers(len(items) - length + 1))
    return items[start:start + length]


def simulate_stack(template, rng: np.random.Generator, infarct_fraction=(0.1, 0.5), no_reflow_fraction=(0.1, 0.4),
                   p_infarct: float = 0.8, p_no_reflow: float = 0.5, extent=(0.4, 1.0), no_reflow_extent=(0.2, 0.9),
                   **geometry) -> np.ndarray:
    """A new plausible stack (Z, Y, X) from a real one, its slices consistent with each other.

    ``simulate_mask`` varies each slice on its own. Here all slices are warped as one, and there is one
    lesion (probability ``p_infarct``). The infarct fills a run of consecutive LV slices, ``extent`` of
    them (slices without an LV are skipped, not counted). It grows from the same 1-3 seed directions in
    every slice (one coronary territory), each slice's directions jittered by about 10 degrees. Each slice
    draws its size near one fraction of the wall drawn for the whole stack. No-reflow (probability
    ``p_no_reflow``) fills a run inside the infarct's slices (``no_reflow_extent``; a slice whose infarct is
    too thin to hold a core stays without). Slices without an LV stay empty. The template and each slice of
    the result pass the anatomy check.

    The extents follow the 42 training cases of ``training/split.json``: infarct in a median 0.89 of the LV
    slices (10th-90th percentile 0.43-1.0), no-reflow in 0.61 (0.21-0.85) of the infarct's slices.
    """
    template = _as_labels(template, ndim=(3,))
    check_anatomy(template)
    out = _clear_lesions(_vary_stack_geometry(template, rng, **geometry))
    lv = [z for z in range(len(out)) if (out[z] == CAVITY).any()]
    if not lv or rng.random() >= p_infarct:
        return out
    # One territory: 1-3 seed directions within 60 degrees of the first, the same in every slice but for a jitter.
    angles = rng.uniform(-np.pi, np.pi) + np.concatenate([[0.0], rng.uniform(-np.pi / 3, np.pi / 3,
                                                                             int(rng.integers(0, 3)))])
    size = rng.uniform(*infarct_fraction)
    infarcted = _consecutive(lv, extent, rng)
    for z in infarcted:
        out[z] = grow_infarct_from_seeds(out[z], rng, (0.7 * size, min(1.3 * size, 0.9)),
                                         angles=angles + np.deg2rad(rng.normal(0.0, 10.0)))
    if rng.random() < p_no_reflow:
        share = rng.uniform(*no_reflow_fraction)
        for z in _consecutive(infarcted, no_reflow_extent, rng):
            out[z] = place_no_reflow(out[z], rng, (0.7 * share, 1.3 * share))
    for z in range(len(out)):  # defensive, as in simulate_mask: the steps above each keep the anatomy valid
        if _slice_problems(out[z]):
            out[z] = _clear_lesions(out[z])
    return out


def random_variant(labels, rng: np.random.Generator) -> np.ndarray:
    """A random plausible variant of a slice (``simulate_mask``) or of a whole stack, its slices kept
    consistent (``simulate_stack``), with their defaults."""
    return simulate_stack(labels, rng) if np.ndim(labels) == 3 else simulate_mask(labels, rng)


# ----------------------------------------------------------------------------------------------
# edit ops for the GUI

@_per_slice
def grow_infarct(labels, pixels: int = 1) -> np.ndarray:
    """Grow the infarct region by ``pixels`` into the normal myocardium (the wall itself is unchanged)."""
    out = labels.copy()
    for _ in range(int(pixels)):
        new = _dilate(np.isin(out, _LESION)) & (out == MYOCARDIUM)
        if not new.any():
            break
        out[new] = INFARCT
    return out


@_per_slice
def shrink_infarct(labels, pixels: int = 1) -> np.ndarray:
    """Shrink the infarct region by ``pixels`` from its border with normal myocardium.

    A fully infarcted wall shrinks from the epicardium instead. No-reflow that no longer touches
    infarct becomes infarct (the last of the lesion), so no-reflow always stays inside infarct.
    """
    out = labels.copy()
    for _ in range(int(pixels)):
        lesion = np.isin(out, _LESION)
        healthy = out == MYOCARDIUM
        front = healthy if healthy.any() else out == BACKGROUND
        lost = lesion & _dilate(np.pad(front, 1, constant_values=not healthy.any()))[1:-1, 1:-1]
        if not lost.any():
            break
        out[lost] = MYOCARDIUM
    cores, n = ndi.label(out == NO_REFLOW, _SQUARE)
    for k in range(1, n + 1):
        if not _touches(cores == k, out == INFARCT):
            out[cores == k] = INFARCT
    return out


@_per_slice
def add_no_reflow(labels, rng: np.random.Generator | None = None, center=None, fraction: float = 0.2) -> np.ndarray:
    """Add a subendocardial no-reflow core to one infarct region, ``fraction`` of that region's size.

    The region is the one nearest ``center`` (y, x), or picked at random by ``rng`` (default: the largest).
    Existing no-reflow stays. A slice without infarct is returned unchanged.
    """
    lesions, n = ndi.label(np.isin(labels, _LESION), _SQUARE)
    if not (labels == INFARCT).any() or n == 0:
        return labels.copy()
    if center is not None:
        _, (iy, ix) = ndi.distance_transform_edt(lesions == 0, return_indices=True)
        cy, cx = np.clip(np.round(center).astype(int), 0, np.array(labels.shape) - 1)
        pick = lesions[iy[cy, cx], ix[cy, cx]]
    elif rng is not None:
        pick = int(rng.integers(1, n + 1))
    else:
        pick = int(np.argmax(np.bincount(lesions.ravel())[1:])) + 1
    component = lesions == pick
    free = component & (labels == INFARCT)
    count = min(max(1, int(round(fraction * component.sum()))), int(free.sum()) - 1)
    if count < 1:
        return labels.copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    seed = _core_seed(labels, free, rng, near=center)
    result = _grow_core(labels, rng, [seed], count, component)
    return result if result is not None else labels.copy()


@_per_slice
def remove_no_reflow(labels) -> np.ndarray:
    """No-reflow becomes infarct."""
    out = labels.copy()
    out[out == NO_REFLOW] = INFARCT
    return out


def draw_lv_ring(shape, center, radius: float, thickness: float) -> np.ndarray:
    """A slice of ``shape`` with a cavity disc of ``radius`` at ``center`` (y, x) and a myocardium ring around it."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise LvsegError(f"draw_lv_ring needs a slice shape (Y, X), got {shape}")
    if radius <= 0 or thickness < 1:
        raise LvsegError(f"LV ring needs radius > 0 and thickness >= 1 px, got radius {radius}, thickness {thickness}")
    cy, cx = center
    outer = radius + thickness
    if cy - outer < 0 or cx - outer < 0 or cy + outer > shape[0] - 1 or cx + outer > shape[1] - 1:
        raise LvsegError(f"LV ring (centre {tuple(center)}, outer radius {outer:g}) does not fit in a {shape} slice")
    yy, xx = np.indices(shape)
    rho = np.hypot(yy - cy, xx - cx)
    out = np.zeros(shape, np.uint8)
    out[rho <= outer] = MYOCARDIUM
    out[rho <= radius] = CAVITY
    return out
