"""A DICOM series (one file per slice, or enhanced multi-frame files: `dicom_frames`) from a folder, stacked in
anatomical order.

Files are grouped into series by SeriesInstanceUID and, where one UID holds several ImageTypes (magnitude and
PSIR images of one acquisition), by ImageType too. If the folder holds several series (a localiser next to the LGE
stack is common), the one with the most slices is read (ties: the lowest SeriesNumber, then UID), a warning says
which one and what was left out, and ``meta['skipped_series']`` lists the others. A series is refused, not stacked,
where two images share a slice position or where its positions leave a gap (a missing slice): either would be read
as a stack whose slices are not where they seem.

The series' place in patient space travels in ``meta['affine']``: the NIfTI affine (RAS, as nibabel and dcm2niix
write it) from ImagePositionPatient, ImageOrientationPatient, PixelSpacing and the slice positions, so labels
written as NIfTI land where the series lies. A series that does not say where it lies has ``meta['no_affine']``
(why) instead (``meta['placed']`` says whether each slice still gives its own position and one orientation,
as a DICOM SEG needs); `labels_affine` checks labels against the series before they are written in its space.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_lvseg.errors import LvsegError, warn
from napari_lvseg.io.dicom_frames import Frame, frames, image_name, is_multiframe
from napari_lvseg.io.volume import Volume


def is_dicom_file(path) -> bool:
    """Cheap check: the 'DICM' magic at byte 128 (DICOM Part 10 files)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder, limit: int | None = None) -> list[Path]:
    """DICOM files directly in ``folder`` (any names but DICOMDIR, a media index without images), at most ``limit``
    of them."""
    found = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.name.upper() != "DICOMDIR" and is_dicom_file(path):
            found.append(path)
            if limit is not None and len(found) >= limit:
                break
    return found


def is_dicom_folder(folder) -> bool:
    return Path(folder).is_dir() and bool(dicom_files(folder, limit=1))


NESTED_DEPTH = 4   # PATIENT/STUDY/SERIES/images, as media exports (with a DICOMDIR) lay them out
NESTED_FOLDERS = 400   # folders looked into at most: napari asks about any folder opened, a home folder too


