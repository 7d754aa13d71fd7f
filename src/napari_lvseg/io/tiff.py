"""TIFF slices (Y, X) and stacks (Z, Y, X) via tifffile."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.volume import Volume, atomic_path

_COLOUR = {"RGB", "YCBCR", "PALETTE", "CMYK", "SEPARATED"}


def read_tiff(path) -> Volume:
    """Read the first series of a TIFF file; colour TIFFs are refused."""
    path = Path(path)
    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            photometric = series.keyframe.photometric
            if photometric is not None and photometric.name in _COLOUR:
                raise LvsegError(f"colour TIFF (photometric {photometric.name}); expected grey-level "
                                 "(a 3- or 4-slice stack must be saved with photometric='minisblack')", path)
            data = series.asarray()
            ij = tif.imagej_metadata or {}
    except LvsegError:
        raise
    except FileNotFoundError:
        raise LvsegError("file not found", path) from None
    except Exception as exc:  # tifffile raises several types for damaged files
        raise LvsegError(f"cannot read TIFF ({type(exc).__name__}: {exc})", path) from None
    z_spacing = float(ij.get("spacing", 1.0) or 1.0)
    meta = {"format": "tiff", "source": str(path), "dtype": str(data.dtype),
            "spacing": (z_spacing, 1.0, 1.0)}
    return Volume(np.ascontiguousarray(data), meta)


def write_tiff(path, data: np.ndarray, meta: dict | None = None) -> Path:
    """Write a grey-level slice or stack atomically (one page per slice)."""
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    try:
        with atomic_path(path) as tmp:
            tifffile.imwrite(str(tmp), data, photometric="minisblack")
    except OSError as exc:
        raise LvsegError(f"cannot write TIFF ({exc.strerror or exc})", path) from None
    return path
