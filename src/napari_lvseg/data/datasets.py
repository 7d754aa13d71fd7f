"""Training data: slices from EMIDEC case folders and pair folders, case-level splits, mixed sampling.

A *source* is one ``--data`` path. All of its slices are loaded once into memory (the whole EMIDEC
set is ~40 MB), normalised and brought to the training grid; sampling then only draws indices.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import LvsegError
from ..labels import INFARCT, NO_REFLOW, invalid_values
from .normalize import labels_center, neighbours, normalize_view, to_grid


@dataclass
class SliceSet:
    """Slices of one source on the training grid: images normalised, labels uint8."""

    name: str
    images: np.ndarray  # (N, S, S) float32
    labels: np.ndarray  # (N, S, S) uint8
    cases: list = field(default_factory=list)   # case (or pair) name per slice
    origin: list = field(default_factory=list)  # 'real' | 'corrected' | 'synthetic' per slice
    # where each slice came from: its case for real slices; a pair's source case, file or layer name (or "")
    derived_from: list = field(default_factory=list)
    pixel_sizes: dict = field(default_factory=dict)   # case -> in-plane pixel size (mm) its file records, or None

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, case_names) -> "SliceSet":
        keep = [i for i, c in enumerate(self.cases) if c in set(case_names)]
        return SliceSet(self.name, self.images[keep], self.labels[keep], [self.cases[i] for i in keep],
                        [self.origin[i] for i in keep], [self.derived_from[i] for i in keep],
                        {c: v for c, v in self.pixel_sizes.items() if c in set(case_names)})

    def input(self, j: int, context: int = 0) -> np.ndarray:
        """Slice ``j`` with ``context`` neighbours each side from its own case (C, S, S), ends repeated."""
        first = self.cases.index(self.cases[j])  # a case's slices are contiguous, in stack order
        return self.images[first + neighbours(j - first, self.cases.count(self.cases[j]), max(context, 0))]

    def case_names(self) -> list:
        return sorted(set(self.cases))

    def volumes(self):
        """(case, images (Z,S,S), labels (Z,S,S)) per case, slices in their original order."""
        for case in self.case_names():
            idx = [i for i, c in enumerate(self.cases) if c == case]
            yield case, self.images[idx], self.labels[idx]


def training_zoom(labels: np.ndarray, expected, pixel_size: float | None = None,
                  read_at: float | None = None) -> float:
    """The zoom at which segmenting reads a case with these labels (Z, Y, X) with a model expecting LVs of
    ``expected`` size (`locate.expected_lv_size`; None: 1): its LV brought into the expected range, as
    `inference.segment_steps` does, so that fine-tuning on another site's pixel size trains on what the model sees.
    Where the case's file records its ``pixel_size`` and the model is ``read_at`` a pixel size (mm), their ratio
    (`locate.pixel_zoom`), as segmenting takes it."""
    from ..locate import ZOOM_TOLERANCE, lv_diameter, pixel_size_believable, pixel_zoom, zoom_for

    if pixel_size and read_at:
        zoom = pixel_zoom(pixel_size, read_at)
        diameter = lv_diameter(labels)
        if diameter is None or pixel_size_believable(diameter, zoom, expected):
            return zoom
    diameter = lv_diameter(labels) if expected is not None else None
    if not diameter:
        return 1.0
    zoom = zoom_for(diameter, expected)
    return 1.0 if max(zoom, 1.0 / zoom) <= ZOOM_TOLERANCE else zoom


def _zoomed(image, labels, size, center, zoom):
    """(image, labels, inside) on the ``size`` grid at ``zoom`` around ``center`` (`data.resample`); labels through
    their classes' resampled indicator maps (no thin class lost to nearest-neighbour picking)."""
    from ..labels import N_CLASSES
    from .resample import View, sample_view

    view = View.around(center, zoom, size, image.shape)
    img, inside = sample_view(image.astype(np.float32), view)
    scores = np.stack([sample_view((labels == k).astype(np.float32), view)[0] for k in range(N_CLASSES)])
    lab = scores.argmax(0).astype(np.uint8)
    lab[:, ~inside] = 0
    return img, lab, inside


