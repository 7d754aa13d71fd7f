"""NIfTI read/write with an exact round trip: (X, Y, Z) on disk <-> (Z, Y, X) in memory."""

from __future__ import annotations

import io as _io
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.volumeutils import apply_read_scaling

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.volume import Volume, atomic_path, captured_log, spacing_of
from napari_lvseg.labels import N_CLASSES

ORIENTATION = "xyz->zyx"
_MAX_LABEL_VALUES = N_CLASSES


def _to_memory(disk: np.ndarray) -> np.ndarray:
    """(X, Y[, Z, 1, ...]) -> (Z, Y, X) or (Y, X); trailing singleton axes past the third are dropped."""
    while disk.ndim > 3 and disk.shape[-1] == 1:
        disk = disk[..., 0]
    return np.ascontiguousarray(disk.transpose(tuple(reversed(range(disk.ndim)))))


def _to_disk(data: np.ndarray, disk_shape=None) -> np.ndarray:
    disk = data.transpose(tuple(reversed(range(data.ndim))))
    if disk_shape is not None and tuple(disk_shape[: disk.ndim]) == disk.shape:
        disk = disk.reshape(tuple(disk_shape))  # restores dropped trailing singleton axes
    return disk


def read_nifti(path) -> Volume:
    """Read a .nii/.nii.gz file as (Z, Y, X) (or (Y, X) for a 2-D file); scaling applied."""
    path = Path(path)
    try:
        with captured_log("nibabel.global"):   # its notes on header fixes (pixdim 0 set to 1): not the user's line
            img = nib.load(str(path))
            data = np.asanyarray(img.dataobj)
    except FileNotFoundError:
        raise LvsegError("file not found", path) from None
    except Exception as exc:  # nibabel raises many types for damaged files
        raise LvsegError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise LvsegError(f"not a NIfTI image ({type(img).__name__})", path)
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0, 1.0, 1.0]
    x, y, z = (s if s > 0 else 1.0 for s in zooms[:3])
    proxy = img.dataobj
    meta = {
        "format": "nifti",
        "source": str(path),
        "affine": np.array(img.affine, dtype=np.float64),
        "header": img.header.binaryblock,
        "dtype": str(data.dtype),
        "disk_dtype": str(img.get_data_dtype()),
        "disk_shape": tuple(int(s) for s in img.shape),
        "slope": float(getattr(proxy, "slope", 1.0)),
        "inter": float(getattr(proxy, "inter", 0.0)),
        "orientation": ORIENTATION,
        "spacing": (z if len(img.shape) >= 3 else 1.0, y, x),
    }
    return Volume(_to_memory(data), meta)


def _header_from_meta(meta: dict):
    block = meta["header"]
    cls = nib.Nifti2Header if len(block) == nib.Nifti2Header.template_dtype.itemsize else nib.Nifti1Header
    return cls.from_fileobj(_io.BytesIO(block), check=False)


def _image_from_meta(disk: np.ndarray, meta: dict):
    """Rebuild the image with the source's header and affine, re-applying its scaling when exact."""
    header = _header_from_meta(meta)
    image_class = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    slope, inter = meta.get("slope", 1.0), meta.get("inter", 0.0)
    disk_dtype = np.dtype(meta.get("disk_dtype", disk.dtype))
    if (slope, inter) != (1.0, 0.0) and disk.dtype.kind == "f" and disk_dtype.kind in "iu":
        # Scaled integer source: write the raw integers back if that reproduces these exact values.
        raw = np.round((disk.astype(np.float64) - inter) / slope)
        info = np.iinfo(disk_dtype)
        if raw.min() >= info.min and raw.max() <= info.max:
            raw = raw.astype(disk_dtype)
            if np.array_equal(apply_read_scaling(raw, slope, inter).astype(disk.dtype), disk):
                img = image_class(raw, meta["affine"], header)
                img.header.set_data_dtype(disk_dtype)
                img.header.set_slope_inter(slope, inter)  # set after creation: the constructor resets it
                return img
    img = image_class(disk, meta["affine"], header)
    img.header.set_data_dtype(disk.dtype)
    return img


def write_nifti(path, data: np.ndarray, meta: dict | None = None) -> Path:
    """Write (Z, Y, X)/(Y, X) ``data`` atomically; ``meta`` from :func:`read_nifti` restores the header."""
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == bool:
        data = data.astype(np.uint8)
    if meta and meta.get("format") == "nifti" and "header" in meta:
        img = _image_from_meta(_to_disk(data, meta.get("disk_shape")), meta)
    else:   # from DICOM or TIFF: keep at least the voxel size, (z, y, x) in meta, (x, y, z) on disk
        z, y, x = spacing_of(meta)
        affine = None
        if meta and meta.get("format") == "dicom":   # the series' patient space, as dcm2niix writes it
            from napari_lvseg.io.dicom import labels_affine

            affine = labels_affine(meta, data.shape, path)
        img = nib.Nifti1Image(_to_disk(data), np.diag([x, y, z if data.ndim == 3 else 1.0, 1.0]) if affine is None
                              else affine)
        if affine is not None:   # scanner coordinates, in the sform and (as far as it can say it) the qform
            img.set_sform(affine, code=1)
            img.set_qform(affine, code=1)
        img.header.set_data_dtype(data.dtype)
    try:
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))
    except OSError as exc:
        raise LvsegError(f"cannot write NIfTI ({exc.strerror or exc})", path) from None
    return path


def looks_like_labels(volume) -> bool:
    """True for integer-valued data whose few distinct values all lie in 0..4 (a label map)."""
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    if data.dtype.kind not in "biuf" or data.size == 0:
        return False
    if data.dtype.kind == "f":
        if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
            return False
    values = np.unique(data)
    return len(values) <= _MAX_LABEL_VALUES and values.min() >= 0 and values.max() < N_CLASSES