def nested_series(folder, depth: int = NESTED_DEPTH, budget: list | None = None) -> list[Path]:
    """The DICOM series folders below ``folder`` (not in it), at most ``depth`` levels down and `NESTED_FOLDERS`
    folders looked into, in name order; a series folder's own sub-folders are not searched. Hidden folders are
    skipped."""
    budget = [NESTED_FOLDERS] if budget is None else budget
    found = []
    try:
        children = sorted(p for p in Path(folder).iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:   # unreadable: nothing found there
        return found
    for child in children:
        if budget[0] <= 0:
            break
        budget[0] -= 1
        try:
            series = is_dicom_folder(child)
        except OSError:   # unreadable: not searched
            continue
        if series:
            found.append(child)
        elif depth > 1:
            found.extend(nested_series(child, depth - 1, budget))
    return found


def _slice_position(ds) -> float | None:
    """Position along the slice normal (row x column direction cosines), or None if not recorded."""
    orientation = getattr(ds, "ImageOrientationPatient", None)
    position = getattr(ds, "ImagePositionPatient", None)
    if orientation is None or position is None or len(orientation) != 6 or len(position) != 3:
        return None
    normal = np.cross(np.array(orientation[:3], float), np.array(orientation[3:], float))
    return float(np.dot(normal, np.array(position, float)))


def _order(datasets: list) -> tuple[list, float | None]:
    """Sort slices by position on the slice normal, else by InstanceNumber; return the slice distance."""
    positions = [_slice_position(ds) for ds in datasets]
    if all(p is not None for p in positions) and len(set(positions)) == len(positions):
        order = np.argsort(positions, kind="stable")
        steps = np.diff(np.sort(positions))
        distance = float(np.median(steps)) if len(steps) else None
        return [datasets[i] for i in order], distance
    numbers = [int(getattr(ds, "InstanceNumber", 0) or 0) for ds in datasets]
    order = np.argsort(numbers, kind="stable")
    return [datasets[i] for i in order], None


# Slices closer than this (mm) along the normal share a position: scanners round positions to about 1e-4 mm.
_SAME_POSITION_MM = 0.01
# A step this many times the smallest one between neighbouring slices leaves room for a missing slice.
_GAP_FACTOR = 1.5
_VALUES = "\\"   # DICOM's separator of a multi-valued element (ORIGINAL\\PRIMARY\\M), as viewers show it


def _image_type(ds) -> tuple:
    value = getattr(ds, "ImageType", None)
    if value is None:
        return ()
    return (str(value),) if isinstance(value, (str, bytes)) else tuple(str(v) for v in value)


def _series_number(ds) -> float:
    try:
        return float(getattr(ds, "SeriesNumber", None))
    except (TypeError, ValueError):
        return float("inf")   # no number: after the numbered ones


def _label(key: tuple, datasets: list, by_type: bool) -> str:
    """How a user finds the series again in a viewer: number, description, UID (image type where it splits a UID)
    and the slice count."""
    uid, image_type = key
    first = datasets[0]
    number = getattr(first, "SeriesNumber", None)
    description = str(getattr(first, "SeriesDescription", "") or "").strip()
    named = " ".join(part for part in (f"series {number}" if number is not None else "series",
                                       f"'{description}'" if description else "") if part)
    kind = f", image type {_VALUES.join(image_type)}" if by_type and image_type else ""
    count = f"{len(datasets)} slice{'s' if len(datasets) != 1 else ''}"
    return f"{named} (UID {uid or 'none'}{kind}, {count})"


def _group(datasets: list) -> dict:
    """(SeriesInstanceUID, ImageType) -> its slices: magnitude and PSIR images may share a UID and positions."""
    groups: dict = defaultdict(list)
    for ds in datasets:
        groups[(str(getattr(ds, "SeriesInstanceUID", "")), _image_type(ds))].append(ds)
    return groups


def _choose(groups: dict) -> tuple:
    """The series to read, the same one whatever the file names: most slices, then the lowest SeriesNumber, UID."""
    return min(groups, key=lambda key: (-len(groups[key]), _series_number(groups[key][0]), key[0], key[1]))


def _check_positions(datasets: list, label: str, others: str, folder: Path) -> None:
    """Refuse a series whose images share a slice position or whose positions leave a gap (one line each)."""
    positions = [_slice_position(ds) for ds in datasets]
    if len(datasets) < 2 or any(p is None for p in positions):
        return   # no positions: the slices are ordered by InstanceNumber, and nothing here can be measured
    order = np.argsort(positions, kind="stable")
    ranked = np.array(positions)[order]
    steps = np.diff(ranked)
    same = np.flatnonzero(steps < _SAME_POSITION_MM)
    if len(same):
        i = int(same[0])
        files = ", ".join(image_name(datasets[order[j]]) for j in (i, i + 1))
        advice = ("export the LGE stack alone" if any(isinstance(ds, Frame) for ds in datasets)
                  else "put each stack in its own folder")
        raise LvsegError(f"{label}: two images at one slice position ({ranked[i]:.2f} mm along the slice normal: "
                         f"{files}): not one stack (several echoes, times or image types?); {advice}{others}",
                         folder)
    spacing = float(steps.min())
    wide = np.flatnonzero(steps > _GAP_FACTOR * spacing)
    if len(wide):
        i = int(wide[0])
        missing = max(1, int(round(steps[i] / spacing)) - 1)
        raise LvsegError(f"{label}: a gap, no slice between {ranked[i]:.2f} and {ranked[i + 1]:.2f} mm along the "
                         f"slice normal where the spacing is {spacing:.2f} mm ({missing} slice(s) missing): read as "
                         f"one stack its slices would be closed up; add the missing file{others}", folder)


# Direction cosines closer than this are one orientation (scanners write them to about 6 decimals).
_SAME_ORIENTATION = 1e-4
# A slice further than this from the even stack through the first and last (mm, or a fraction of the step) is off.
_UNEVEN_MM, _UNEVEN_FRACTION = 0.05, 0.05
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])   # DICOM's patient axes (left, posterior) to NIfTI's (right, anterior)


def _patient_affine(datasets: list, distance: float, pixel: tuple) -> tuple:
    """(affine, None, True): the NIfTI affine of the sorted stack on disk (column i, row j, slice k), voxel (i, j, k)
    going to the patient coordinate of pixel (row j, column i) of slice k, x and y negated (LPS to RAS); or (None,
    why, placed): ``placed`` where each slice says where it lies (one orientation), but no one affine fits them."""
    try:
        orientation = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in datasets])
        position = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in datasets])
    except (AttributeError, TypeError, ValueError):
        return None, "the series has no (or a damaged) ImageOrientationPatient or ImagePositionPatient", False
    if orientation.shape[1:] != (6,) or position.shape[1:] != (3,):
        return None, "the series has a damaged ImageOrientationPatient or ImagePositionPatient", False
    if np.abs(orientation - orientation[0]).max() > _SAME_ORIENTATION:
        return None, "its slices differ in orientation (ImageOrientationPatient)", False
    row_dir, col_dir = orientation[0, :3], orientation[0, 3:]
    if len(datasets) > 1:
        step = (position[-1] - position[0]) / (len(datasets) - 1)
    else:
        step = np.cross(row_dir, col_dir) * distance
    off = np.linalg.norm(position - (position[0] + np.outer(np.arange(len(datasets)), step)), axis=1).max()
    if off > max(_UNEVEN_MM, _UNEVEN_FRACTION * np.linalg.norm(step)):
        return None, (f"its slices do not lie evenly along one line, one is {off:.2f} mm off, so no one affine "
                      "places them all"), True
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = row_dir * pixel[1], col_dir * pixel[0], step, position[0]
    return LPS_TO_RAS @ lps, None, True


def check_series_shape(meta: dict, shape: tuple, path) -> None:
    """Labels of ``shape`` must cover the voxels of the DICOM series ``meta`` describes (a one-line error naming
    ``path`` otherwise); a single slice (Y, X) covers a one-slice series."""
    series = tuple(meta.get("shape") or ())
    if series and tuple(shape) != series and not (len(shape) == 2 and series == (1, *shape)):
        raise LvsegError(f"labels of shape {tuple(shape)} do not match the DICOM series they are written for "
                         f"(shape {series}, {meta.get('source')})", path)