def _add_volume(acc, image, labels, case, origin, size, normalization, path, derived_from=None, expected=None,
                pixel_size=None, read_at=None):
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim == 2:
        image, labels = image[None], labels[None]
    if image.shape != labels.shape:
        raise LvsegError(f"image {image.shape} and mask {labels.shape} differ in shape", path)
    if not np.isfinite(image).all():
        raise LvsegError("image contains NaN or Inf", path)
    bad = invalid_values(labels)
    if bad:
        raise LvsegError(f"label values outside 0..4: {bad[:8]}", path)
    zoom = training_zoom(labels, expected, pixel_size, read_at)
    center = labels_center(labels) if image.shape[-2:] != (size, size) or zoom != 1.0 else None
    # cropped first, then normalised over the crop's pixels inside the image: as segmenting reads its view
    if zoom != 1.0:
        img, lab, inside = _zoomed(image, labels, size, center, zoom)
    else:
        img, _ = to_grid(image.astype(np.float32), size, center)
        inside, _ = to_grid(np.ones(image.shape[-2:], bool), size, center)
        lab, _ = to_grid(labels.astype(np.uint8), size, center)
    img = normalize_view(img, inside, normalization)
    acc["images"].append(img)
    acc["labels"].append(lab)
    acc["cases"] += [case] * len(img)
    acc["origin"] += [origin] * len(img)
    acc["derived_from"] += [case if derived_from is None else derived_from] * len(img)
    acc["pixel_sizes"][case] = pixel_size


def load_source(path, size: int = 128, normalization: dict | None = None, cases=None, expected=None,
                read_at: float | None = None) -> SliceSet:
    """Load an EMIDEC dataset/case folder or a pair folder as a SliceSet (``cases`` filters case names); with
    ``expected`` (a model's LV size, `locate.expected_lv_size`) and ``read_at`` (the pixel size in mm a model reads,
    `locate.expected_pixel_size`) each case at the zoom segmenting would read it at (`training_zoom`)."""
    from ..io import emidec
    from ..io.pairs import PairFolder
    from ..locate import pixel_size_mm

    path = Path(path)
    acc = {"images": [], "labels": [], "cases": [], "origin": [], "derived_from": [], "pixel_sizes": {}}
    if not path.exists():
        raise LvsegError("no such file or folder", path)
    if not path.is_dir():
        raise LvsegError("is a file: give a folder of EMIDEC cases (Case_X/Images, Case_X/Contours) or pairs", path)
    folder = PairFolder.open(path) if PairFolder.is_pair_folder(path) else None
    records = folder.records() if folder is not None else None
    found = emidec.find_cases(path) if folder is None else None
    if folder is None and not found:
        raise LvsegError("no EMIDEC cases (Case_X/Images, Case_X/Contours) or pairs found", path)
    if cases is not None:   # named cases are checked before any image is read
        present = {r["name"] for r in records} if folder is not None else {case.name for case in found}
        missing = sorted(set(cases) - present)
        if missing:
            raise LvsegError(f"no case or pair named {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}",
                             path)
    for record in records or []:
        if cases is not None and record["name"] not in cases:
            continue
        image, mask, spacing = folder.read_with_spacing(record["name"])
        _add_volume(acc, image, mask, record["name"], record.get("origin", "real"), size, normalization,
                    path / "masks" / record["name"],
                    derived_from=str(record.get("source_case") or record.get("source") or ""), expected=expected,
                    pixel_size=pixel_size_mm(spacing), read_at=read_at)
    for case in found or []:
        if cases is not None and case.name not in cases:
            continue
        image, labels = emidec.read_case(case)
        if labels is None:
            continue  # an unlabelled case cannot train
        _add_volume(acc, image.data, labels.data, case.name, "real", size, normalization, case.labels_path,
                    expected=expected, pixel_size=pixel_size_mm(image.spacing), read_at=read_at)
    if not acc["images"]:
        raise LvsegError("no labelled slices to train on", path)
    return SliceSet(path.name, np.concatenate(acc["images"]), np.concatenate(acc["labels"]),
                    acc["cases"], acc["origin"], acc["derived_from"], acc["pixel_sizes"])


