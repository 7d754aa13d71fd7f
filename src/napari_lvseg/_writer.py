"""napari single-layer writers for label maps (npe2 signature ``(path, data, attributes) -> [path]``).

A layer opened from a NIfTI file keeps ``metadata['lvseg_source']``; writing it back as NIfTI restores
that file's affine, header and axis order exactly.
"""

from __future__ import annotations

from pathlib import Path

from napari_lvseg.io import NIFTI_SUFFIXES, TIFF_SUFFIXES, full_suffix, write_labels


def _source_meta(attributes: dict | None) -> dict | None:
    """The layer's source file meta; for a layer made in napari, its scale as the voxel size (z, y, x in mm)."""
    metadata = (attributes or {}).get("metadata") or {}
    meta = metadata.get("lvseg_source")
    if isinstance(meta, dict):
        return meta
    scale = (attributes or {}).get("scale")
    return {"spacing": tuple(float(s) for s in scale)} if scale is not None and len(scale) else None


def _with_suffix(path, allowed: tuple, default: str) -> Path:
    path = Path(path)
    return path if full_suffix(path) in allowed else path.with_name(path.name + default)


def write_labels_nifti(path: str, data, attributes: dict) -> list[str]:
    """Write a Labels layer as uint8 NIfTI (.nii.gz unless the path says .nii)."""
    path = _with_suffix(path, NIFTI_SUFFIXES, ".nii.gz")
    write_labels(path, data, _source_meta(attributes))
    return [str(path)]


def write_labels_tiff(path: str, data, attributes: dict) -> list[str]:
    """Write a Labels layer as a uint8 TIFF slice or stack."""
    path = _with_suffix(path, TIFF_SUFFIXES, ".tif")
    write_labels(path, data, _source_meta(attributes))
    return [str(path)]
