"""Finding the LV and its size: the coarse search in an image larger than the model's view, the size a model's card
says it was trained on, and the zoom that brings an LV there. Used by `inference.segment_steps`; Qt-free, numpy and
torch only."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .data.normalize import model_context, normalize_view
from .data.shading import FLATTEN_SIGMA, flatten
from .labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW


def device_of(model):
    try:
        return next(model.parameters()).device
    except StopIteration:
        import torch

        return torch.device("cpu")


# Locating the LV in an image larger than the model's view: one forward pass per slice over the whole image, shrunk
# so that it spans at most LOCATOR_SPAN grids, on the two middle slices (the LV is largest there, and one centre
# serves the stack), then, only where they show none, on the slices a quarter from each end. The cost is then that of
# a few slices whatever the image size (a 512 x 512 x 20 stack: 2 passes of 192 x 192 instead of a sliding window over
# 20 full slices). At 2 grids the search found the same LVs in 18 cases' fields of view, 1.4x slower, and the final
# Dice was no better (training/RESULTS.md, "Robustness to another scanner's images").
LOCATOR_SPAN = 1.5
LOCATOR_SLICES = (2, 2)   # slices searched first, and then where those show no LV
# The coil's field, fitted over what the search's first reading labels blood pool and muscle anywhere in the view,
# varied 1.03-1.38x across 36 unshaded fields of view (other cases' surroundings) and mostly more under a coil's
# shading (1.3-5.7x; training/RESULTS.md): above this the search reads its slices again with the field divided out.
SEARCH_SHADING_TRIGGER = 1.4
# A coil's field is no plane across a whole field of view, and a reading that took the bright side's tissue for the
# LV fits the field on the wrong tissue. So where the field shows, the search also reads its middle slices flattened
# (each divided by its own Gaussian smoothing, `data.shading.flatten`), and the LV candidates of
# both readings go to `_surest`. On 36 unseen cases in other cases' surroundings under a coil's shading this took the
# pooled Dice from 0.529 to 0.658 (strength 0.45) and from 0.465 to 0.617 (1.1); unshaded fields of view lost nothing
# (0.678 -> 0.695; 512 x 512: 0.637 -> 0.687), and crops never search (training/RESULTS.md, "The search under a
# coil's shading"). Flattened alone, the search lost unshaded fields of view (0.698 -> 0.662, 18 cases).
SEARCH_FLATTENED = True
# Where the field shows, `_surest` reads the candidates flattened too: in a field of view under a coil's shading at
# strength 1.1 the plain views read another case's filled-in heart more surely than the LV (fold 2: 0.904 against
# 0.883, 0.895 against 0.869) and the flattened ones the LV (0.911 against 0.872, 0.899 against 0.891).
SUREST_FLATTENED = True
# Where the search's reading holds several LV-like components (another heart, a filled-in one), each scoring at least
# this share of the best one's, the network reads each of the CANDIDATES best in a view of its own and the surest
# reading wins (`_surest`).
CANDIDATES = 3
CANDIDATE_SHARE = 0.1
# Scale: where the model's card records the LV size of its training data (``expects``), the final view's zoom brings
# an LV outside the training data's usual range of sizes into it (`zoom_for`); an LV inside that range is read at its
# own scale, as the model learnt it. A second pass is made only when the first one's view is off the zoom its LV asks
# for by more than ZOOM_TOLERANCE, or off its centre (an image of the training scale takes one pass).
ZOOM_TOLERANCE = 1.1
ZOOM_RANGE = (0.25, 4.0)


def expected_lv_size(card) -> tuple | None:
    """(low, median, high) LV diameter in model pixels (see `lv_diameter`) of the training data, as the model card
    records it (``expects``: ``lv_diameter_px`` and ``lv_diameter_range_px``, its 10th-90th percentiles over the
    training cases); None where it does not (the model's own scale is then taken as the image's)."""
    expects = getattr(card, "extra", {}).get("expects") or {}
    try:
        mid = float(expects.get("lv_diameter_px"))
        low, high = (float(v) for v in expects.get("lv_diameter_range_px") or (mid, mid))
    except (TypeError, ValueError):
        return None
    if not (np.isfinite([low, mid, high]).all() and 0 < low <= mid <= high):
        return None
    return low, mid, high


# Pixel size: where a file records its pixel size and the model's card the pixel size its training data were read at
# (``expects.pixel_size_mm``), the zoom is their ratio and the LV's own size only checks it (`pixel_zoom`). A header's
# 1 x 1 mm is taken as unknown: it is what tools write where nothing was recorded (the EMIDEC crops carry it), and an
# in-plane 1.0 mm LGE pixel is rare enough that reading it by the LV's size costs little.
PLACEHOLDER_PIXEL_MM = 1.0
# The LV that a pixel-size zoom shows must lie within this factor of the card's range; farther, the pixel size is not
# believed (a header that lies, a resampled export) and the LV's size sets the zoom.
PIXEL_SIZE_TRUST = 1.5


def pixel_size_mm(spacing) -> float | None:
    """The in-plane pixel size (mm) that a file's spacing ((z,) y, x) records: the mean of y and x; None where it
    records none (absent, not positive and finite, or the 1 x 1 mm placeholder)."""
    try:
        y, x = (float(v) for v in tuple(spacing)[-2:])
    except (TypeError, ValueError):
        return None
    if not (np.isfinite([y, x]).all() and y > 0 and x > 0) or y == x == PLACEHOLDER_PIXEL_MM:
        return None
    return (y + x) / 2.0


def expected_pixel_size(card) -> float | None:
    """The pixel size (mm) a model's training data were read at, as its card records it (``expects.pixel_size_mm``);
    None where it does not (the EMIDEC crops record none)."""
    expects = getattr(card, "extra", {}).get("expects") or {}
    try:
        value = float(expects.get("pixel_size_mm"))
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def pixel_zoom(pixel_size: float, expected_mm: float) -> float:
    """The zoom (model pixels per image pixel) that reads pixels of ``pixel_size`` mm at the training data's
    ``expected_mm`` (within `ZOOM_RANGE`; 1 within `ZOOM_TOLERANCE`, so that images of the training pixel size are
    read as crops are)."""
    zoom = float(np.clip(pixel_size / expected_mm, *ZOOM_RANGE))
    return 1.0 if max(zoom, 1.0 / zoom) <= ZOOM_TOLERANCE else zoom


def pixel_size_believable(diameter: float, zoom: float, expected: tuple | None) -> bool:
    """Whether an LV of ``diameter`` image pixels, read at a pixel-size ``zoom``, looks like the training data's LVs
    (within `PIXEL_SIZE_TRUST` of the card's range); True where the card records no LV size."""
    if expected is None:
        return True
    low, _, high = expected
    return low / PIXEL_SIZE_TRUST <= diameter * zoom <= high * PIXEL_SIZE_TRUST


def zoom_for(diameter: float, expected: tuple) -> float:
    """The zoom at which an LV of ``diameter`` image pixels looks as the model expects: 1 inside the expected range,
    else the one that brings it to the range's nearer end (within `ZOOM_RANGE`). The nearer end, not the median: on
    18 unseen cases, bringing the crops' smaller hearts up to the median gave false infarcts in 3 normal cases (per
    case 0.676 against 0.724 unzoomed), the nearer end none (0.724); on pixels 0.6x-1.7x the training data's, both
    keep at least 0.96x the crops' pooled Dice (training/RESULTS.md, "Robustness to another scanner's images")."""
    low, _, high = expected
    if low <= diameter <= high:
        return 1.0
    return float(np.clip((low if diameter < low else high) / diameter, *ZOOM_RANGE))


def plausible_lv(diameter: float, expected: tuple) -> bool:
    """Whether an LV of ``diameter`` image pixels can be one: a zoom within `ZOOM_RANGE` brings it into the expected
    range (pixel sizes from a quarter to 4x the training data's)."""
    low, _, high = expected
    return bool(diameter) and low / ZOOM_RANGE[1] <= diameter <= high / ZOOM_RANGE[0]


def lv_diameter(labels: np.ndarray, percentile: float = 75.0) -> float | None:
    """The LV's size in a stack of labels (Z, Y, X): the 75th percentile over the slices holding LV labels of the
    diameter of a disc with the slice's LV area (cavity + wall). The same measure is taken of the training data's
    truth (the card's ``expects``) and of a prediction; None without LV labels."""
    areas = np.count_nonzero(labels.reshape(len(labels), -1) > 0, axis=1)
    areas = areas[areas > 0]
    if not len(areas):
        return None
    return float(np.percentile(2.0 * np.sqrt(areas / np.pi), percentile))


def lv_size_expectation(label_volumes, pixel_size: float | None = None) -> dict | None:
    """A model card's ``expects`` block from its training cases' labels (stacks (Z, Y, X) on the model's grid): the
    median `lv_diameter` over the cases and its 10th-90th percentile range, at least 12 % either side of the median
    (the 42 EMIDEC training cases' own spread: a few cases must not make every other heart "off-size"), and the pixel
    size (mm) the cases were read at, where their files recorded one; None without LV labels."""
    sizes = [d for d in (lv_diameter(np.asarray(v)) for v in label_volumes) if d]
    if not sizes:
        return None
    low, mid, high = np.percentile(sizes, [10, 50, 90])
    low, high = min(low, mid / 1.12), max(high, mid * 1.12)
    return {"lv_diameter_px": round(float(mid), 1), "lv_diameter_range_px": [round(float(low), 1),
                                                                             round(float(high), 1)],
            "measure": "lv_diameter: 75th percentile over a case's LV slices of the diameter of a disc with the "
                       "slice's LV area (cavity + wall); median and 10th-90th percentiles over the training cases, "
                       "at least 12 % either side of the median",
            "pixel_size_mm": None if pixel_size is None else round(float(pixel_size), 4)}


def search_order(count: int) -> list:
    """The slices the LV search reads, in two rounds (`LOCATOR_SLICES`): the middle ones, then the quarter ones."""
    middle = [count // 2 - 1, count // 2] if count > 1 else [0]
    quarters = [q for q in dict.fromkeys((count // 4, (3 * count) // 4)) if q not in middle]
    return [middle[:LOCATOR_SLICES[0]], quarters[:LOCATOR_SLICES[1]]]


def search_steps(image, center, size: int, shading: bool = True) -> int:
    """Steps of the LV search (`locate_steps`) at most: none where a centre is given or the image fits the grid;
    ``shading``: the middle slices read again without a coil's shading (twice: `SEARCH_FLATTENED`)."""
    n_slices = 1 if np.ndim(image) == 2 else len(image)
    if center is not None or max(np.shape(image)[-2:]) <= size:
        return 0
    rounds = search_order(n_slices)
    return sum(len(r) for r in rounds) + ((1 + SEARCH_FLATTENED) * len(rounds[0]) if shading else 0)


def locate_steps(model, stack: np.ndarray, size: int, normalization=None, expected: tuple | None = None,
                 device=None, shading: bool = True):
    """Find the LV in a raw stack (Z, Y, X) larger than the model's view; yields after each slice's forward pass and
    returns a `Found` (centre (y, x), LV diameter in the image's pixels, whether the field showed), or None where no
    LV was found (with ``expected``, the card's `expected_lv_size`: none that `plausible_lv` accepts).

    ``shading``: where the blood pool and muscle the middle slices' reading labels, wherever they lie in the field
    of view, show a receive coil's field (`data.shading.shading_to_correct`, at `SEARCH_SHADING_TRIGGER`), the
    search divides it out and reads those slices again (and the later ones divided alike), and reads them once more
    flattened (`SEARCH_FLATTENED`), the candidates of both readings judged together: under a coil's shading the
    first reading takes the bright side's tissue for the LV."""
    import torch

    from .data.resample import View, sample_view
    from .data.shading import shading_to_correct
    from .models.heads import labels_of

    net = model   # all of it: one member of the bundled ensemble, searching alone, took a frame's flat border or
    # another case's filled-in heart for the LV in 2 of 18 fields of view each (benchmarks/bench_robustness.py)
    context = model_context(net)
    h, w = stack.shape[-2:]
    zoom = min(1.0, LOCATOR_SPAN * size / max(h, w))
    extent = int(np.ceil(max(h, w) * zoom / 16.0)) * 16   # the network halves the grid 4 times
    view = View.around(None, zoom, extent, stack.shape)
    rounds = search_order(len(stack))
    total = search_steps(stack, None, size, shading)
    read: list = []   # the labels of each slice read, in the search's order
    raws: list = []   # each slice's raw grid, for the shading fit
    field, done = None, 0
    was_training = net.training
    net.eval()

    def reading(z, flattened=False):
        around = np.clip(np.arange(z - context, z + context + 1), 0, len(stack) - 1)
        grid, valid = sample_view(stack[around], view)
        if flattened:
            raw = flatten(grid, valid, FLATTEN_SIGMA * extent)
        else:
            raw = grid if field is None else grid / field
        with torch.inference_mode():   # not held across a yield
            out = net(torch.from_numpy(normalize_view(raw, valid, normalization)[None]).to(device or device_of(net)))
            return raw[context], labels_of(net, out).cpu().numpy()[0].astype(np.uint8)   # whatever the head

    try:
        for number, chosen in enumerate(rounds):
            for z in chosen:
                raw, labels = reading(z)
                raws.append(raw)
                read.append(labels)
                done += 1
                yield done, total
            flat_read = None
            if number == 0 and shading:
                field, _ = shading_to_correct(np.stack(raws), np.stack(read), SEARCH_SHADING_TRIGGER)
                if field is not None:   # the middle slices again, the field divided out, and flattened
                    again = {}
                    for flattened in (False, True)[:1 + SEARCH_FLATTENED]:
                        again[flattened] = []
                        for z in chosen:
                            again[flattened].append(reading(z, flattened)[1])
                            done += 1
                            yield done, total
                    read, flat_read = again[False], again.get(True)   # candidates of both readings
            candidates = lv_candidates(np.stack(read), view, expected)
            if flat_read is not None:
                candidates = _merged(candidates, lv_candidates(np.stack(flat_read), view, expected))
            found = candidates[0] if candidates else None
            if len(candidates) > 1:   # the one the network reads most surely at full resolution
                found = _surest(net, stack, chosen, candidates, size, expected, normalization, device,
                                flattened=SUREST_FLATTENED and flat_read is not None)
            if found is not None:
                found = Found(*found, shaded=field is not None)
                break
    finally:
        net.train(was_training)
    if done < total:   # the slices left unread: the count jumps to the end
        yield total, total
    return found


class Found(NamedTuple):
    """The LV the search found: its centre (y, x) and diameter in the image's pixels, and whether the field of view
    showed a receive coil's field (`SEARCH_SHADING_TRIGGER`)."""
    centre: tuple
    diameter: float
    shaded: bool = False


def _merged(first: list, second: list) -> list:
    """Candidates of two readings, the first's first, those of the second that lie within a quarter of an LV of one
    already listed left out."""
    out = list(first)
    for centre, diameter in second:
        if all(np.hypot(centre[0] - c[0], centre[1] - c[1]) > max(d, diameter) / 4.0 for c, d in out):
            out.append((centre, diameter))
    return out


def _surest(net, stack, slices, candidates: list, size: int, expected, normalization, device, flattened=False):
    """The LV candidate (centre, diameter) the network reads most surely at full resolution: the mean top class
    probability over what it labels as heart in a view of its grid around each candidate, at the zoom its size asks
    for, on the searched ``slices`` (all candidates in one batch). In a shrunk field of view another case's filled-in
    heart read as surely as the LV (mean 0.82-0.85 against 0.85); in its own view the LV read more surely
    (0.91-0.93 against at most 0.88; training/RESULTS.md). ``flattened``: each view read `flatten`ed, as under a
    coil's shading."""
    import torch

    from .data.resample import View, sample_view
    from .models.heads import probabilities

    context = model_context(net)
    grids = []
    for centre, diameter in candidates:
        view = View.around(centre, zoom_for(diameter, expected) if expected is not None else 1.0, size, stack.shape)
        for z in slices:
            around = np.clip(np.arange(z - context, z + context + 1), 0, len(stack) - 1)
            grid, valid = sample_view(stack[around], view)
            if flattened:
                grid = flatten(grid, valid, FLATTEN_SIGMA * size)
            grids.append(normalize_view(grid, valid, normalization))
    with torch.inference_mode():
        prob = probabilities(net, net(torch.from_numpy(np.stack(grids)).to(device or device_of(net)))).cpu().numpy()
    prob = prob.reshape((len(candidates), len(slices)) + prob.shape[1:])
    top, heart = prob.max(2), prob.argmax(2) > 0
    sureness = [float(t[h].mean()) if h.any() else 0.0 for t, h in zip(top, heart)]
    return candidates[int(np.argmax(sureness))]


def lv_in_view(labels: np.ndarray, view, expected: tuple | None = None):
    """(centre (y, x), diameter) in the image's pixels of the LV (`_walled_components`' first) among labels predicted
    in ``view``; None without one, or (``expected`` given) without one of a plausible size (a flat image's speck)."""
    found = lv_candidates(labels, view, expected, most=1)
    return found[0] if found else None


def lv_candidates(labels: np.ndarray, view, expected: tuple | None = None, most: int = CANDIDATES):
    """Up to ``most`` components that could be the LV, most ventricle-like first (`_walled_components`), as (centre
    (y, x), diameter) in the image's pixels: those of a plausible size (with ``expected``) among the ones scoring at
    least `CANDIDATE_SHARE` of the best one's. ``most`` 1: the best one, or none where it is not plausible."""
    found = []
    ranked = _walled_components(labels)
    for score, (cy, cx), mask in ranked:
        if found and score < CANDIDATE_SHARE * ranked[0][0]:
            break
        diameter = lv_diameter(mask) / view.zoom
        if expected is None or plausible_lv(diameter, expected):
            found.append((view.to_user(cy, cx), diameter))
        if len(found) == most or most == 1:
            break
    return found


def _walled_components(labels: np.ndarray) -> list:
    """[(score, (y, x) centroid, mask)] of the 3-D components of a stack's predicted labels (Z, Y, X) that hold both
    cavity and wall, most ventricle-like first: cavity and wall in comparable amounts, the cavity ringed by wall.
    The score is the smaller of the cavity and wall counts, times their ratio (smaller over larger), times the
    square of the share of the cavity's rim that touches wall. A flat region (zero padding, a blank border) can read
    as a large "cavity" with a thin rim of wall, and a stripe at a frame's edge as "wall" with no cavity. Where no
    component holds both, the largest component alone."""
    from scipy import ndimage

    comp, n = ndimage.label(labels > 0)
    if n == 0:
        return []
    in_plane = ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0])[:, None, None].astype(bool)
    is_wall = np.isin(labels, (MYOCARDIUM, INFARCT, NO_REFLOW))
    is_cavity = labels == CAVITY
    rim = is_cavity & ~ndimage.binary_erosion(is_cavity, in_plane, border_value=1)
    ringed = rim & ndimage.binary_dilation(is_wall, in_plane)

    def count(mask):
        return np.bincount(comp.ravel(), weights=mask.ravel(), minlength=n + 1)

    wall, cavity, rims, ringed = count(is_wall), count(is_cavity), count(rim), count(ringed)
    enclosed = np.where(rims > 0, ringed / np.maximum(rims, 1), 0.0)
    smaller, larger = np.minimum(wall, cavity), np.maximum(wall, cavity)
    score = smaller * (smaller / np.maximum(larger, 1)) * enclosed ** 2
    sizes = np.bincount(comp.ravel(), minlength=n + 1)
    order = sorted(range(1, n + 1), key=lambda k: (score[k], sizes[k]), reverse=True)
    chosen = [k for k in order if score[k] > 0] or order[:1]
    out = []
    for k in chosen:
        mask = comp == k
        _, cy, cx = ndimage.center_of_mass(mask)
        out.append((float(score[k]), (float(cy), float(cx)), mask))
    return out
