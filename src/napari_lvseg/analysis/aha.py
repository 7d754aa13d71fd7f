"""AHA 17-segment analysis of an LGE label stack: levels, the segment origin, per-segment infarct figures.

Orientation assumptions (image axes vs patient)
-----------------------------------------------
- Labels and images are (Z, Y, X) short-axis stacks as `napari_lvseg.io` returns them; a slice is shown with
  row 0 at the top and x to the right (as napari and matplotlib show it).
- That on-screen slice is assumed to be seen **from the apex**, in the usual cardiac MR display: anterior wall up,
  septum and right ventricle on the screen's left, lateral wall on the right. Angles here are measured on screen:
  0 deg = +x (screen right), 90 deg = screen up (-y), counter-clockwise on screen, from the slice's LV centre (the
  cavity centroid; the myocardium centroid on a slice without cavity). An image seen from the base (mirrored)
  would number the segments clockwise: mirror it first (``labels[..., ::-1]``), or give the origin by hand and
  read the numbers as mirrored.
- Slice order: which end of the stack is the apex is read from the labels (the LV narrows towards the apex:
  the end whose third of slices holds the smaller LV area), unless ``apex_first`` is given. In the EMIDEC crops
  (``Case_X``, NIfTI (X, Y, Z) read as (Z, Y, X)) index 0 is the most apical slice in all 60 cases.

Convention (Cerqueira et al., Circulation 2002)
-----------------------------------------------
Basal (1-6) and mid (7-12) slices: six 60-degree segments starting at the anterior RV insertion point and going
counter-clockwise as seen from the apex: 2/8 anteroseptal, 3/9 inferoseptal, 4/10 inferior, 5/11 inferolateral,
6/12 anterolateral, 1/7 anterior (the 60 degrees clockwise of the insertion). The septum (2-3, 8-9) thus lies
between the anterior insertion and 120 degrees counter-clockwise of it. Apical slices (13-16): four 90-degree
segments, 14 septal centred on the septal centre (insertion + 60 deg), then 15 inferior, 16 lateral, 13 anterior.
17 is the apex cap: slices at the apical end with myocardium but no cavity.

Figures per segment: myocardium pixels (2+3+4), infarct (3+4, as EMIDEC) and no-reflow (4) pixels and their % of
the segment's myocardium; transmurality per radial chord from the LV centre (the length inside infarct over the
length inside myocardium, one chord per degree, as `metrics.max_transmurality` measures it), and per segment the
**mean** over its chords (chords without infarct count as 0), so it matches the visual "transmural extent" score
readers give a segment; the class (0, 1-25, 26-50, 51-75, 76-100 %) is of that mean. The maximum chord is given too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError
from napari_lvseg.metrics import RAY_STEP, _as_labels

LEVELS = ("basal", "mid", "apical", "apex")
LEVEL_LETTERS = {"b": "basal", "m": "mid", "a": "apical", "x": "apex", "-": None}
DEFAULT_INSERTION_DEG = 120.0   # upper left on screen (10 o'clock): the usual place in a display seen from the apex
N_CHORDS = 360                  # one chord per degree: six per basal/mid segment at least 60

SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral",
    7: "mid anterior", 8: "mid anteroseptal", 9: "mid inferoseptal", 10: "mid inferior",
    11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex",
}
SEGMENT_LEVEL = {s: ("basal" if s <= 6 else "mid" if s <= 12 else "apical" if s <= 16 else "apex")
                 for s in SEGMENT_NAMES}
LEVEL_FIRST = {"basal": 1, "mid": 7, "apical": 13, "apex": 17}

TRANSMURALITY_CLASSES = ("0", "1-25", "26-50", "51-75", "76-100")


def transmurality_class(percent: float) -> str:
    """'0' for no infarct, else the 25 % band the value falls in ('1-25' holds everything above 0 up to 25).
    '' for NaN (a segment not imaged)."""
    if percent is None or math.isnan(percent):
        return ""
    if percent <= 0:
        return "0"
    return TRANSMURALITY_CLASSES[min(4, math.ceil(percent / 25.0))]


# ---------------------------------------------------------------------------------------------
# Levels


def _has_myocardium(labels) -> np.ndarray:
    return lb.region(labels, "myocardium").reshape(len(labels), -1).any(axis=1)


def apex_is_first(labels) -> bool:
    """Whether index 0 is the apical end: the third of the myocardium slices with the smaller LV area (cavity +
    myocardium) is apical, as the LV narrows towards the apex. Ties (and one or two slices) say first."""
    labels = _stack(labels)
    idx = np.flatnonzero(_has_myocardium(labels))
    if len(idx) < 3:
        return True
    area = (labels[idx] > 0).reshape(len(idx), -1).sum(axis=1)
    k = max(1, len(idx) // 3)
    return bool(area[:k].mean() <= area[-k:].mean())


def slice_levels(labels, apex_first: bool | None = None) -> list:
    """Per slice of the stack: 'basal', 'mid', 'apical', 'apex' (segment 17) or None (no myocardium).

    The apex cap (17) is the run of slices at the apical end that hold myocardium but no cavity; there is none when
    every slice has cavity (as in all EMIDEC cases). The other slices with myocardium are split into thirds from
    base to apex, each slice going to the third its centre falls in (7 slices: 2/3/2, 8: 3/2/3, 10: 3/4/3).
    """
    labels = _stack(labels)
    if apex_first is None:
        apex_first = apex_is_first(labels)
    levels = [None] * len(labels)
    idx = list(np.flatnonzero(_has_myocardium(labels)))
    base_to_apex = idx[::-1] if apex_first else idx
    while base_to_apex and not (labels[base_to_apex[-1]] == lb.CAVITY).any():
        levels[base_to_apex.pop()] = "apex"
    n = len(base_to_apex)
    for i, z in enumerate(base_to_apex):
        levels[z] = ("basal", "mid", "apical")[min(2, int(3 * (i + 0.5) / n))]
    return levels


def parse_levels(value, n_slices: int, what="levels") -> list:
    """An explicit level per slice: a string of letters (b basal, m mid, a apical, x apex cap, - none), optionally
    comma-separated, or a sequence of level names / None. Its length must be the number of slices."""
    if isinstance(value, str):
        items = [c for c in value.replace(",", "").replace(" ", "")]
        try:
            levels = [LEVEL_LETTERS[c.lower()] for c in items]
        except KeyError:
            raise LvsegError(f"levels must be letters b (basal), m (mid), a (apical), x (apex cap) or - (none), "
                             f"got {value!r}", what) from None
    else:
        levels = [None if v in (None, "", "-", "none") else str(v) for v in value]
        bad = [v for v in levels if v is not None and v not in LEVELS]
        if bad:
            raise LvsegError(f"unknown level {bad[0]!r} (use {', '.join(LEVELS)} or None)", what)
    if len(levels) != n_slices:
        raise LvsegError(f"{len(levels)} levels given for a stack of {n_slices} slices", what)
    return levels


# ---------------------------------------------------------------------------------------------
# Geometry


def _stack(labels) -> np.ndarray:
    labels = _as_labels(labels, "labels")
    return labels[None] if labels.ndim == 2 else labels


def slice_centre(labels2d) -> tuple | None:
    """(y, x) the LV centre of a slice: cavity centroid, else myocardium centroid; None without either."""
    cavity = labels2d == lb.CAVITY
    mask = cavity if cavity.any() else lb.region(labels2d, "myocardium")
    if not mask.any():
        return None
    return tuple(float(v) for v in np.argwhere(mask).mean(axis=0))


def screen_angle(dy, dx):
    """Degrees 0..360 of an on-screen offset (dy rows down, dx columns right): 0 right, 90 up, counter-clockwise."""
    return np.degrees(np.arctan2(-np.asarray(dy, float), np.asarray(dx, float))) % 360.0


def segment_of(angle_deg, level: str, insertion_deg: float):
    """Segment number(s) of on-screen angle(s) at a level, for an anterior RV insertion at ``insertion_deg``."""
    angle = np.asarray(angle_deg, float)
    if level in ("basal", "mid"):
        k = np.floor(((angle - insertion_deg + 60.0) % 360.0) / 60.0).astype(int) % 6   # 0 anterior, 1 anteroseptal..
        return LEVEL_FIRST[level] + k
    if level == "apical":
        k = np.floor(((angle - insertion_deg + 75.0) % 360.0) / 90.0).astype(int) % 4   # 0 anterior, 1 septal..
        return 13 + k
    if level == "apex":
        return np.full(angle.shape, 17)
    raise LvsegError(f"unknown level {level!r}")


def segment_map(labels, levels=None, insertion_deg=DEFAULT_INSERTION_DEG) -> np.ndarray:
    """(Z, Y, X) int array: the AHA segment (1..17) of each myocardium pixel, 0 elsewhere. ``insertion_deg``: one
    angle for the stack or one per slice (NaN: the stack's median)."""
    labels = _stack(labels)
    levels = slice_levels(labels) if levels is None else parse_levels(levels, len(labels))
    insertion = _per_slice(insertion_deg, len(labels))
    out = np.zeros(labels.shape, np.int16)
    for z, level in enumerate(levels):
        myo = lb.region(labels[z], "myocardium")
        centre = slice_centre(labels[z])
        if level is None or centre is None or not myo.any():
            continue
        ys, xs = np.nonzero(myo)
        out[z, ys, xs] = segment_of(screen_angle(ys - centre[0], xs - centre[1]), level, insertion[z])
    return out


def _per_slice(insertion_deg, n: int) -> np.ndarray:
    values = np.broadcast_to(np.asarray(insertion_deg, float), (n,)).copy() if np.ndim(insertion_deg) == 0 \
        else np.asarray(insertion_deg, float)
    if values.shape != (n,):
        raise LvsegError(f"{values.size} insertion angles given for a stack of {n} slices")
    if np.isnan(values).all():
        values[:] = DEFAULT_INSERTION_DEG
    values[np.isnan(values)] = circular_median(values[~np.isnan(values)])
    return values % 360.0


def circular_median(angles_deg) -> float:
    """The given angle nearest to all others (least summed circular distance): robust to one wrong slice."""
    angles = np.asarray(angles_deg, float)
    if not len(angles):
        return float("nan")
    diff = np.abs((angles[:, None] - angles[None, :] + 180.0) % 360.0 - 180.0)
    return float(angles[np.argmin(diff.sum(axis=1))] % 360.0)


def chords(labels2d, centre=None, n_chords: int = N_CHORDS, segments2d=None, level=None, insertion_deg=None):
    """Radial chords from the LV centre across the wall: (angles in degrees, myocardium length, infarct length),
    lengths in pixels along each ray (sampled every `metrics.RAY_STEP` px, nearest pixel), so a diagonal chord is
    not off by a pixel of an 8-pixel wall. Empty arrays without myocardium.

    With ``segments2d`` (the slice's `segment_map`), ``level`` and ``insertion_deg``, a chord counts only the pixels
    of its own segment: next to a segment border a ray's nearest pixels may lie just across it, and would lend the
    neighbour's infarct to a segment that has none."""
    labels2d = np.asarray(labels2d)
    myo = lb.region(labels2d, "myocardium")
    centre = slice_centre(labels2d) if centre is None else centre
    if centre is None or not myo.any():
        return np.zeros(0), np.zeros(0), np.zeros(0)
    cy, cx = centre
    wall = np.argwhere(myo)
    reach = float(np.hypot(wall[:, 0] - cy, wall[:, 1] - cx).max()) + 1.0
    angles = (np.arange(n_chords) + 0.5) * 360.0 / n_chords   # chord centres: none on a segment border
    rad = np.radians(angles)[:, None]
    radii = np.arange(0.0, reach, RAY_STEP)[None, :]
    ys = np.rint(cy - radii * np.sin(rad)).astype(np.int64)   # screen angle: up is -y
    xs = np.rint(cx + radii * np.cos(rad)).astype(np.int64)
    height, width = labels2d.shape
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    flat = np.where(inside, ys * width + xs, 0)
    if segments2d is not None:
        own = np.asarray(segments2d).ravel()[flat] == segment_of(angles, level, insertion_deg)[:, None]
        inside = inside & own
    myo_len = (myo.ravel()[flat] & inside).sum(axis=1) * RAY_STEP
    inf_len = (lb.region(labels2d, "infarct").ravel()[flat] & inside).sum(axis=1) * RAY_STEP
    return angles, myo_len, inf_len


# ---------------------------------------------------------------------------------------------
# The segment origin: the anterior RV insertion point


@dataclass
class Insertion:
    """The anterior RV insertion as an on-screen angle (degrees, see the module's conventions).

    ``angle_deg``: used for every slice; ``per_slice``: each slice's own estimate (NaN where none);
    ``arc_deg``: per slice, the width of the RV contact arc found (NaN where none); ``source``: 'image' (estimated),
    'default' (no slice gave an estimate: `DEFAULT_INSERTION_DEG`), 'user angle' or 'user point'.
    """

    angle_deg: float
    source: str
    per_slice: list = field(default_factory=list)
    arc_deg: list = field(default_factory=list)

    def describe(self) -> str:
        how = {"image": "estimated from the image (RV blood pool next to the septum)",
               "default": f"fixed default {DEFAULT_INSERTION_DEG:.0f} deg: no RV found in the image",
               "user angle": "given by the user", "user point": "from the user's point"}[self.source]
        return f"anterior RV insertion at {self.angle_deg:.0f} deg on screen ({how})"


MIN_ARC_DEG, MAX_ARC_DEG = 50.0, 220.0   # an RV contact arc narrower or wider than this is not the RV
BAND_WALLS = 2.5   # band outside the epicardium searched for RV blood, in wall thicknesses: thin fat fills less
# An anterior insertion the display convention allows (upper left of the LV, 10 o'clock +- 60 deg): a slice's
# estimate outside it is bright fat or liver taken for RV, and gets no vote.
PLAUSIBLE_DEG = (75.0, 195.0)


def _slice_rv_arc(image2d, labels2d, centre):
    """(anterior insertion angle, arc width) of one slice, or (NaN, NaN).

    Pixels outside the LV at least half-way from the normal myocardium's median intensity to the LV blood pool's
    are "blood-bright"; in LGE the RV blood pool is about as bright as the LV's and lies directly against the
    septum, while lung is dark and the epicardial fat layer is thin. Along each of 360 rays from the LV centre, a
    band just outside the epicardium (from 1 px out, over `BAND_WALLS` wall thicknesses) is RV when at least half of
    it is the one connected blood-bright piece that most rays meet; the longest run of such rays is the RV contact, its
    ends the insertion points. Seen from the apex (counter-clockwise on screen) the run starts
    at the anterior insertion and crosses the septum to the inferior one.
    """
    myo = lb.region(labels2d, "myocardium")
    cavity = labels2d == lb.CAVITY
    if cavity.sum() < 10 or myo.sum() < 20:
        return math.nan, math.nan
    normal = labels2d == lb.MYOCARDIUM
    myo_ref = float(np.median(image2d[normal if normal.sum() >= 20 else myo]))
    blood = float(np.median(image2d[cavity]))
    if blood - myo_ref <= 0.05 * (float(image2d.max()) - float(image2d.min()) + 1e-9):
        return math.nan, math.nan   # no blood-myocardium contrast to go by
    cy, cx = centre
    angles = np.arange(360) + 0.5
    rad = np.radians(angles)[:, None]
    height, width = labels2d.shape
    radii = np.arange(0.0, float(np.hypot(height, width)), 0.5)[None, :]
    ys = np.rint(cy - radii * np.sin(rad)).astype(np.int64)
    xs = np.rint(cx + radii * np.cos(rad)).astype(np.int64)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    ys, xs = np.where(inside, ys, 0), np.where(inside, xs, 0)
    on_myo = myo[ys, xs] & inside
    hit = on_myo.any(axis=1)
    if hit.sum() < 180:
        return math.nan, math.nan
    r = np.broadcast_to(radii, on_myo.shape)
    r_epi = np.where(on_myo, r, -1).max(axis=1)
    r_endo = np.where(on_myo, r, np.inf).min(axis=1)
    thickness = float(np.median((r_epi - r_endo)[hit])) + 0.5
    band = (r >= r_epi[:, None] + 1.0) & (r <= r_epi[:, None] + 1.0 + BAND_WALLS * thickness) & inside
    band &= labels2d[ys, xs] == lb.BACKGROUND   # not back into the LV's own labels
    # Blood-bright pixels outside the LV, in connected pieces (a 3x3 median first: noise does not join them); the
    # RV is the piece most rays meet next to the wall, so bright fat or chest wall cut off by a dark line
    # (RV free wall, lung) does not extend the arc.
    from scipy import ndimage

    smooth = ndimage.median_filter(np.asarray(image2d, float), size=3)
    bright_px = ((smooth - myo_ref) / (blood - myo_ref) >= 0.5) & (labels2d == lb.BACKGROUND)
    bright_px = ndimage.binary_opening(bright_px)
    pieces, n_pieces = ndimage.label(bright_px)
    if not n_pieces:
        return math.nan, math.nan
    piece = np.where(band, pieces[ys, xs], 0)
    near = np.unique(piece[piece > 0])
    if not len(near):
        return math.nan, math.nan
    counts = np.stack([(piece == k).sum(axis=1) for k in near], axis=1)   # (rays, pieces next to the wall)
    n_band = band.sum(axis=1)
    per_ray = (counts >= 0.5 * np.maximum(n_band, 1)[:, None]) & (n_band[:, None] > 0)
    bright = per_ray[:, int(np.argmax(per_ray.sum(axis=0)))]
    # close gaps of a few degrees (a papillary-like dark spot, a trabecula) and drop specks: circular majority
    kernel = 7
    padded = np.concatenate([bright[-kernel:], bright, bright[:kernel]]).astype(float)
    bright = np.convolve(padded, np.ones(2 * kernel + 1) / (2 * kernel + 1), "same")[kernel:-kernel] >= 0.5
    if bright.all() or not bright.any():
        return math.nan, math.nan
    start_at = int(np.flatnonzero(~bright)[0])   # walk the circle from a dark ray: no run is cut at 0 deg
    rolled = np.roll(bright, -start_at)
    best, best_len, i = None, 0, 0
    while i < 360:
        if rolled[i]:
            j = i
            while j < 360 and rolled[j]:
                j += 1
            if j - i > best_len:
                best, best_len = i, j - i
            i = j
        else:
            i += 1
    angle = float((best + start_at) % 360)
    if not (MIN_ARC_DEG <= best_len <= MAX_ARC_DEG and PLAUSIBLE_DEG[0] <= angle <= PLAUSIBLE_DEG[1]):
        return math.nan, math.nan
    return angle, float(best_len)


def estimate_insertion(image, labels, levels=None) -> Insertion:
    """The anterior RV insertion angle from the image (`_slice_rv_arc` per basal and mid slice; the circular
    median over slices, as single slices go wrong), or `DEFAULT_INSERTION_DEG` where no slice gives one."""
    labels = _stack(labels)
    image = np.asarray(image, float)
    image = image[None] if image.ndim == 2 else image
    if image.shape != labels.shape:
        raise LvsegError(f"image shape {image.shape} and label shape {labels.shape} differ")
    levels = slice_levels(labels) if levels is None else parse_levels(levels, len(labels))
    per_slice, arcs = [math.nan] * len(labels), [math.nan] * len(labels)
    for z, level in enumerate(levels):
        centre = slice_centre(labels[z])
        if level is None or centre is None:
            continue
        per_slice[z], arcs[z] = _slice_rv_arc(image[z], labels[z], centre)
    # apical slices show little RV and the cap none: they vote only when no basal or mid slice could
    votes = [a for a, lv in zip(per_slice, levels) if not math.isnan(a) and lv in ("basal", "mid")] or \
        [a for a in per_slice if not math.isnan(a)]
    if not votes:
        return Insertion(DEFAULT_INSERTION_DEG, "default", per_slice, arcs)
    return Insertion(circular_median(votes), "image", per_slice, arcs)


def insertion_from_point(labels, point) -> Insertion:
    """The insertion angle of a user's point: (y, x) on screen, measured from the LV centre of the middle slice
    with cavity, or (z, y, x) from slice z's centre."""
    labels = _stack(labels)
    point = [float(v) for v in np.ravel(point)]
    if len(point) not in (2, 3) or not all(math.isfinite(v) for v in point):
        raise LvsegError(f"an insertion point is (y, x) or (z, y, x), got {point!r}")
    if len(point) == 3:
        z = int(round(point[0]))
        if not 0 <= z < len(labels):
            raise LvsegError(f"insertion point slice {z} is outside the stack of {len(labels)} slices")
    else:
        with_cavity = [z for z in range(len(labels)) if (labels[z] == lb.CAVITY).any()]
        if not with_cavity:
            raise LvsegError("no slice with LV cavity to measure the insertion point from")
        z = with_cavity[len(with_cavity) // 2]
    centre = slice_centre(labels[z])
    if centre is None:
        raise LvsegError(f"slice {z} has no LV to measure the insertion point from")
    y, x = point[-2:]
    if math.hypot(y - centre[0], x - centre[1]) < 1e-6:
        raise LvsegError("the insertion point is the LV centre itself: it gives no direction")
    return Insertion(float(screen_angle(y - centre[0], x - centre[1])), "user point")


def insertion_points(labels, angle_deg: float) -> list:
    """(z, y, x) on the epicardium of each slice with myocardium along ``angle_deg`` (for a draggable marker)."""
    labels = _stack(labels)
    points = []
    for z in range(len(labels)):
        centre = slice_centre(labels[z])
        myo = lb.region(labels[z], "myocardium")
        if centre is None or not myo.any():
            continue
        rad = math.radians(angle_deg)
        r, last = 0.0, None
        while r < sum(labels.shape[1:]):
            y, x = int(round(centre[0] - r * math.sin(rad))), int(round(centre[1] + r * math.cos(rad)))
            if not (0 <= y < myo.shape[0] and 0 <= x < myo.shape[1]):
                break
            if myo[y, x]:
                last = (float(z), float(y), float(x))
            r += RAY_STEP
        if last is not None:
            points.append(last)
    return points


# ---------------------------------------------------------------------------------------------
# Per-segment figures


@dataclass
class AhaResult:
    """``rows``: one dict per segment 1..17 (`segment_rows`' keys); ``levels`` per slice; ``insertion``;
    ``segments``: the (Z, Y, X) segment map; ``apex_first``."""

    rows: list
    levels: list
    insertion: Insertion
    segments: np.ndarray
    apex_first: bool

    def by_segment(self) -> dict:
        return {row["segment"]: row for row in self.rows}


def _pct(part, whole) -> float:
    return 100.0 * part / whole if whole else math.nan


def analyse(labels, image=None, *, levels=None, insertion=None, apex_first: bool | None = None) -> AhaResult:
    """AHA 17-segment figures of a label stack (Z, Y, X) (or one slice, taken as mid-ventricular).

    ``levels``: per-slice levels (see `parse_levels`), default `slice_levels`. ``insertion``: None (estimated from
    ``image``; without an image, `DEFAULT_INSERTION_DEG`), an angle in degrees (float), a point (y, x) or (z, y, x)
    (`insertion_from_point`), or an `Insertion`. Each row: ``segment``, ``name``, ``level``, ``imaged`` (the level
    has myocardium), ``myocardium_px``, ``infarct_px``, ``infarct_pct``, ``no_reflow_px``, ``no_reflow_pct``,
    ``transmurality_pct`` (mean over the segment's chords; for 17, the cap's infarct %), ``transmurality_max_pct``,
    ``transmurality_class`` and ``no_reflow`` (any no-reflow pixel). Percentages are NaN where a segment holds no
    myocardium.
    """
    labels = _stack(labels)
    if apex_first is None:
        apex_first = apex_is_first(labels)
    if levels is None:
        levels = ["mid"] if len(labels) == 1 and _has_myocardium(labels)[0] else slice_levels(labels, apex_first)
    else:
        levels = parse_levels(levels, len(labels))
    if isinstance(insertion, Insertion):
        pass
    elif insertion is None:
        insertion = (estimate_insertion(image, labels, levels) if image is not None
                     else Insertion(DEFAULT_INSERTION_DEG, "default"))
    elif np.ndim(insertion) == 0:
        angle = float(insertion)
        if not math.isfinite(angle):
            raise LvsegError(f"insertion angle must be a finite number of degrees, got {insertion!r}")
        insertion = Insertion(angle % 360.0, "user angle")
    else:
        insertion = insertion_from_point(labels, insertion)
    seg = segment_map(labels, levels, insertion.angle_deg)
    infarct, no_reflow = lb.region(labels, "infarct"), lb.region(labels, "no_reflow")
    chord_frac = {s: [] for s in SEGMENT_NAMES}
    for z, level in enumerate(levels):
        if level in (None, "apex"):
            continue
        angles, myo_len, inf_len = chords(labels[z], segments2d=seg[z], level=level,
                                          insertion_deg=insertion.angle_deg)
        keep = myo_len > 0
        for s, frac in zip(segment_of(angles[keep], level, insertion.angle_deg), inf_len[keep] / myo_len[keep]):
            chord_frac[int(s)].append(float(frac))
    imaged_levels = {lv for lv in levels if lv is not None}
    rows = []
    for s, name in SEGMENT_NAMES.items():
        in_seg = seg == s
        myo_px, inf_px, nr_px = int(in_seg.sum()), int((in_seg & infarct).sum()), int((in_seg & no_reflow).sum())
        inf_pct = _pct(inf_px, myo_px)
        if s == 17:   # a cap has no wall to cross: its share of infarct stands for its transmural extent
            mean_t = max_t = inf_pct
        elif chord_frac[s]:
            mean_t, max_t = 100.0 * float(np.mean(chord_frac[s])), 100.0 * float(np.max(chord_frac[s]))
        else:
            mean_t = max_t = math.nan
        rows.append({"segment": s, "name": name, "level": SEGMENT_LEVEL[s],
                     "imaged": SEGMENT_LEVEL[s] in imaged_levels and myo_px > 0,
                     "myocardium_px": myo_px, "infarct_px": inf_px, "infarct_pct": inf_pct,
                     "no_reflow_px": nr_px, "no_reflow_pct": _pct(nr_px, myo_px),
                     "transmurality_pct": mean_t, "transmurality_max_pct": max_t,
                     "transmurality_class": transmurality_class(mean_t), "no_reflow": nr_px > 0})
    return AhaResult(rows, levels, insertion, seg, apex_first)