def common_pixel_size(sets, kinds=("real", "corrected")) -> float | None:
    """The pixel size (mm) a new model reads its cases at: the median of what the files of the ``kinds`` of cases
    record, where every one of them records one; None otherwise (the cases are read at their own pixels, and the
    model's card records the LV size alone)."""
    sizes = [s.pixel_sizes.get(case) for s in sets for case in s.case_names()
             if s.origin[s.cases.index(case)] in kinds]
    if not sizes or any(v is None for v in sizes):
        return None
    return float(np.median(sizes))


def mentions_case(text: str, cases) -> bool:
    """Whether ``text`` (a pair's source: case name, file path or layer name) names one of ``cases``
    as a whole word ("Case_N012" is in "/data/Case_N012/Images/Case_N012.nii.gz", not in "Case_N0123")."""
    return any(re.search(rf"(?<![A-Za-z0-9]){re.escape(c)}(?![A-Za-z0-9])", text) for c in cases)


def read_split(path) -> dict:
    """A committed case-level split: JSON {"train": [...], "val": [...], "test": [...]}."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise LvsegError(f"cannot read split file ({exc})", path) from None
    if not isinstance(split, dict) or "train" not in split:
        raise LvsegError("split file needs a 'train' list (and usually 'val', 'test')", path)
    for key in ("train", "val", "test"):
        names = split.get(key, [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise LvsegError(f"split file's {key!r} must be a list of case names, not {names!r}"[:200], path)
    keys = ("train", "val", "test")
    for i, key in enumerate(keys):   # a case on both sides would be scored on what it trained on
        for other in keys[i + 1:]:
            both = sorted(set(split.get(key, [])) & set(split.get(other, [])))
            if both:
                raise LvsegError(f"split file lists {len(both)} case(s) in both {key!r} and {other!r}: "
                                 f"{', '.join(both[:3])}{' ...' if len(both) > 3 else ''}", path)
    return split


def split_cases(names, val_fraction: float, seed: int) -> tuple[list, list]:
    """Case-level train/validation split, stratified by EMIDEC group (normal N / pathological P)."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    groups: dict = {}
    for name in sorted(names):
        groups.setdefault(name.split("_")[-1][:1], []).append(name)
    for members in groups.values():
        members = list(rng.permutation(members))
        n_val = int(round(len(members) * val_fraction)) if len(members) > 1 else 0
        val += members[:n_val]
        train += members[n_val:]
    return sorted(train), sorted(val)


def slice_weights(labels: np.ndarray, rare_boost: float) -> np.ndarray:
    """Sampling weight per slice: slices with infarct or no-reflow drawn ``1 + rare_boost`` times as often."""
    has_infarct = np.any(labels == INFARCT, axis=(1, 2))
    has_no_reflow = np.any(labels == NO_REFLOW, axis=(1, 2))
    weights = 1.0 + rare_boost * 0.5 * has_infarct + rare_boost * has_no_reflow
    return weights / weights.sum()


def epoch_indices(sets, mix, samples: int, seed: int, epoch: int, rare_boost: float = 0.0) -> list:
    """The (set index, slice index) of every sample of one epoch, drawn by the mixing ratio ``mix``.

    Depends only on (seed, epoch): resuming mid-epoch replays the same order.
    """
    rng = np.random.default_rng([seed, epoch, 7])
    mix = np.asarray(mix, dtype=float) / np.sum(mix)
    which = rng.choice(len(sets), size=samples, p=mix)
    out = []
    cache = [slice_weights(s.labels, rare_boost) for s in sets]
    for k, s in enumerate(sets):
        n = int(np.sum(which == k))
        picks = rng.choice(len(s), size=n, p=cache[k])
        out.append([(k, int(i)) for i in picks])
    merged = [pair for group in out for pair in group]
    order = rng.permutation(len(merged))
    return [merged[i] for i in order]
