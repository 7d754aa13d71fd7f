"""napari single-layer writers for label maps (npe2 signature ``(path, data, attributes) -> [path]``).

A layer opened from a NIfTI file keeps its reader's record of the file (`layer_meta.source`); writing it back as
NIfTI restores that file's affine, header and axis order exactly; a layer of a DICOM series is written as NIfTI in the
series' patient space (its affine), or as a DICOM SEG (.dcm) that references the series' images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_lvseg import layer_meta
from napari_lvseg.io import NIFTI_SUFFIXES, TIFF_SUFFIXES, full_suffix, write_labels


def _source_meta(attributes: dict | None) -> dict | None:
    """The layer's source file meta; for a layer made in napari, its scale as the voxel size (z, y, x in mm)."""
    meta = layer_meta.source((attributes or {}).get("metadata") or {})
    if meta is not None:
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


def write_labels_dicom_seg(path: str, data, attributes: dict) -> list[str]:
    """Write a Labels layer of a DICOM series as a DICOM SEG (.dcm) referencing the series' images (needs the
    ``dicom`` extra). Labels a model made are SEMIAUTOMATIC once edited, AUTOMATIC as predicted."""
    from napari_lvseg.io.dicom_seg import write_seg

    path = _with_suffix(path, (".dcm",), ".dcm")
    metadata = (attributes or {}).get("metadata") or {}
    prediction = layer_meta.prediction(metadata)
    edited = prediction is None or not np.array_equal(np.asarray(prediction), np.asarray(data))
    write_seg(path, data, layer_meta.source(metadata), model=layer_meta.model(metadata), edited=edited)
    return [str(path)]
