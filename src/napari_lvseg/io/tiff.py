"""TIFF slices (Y, X) and stacks (Z, Y, X) via tifffile."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import tifffile

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.volume import Volume, atomic_path, captured_log, spacing_of

_COLOUR = {"RGB", "YCBCR", "PALETTE", "CMYK", "SEPARATED"}
# tifffile's log messages that mean pages of the file were not read
_PAGES_LOST = re.compile(r"invalid page offset|invalid offset to (first|next) page|corrupted tag list|"
                         r"invalid next page|circular reference", re.IGNORECASE)


def read_tiff(path) -> Volume:
    """Read the first series of a TIFF file; colour TIFFs are refused."""
    path = Path(path)
    try:
        with captured_log("tifffile") as log, tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            photometric = series.keyframe.photometric
            if photometric is not None and photometric.name in _COLOUR:
                raise LvsegError(f"colour TIFF (photometric {photometric.name}); expected grey-level "
                                 "(a 3- or 4-slice stack must be saved with photometric='minisblack')", path)
            data = series.asarray()
            ij = tif.imagej_metadata or {}
            pixel = _pixel_size(series.keyframe, ij)
            if data.ndim == 2 and "spacing" in ij:   # a one-slice stack: ImageJ's format keeps no axis of length 1
                data = data[None]
    except LvsegError:
        raise
    except FileNotFoundError:
        raise LvsegError("file not found", path) from None
    except Exception as exc:  # tifffile raises several types for damaged files
        raise LvsegError(f"cannot read TIFF ({type(exc).__name__}: {exc})", path) from None
    # A truncated file: tifffile reads the pages before the damage and only logs the rest away. Other errors it logs
    # (a bad private tag, broken ImageJ or OME metadata) it recovers from with every pixel read: those files pass.
    errors = [r.getMessage() for r in log if r.levelno >= logging.ERROR and _PAGES_LOST.search(r.getMessage())]
    if errors:
        reason = re.sub(r"^<[^>]*>\s*", "", errors[0])   # without tifffile's object name
        raise LvsegError(f"damaged TIFF, part of it cannot be read ({reason})", path)
    meta = {"format": "tiff", "source": str(path), "dtype": str(data.dtype), "spacing": pixel}
    return Volume(np.ascontiguousarray(data), meta)


# ImageJ's length units in mm (ImageJ may write µm escaped)
_UNITS_MM = {"mm": 1.0, "cm": 10.0, "m": 1e3, "inch": 25.4, "micron": 1e-3, "um": 1e-3, "\u00b5m": 1e-3,
             "\u03bcm": 1e-3, "\\u00b5m": 1e-3, "nm": 1e-6}


def _pixel_size(page, ij: dict) -> tuple:
    """(z, y, x) voxel size in mm from ImageJ's unit, slice spacing and the resolution tags; all 1 (unknown) without
    a length unit: then the resolution tags are printing dots per inch and the slice spacing is in pixels."""
    z = float(ij.get("spacing", 1.0) or 1.0)
    to_mm = _UNITS_MM.get(str(ij.get("unit", "")).lower())
    if to_mm is None:
        return (1.0, 1.0, 1.0)
    sizes = []
    for tag in ("YResolution", "XResolution"):
        value = page.tags[tag].value if tag in page.tags else (1, 1)
        sizes.append(value[1] / value[0] * to_mm if value[0] else 1.0)
    return (z * to_mm, *sizes)


def write_tiff(path, data: np.ndarray, meta: dict | None = None) -> Path:
    """Write a grey-level slice or stack atomically (one page per slice). A voxel size in ``meta`` other than 1 is
    kept ImageJ's way (unit mm, resolution tags, slice spacing), which Fiji, napari's readers and ours understand."""
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    z, y, x = spacing_of(meta)
    options = {"photometric": "minisblack"}
    if (y, x, z if data.ndim == 3 else 1.0) != (1.0, 1.0, 1.0) and data.dtype in (np.uint8, np.uint16, np.float32):
        info = {"unit": "mm", "axes": "ZYX" if data.ndim == 3 else "YX"}
        if data.ndim == 3:
            info["spacing"] = z
        options.update(imagej=True, resolution=(1.0 / x, 1.0 / y), metadata=info)
    try:
        with atomic_path(path) as tmp:
            tifffile.imwrite(str(tmp), data, **options)
    except OSError as exc:
        raise LvsegError(f"cannot write TIFF ({exc.strerror or exc})", path) from None
    return path