def labels_affine(meta: dict, shape: tuple, path) -> np.ndarray | None:
    """The affine that labels of ``shape`` take from the DICOM series ``meta`` describes (`check_series_shape`).
    None where the series gives no patient position (a warning says so: the labels keep only its voxel size)."""
    check_series_shape(meta, shape, path)
    if meta.get("affine") is None:
        if meta.get("no_affine"):
            warn(f"written without the DICOM series' patient position ({meta['no_affine']}): voxel size only", path)
        return None
    return np.asarray(meta["affine"], dtype=np.float64)


def _damage(ds) -> str | None:
    """Why a file pydicom read leniently is damaged, or None: pydicom returns what it could parse of noise."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:   # every DICOM Part 10 file header names it
        return "its header names no transfer syntax"
    sop = meta.get("MediaStorageSOPClassUID")
    if "PixelData" not in ds and "Image Storage" in str(getattr(sop, "name", "")):
        return "an image file without pixel data"
    return None


def read_dicom_series(folder) -> Volume:
    """Read the (largest) series in ``folder`` as float32 (Z, Y, X) with RescaleSlope/Intercept applied (see the
    module docstring for the choice among several series and the checks of slice positions)."""
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise LvsegError("not a folder", folder)
    images = []
    for path in dicom_files(folder):
        # it carries the DICOM magic, so a file that fails here is a damaged slice, not a stray file: skipping it
        # would silently close the gap it leaves (two slices 16 mm apart read as neighbours)
        try:
            ds = pydicom.dcmread(str(path))
            problem = _damage(ds)
        except Exception as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if problem:
            raise LvsegError(f"{path.name} is a damaged DICOM file ({problem}): repair or remove it", folder)
        if "PixelData" in ds:   # an enhanced file holds a whole stack: one image per frame
            images.extend(frames(ds) if is_multiframe(ds) else [ds])
    if not images:
        raise LvsegError("no DICOM images found in folder", folder)
    series = _group(images)
    by_type = {}   # a UID split by image type is named with it
    for uid, image_type in series:
        by_type[uid] = by_type.get(uid, 0) + 1
    labels = {key: _label(key, series[key], by_type[key[0]] > 1) for key in series}
    chosen = _choose(series)
    left_out = [labels[key] for key in sorted(series, key=lambda k: (_series_number(series[k][0]), k)) if key != chosen]
    others = f"; the folder also holds {len(left_out)} other series" if left_out else ""
    _check_positions(series[chosen], labels[chosen], others, folder)
    if left_out:
        shown = "; ".join(left_out[:5]) + (f"; and {len(left_out) - 5} more" if len(left_out) > 5 else "")
        warn(f"holds {len(series)} series: read {labels[chosen]}; left out {shown}", folder)
    uid = chosen[0]
    datasets, distance = _order(series[chosen])

    slices = []
    for ds in datasets:
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # e.g. a compressed transfer syntax without a decoder installed
            raise LvsegError(f"cannot decode pixels of {image_name(ds)} ({exc})", folder) from None
        if pixels.ndim != 2:
            raise LvsegError(f"{image_name(ds)} is not a single grey-level slice "
                             f"(pixel shape {pixels.shape})", folder)
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        slices.append((pixels.astype(np.float64) * slope + intercept).astype(np.float32))
    shapes = {s.shape for s in slices}
    if len(shapes) > 1:
        raise LvsegError(f"slices of series {uid} differ in size {sorted(shapes)}", folder)

    first = datasets[0]
    try:   # a damaged or empty PixelSpacing is no reason to refuse the images: the size is then unknown (1)
        row, col = (float(v) for v in first.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        row, col = 1.0, 1.0
    if distance is None or distance <= 0:
        distance = float(getattr(first, "SpacingBetweenSlices", 0) or getattr(first, "SliceThickness", 0) or 1.0)
    affine, no_affine, placed = _patient_affine(datasets, distance, (row, col))
    meta = {
        "format": "dicom",
        "source": str(folder),
        "dtype": "float32",
        "series_uid": uid,
        "files": [str(ds.filename) for ds in datasets],
        "sop_instance_uids": [str(getattr(ds, "SOPInstanceUID", "")) for ds in datasets],
        "shape": (len(slices), *slices[0].shape),
        "affine": affine,
        "no_affine": no_affine,
        "placed": placed,   # every slice has its position and one orientation (what a DICOM SEG needs)
        "series": labels[chosen],
        "skipped_series": sorted({key[0] + (f" [{_VALUES.join(key[1])}]" if by_type[key[0]] > 1 else "")
                                  for key in series if key != chosen}),
        "spacing": (float(distance), row, col),
    }
    if any(isinstance(ds, Frame) for ds in datasets):   # each slice's frame number in its multi-frame file
        meta["frames"] = [ds.index + 1 if isinstance(ds, Frame) else None for ds in datasets]
    return Volume(np.stack(slices), meta)
