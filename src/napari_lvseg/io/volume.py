"""The in-memory volume, input validation and atomic file writing (numpy only: cheap to import)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.atomic import atomic_path  # noqa: F401  (re-exported: one atomic-write helper)
from napari_lvseg.labels import invalid_values

# Suffixes whose last part alone would not tell a library how to write the file.
_DOUBLE_SUFFIXES = (".nii.gz",)


@dataclass
class Volume:
    """A stack (Z, Y, X) or slice (Y, X), with what is needed to write it back exactly.

    ``meta`` always has ``format``, ``source`` and ``spacing`` ((z, y, x) floats, 1.0 where unknown);
    readers add format-specific keys (NIfTI: ``affine``, ``header``, ``dtype``, ``orientation`` ...).
    """

    data: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def spacing(self) -> tuple:
        return tuple(self.meta.get("spacing", (1.0, 1.0, 1.0)))


_CAPTURE: dict = {}   # thread id -> list of records, kept by the one filter per logger that `captured_log` installs


@contextmanager
def captured_log(name: str):
    """The records library logger ``name`` (tifffile, nibabel.global) logs in this thread while it reads a user's
    file, kept off the terminal (a user sees one line) and handed to the reader, which turns one that matters into
    its error. Other threads' records pass as before. The logger's filter is installed once and never removed:
    adding and removing filters while another thread logs could let that thread's record slip past."""
    import logging
    import threading

    logger = logging.getLogger(name)
    if not any(getattr(f, "_lvseg_capture", False) for f in logger.filters):
        def keep(record) -> bool:   # a logger filter: False keeps the record from every handler
            records = _CAPTURE.get(record.thread)
            if records is None:
                return True
            records.append(record)
            return False

        keep._lvseg_capture = True
        logger.addFilter(keep)
    thread = threading.get_ident()
    outer = _CAPTURE.get(thread)
    _CAPTURE[thread] = records = []
    try:
        yield records
    finally:
        if outer is None:
            _CAPTURE.pop(thread, None)
        else:   # nested: the outer capture goes on
            _CAPTURE[thread] = outer


def spacing_of(meta: dict | None) -> tuple:
    """(z, y, x) voxel size from a Volume's meta, 1 where it says nothing."""
    return ((1.0, 1.0, 1.0) + tuple((meta or {}).get("spacing") or ()))[-3:]


def full_suffix(path) -> str:
    """The file type suffix, lower case, keeping double suffixes such as ``.nii.gz`` whole."""
    name = Path(path).name.lower()
    for suffix in _DOUBLE_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return Path(name).suffix


def _looks_rgb(data: np.ndarray) -> bool:
    # A last axis of 3 or 4 behind two larger axes is colour channels: no MRI slice is 3 pixels wide.
    return data.ndim == 3 and data.shape[-1] in (3, 4) and min(data.shape[:2]) > 4


def check_image(data: np.ndarray, path=None) -> np.ndarray:
    """Reject what is not a grey-level slice or stack: wrong rank, colour, non-numbers, empty."""
    data = np.asanyarray(data)
    if data.dtype.kind not in "biuf":
        raise LvsegError(f"unsupported pixel type {data.dtype}; expected grey-level numbers", path)
    if data.size == 0:
        raise LvsegError(f"image is empty (shape {data.shape})", path)
    if data.ndim not in (2, 3):
        raise LvsegError(f"image has {data.ndim} dimensions {data.shape}; expected a slice (Y, X) "
                         "or a stack (Z, Y, X)", path)
    if _looks_rgb(data):
        raise LvsegError(f"image looks like colour (RGB/RGBA, shape {data.shape}); expected grey-level", path)
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise LvsegError("image contains NaN or infinite values", path)
    return data


def check_labels(data: np.ndarray, path=None) -> np.ndarray:
    """Validate a label slice/stack (values 0..4 only) and return it as uint8."""
    data = np.asanyarray(data)
    if data.dtype.kind not in "biuf":
        raise LvsegError(f"unsupported label type {data.dtype}; expected integers 0..4", path)
    if data.size == 0:
        raise LvsegError(f"labels are empty (shape {data.shape})", path)
    if data.ndim not in (2, 3):
        raise LvsegError(f"labels have {data.ndim} dimensions {data.shape}; expected (Y, X) or (Z, Y, X)",
                         path)
    bad = invalid_values(data)
    if bad:
        shown = ", ".join(str(v) for v in bad[:8]) + (" ..." if len(bad) > 8 else "")
        raise LvsegError(f"label values must be integers 0..4; found {shown}", path)
    return data.astype(np.uint8, copy=False)


def check_pair(image: np.ndarray, labels: np.ndarray, path=None) -> None:
    """Image and labels must cover the same voxels."""
    if tuple(np.shape(image)) != tuple(np.shape(labels)):
        raise LvsegError(f"image shape {tuple(np.shape(image))} and label shape "
                         f"{tuple(np.shape(labels))} differ", path)
