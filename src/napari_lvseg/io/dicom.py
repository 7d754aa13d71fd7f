"""A DICOM series (one file per slice) from a folder, stacked in anatomical order.

If the folder holds several series (a localiser next to the LGE stack is common), the series with the
most slices is read and the others are ignored; their UIDs are listed in ``meta['skipped_series']``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from napari_lvseg.errors import LvsegError
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
    """DICOM files directly in ``folder`` (any names), at most ``limit`` of them."""
    found = []
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and is_dicom_file(path):
            found.append(path)
            if limit is not None and len(found) >= limit:
                break
    return found


def is_dicom_folder(folder) -> bool:
    return Path(folder).is_dir() and bool(dicom_files(folder, limit=1))


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
    """Read the (largest) series in ``folder`` as float32 (Z, Y, X) with RescaleSlope/Intercept applied."""
    import pydicom

    folder = Path(folder)
    if not folder.is_dir():
        raise LvsegError("not a folder", folder)
    series = defaultdict(list)
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
        if "PixelData" in ds:
            series[str(getattr(ds, "SeriesInstanceUID", ""))].append(ds)
    if not series:
        raise LvsegError("no DICOM images found in folder", folder)
    uid = max(series, key=lambda key: len(series[key]))
    datasets, distance = _order(series[uid])

    slices = []
    for ds in datasets:
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # e.g. a compressed transfer syntax without a decoder installed
            raise LvsegError(f"cannot decode pixels of {Path(ds.filename).name} ({exc})", folder) from None
        if pixels.ndim != 2:
            raise LvsegError(f"{Path(ds.filename).name} is not a single grey-level slice "
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
    meta = {
        "format": "dicom",
        "source": str(folder),
        "dtype": "float32",
        "series_uid": uid,
        "files": [str(ds.filename) for ds in datasets],
        "skipped_series": sorted(key for key in series if key != uid),
        "spacing": (float(distance), row, col),
    }
    return Volume(np.stack(slices), meta)
