"""Reading and writing images and label maps: NIfTI, TIFF, DICOM series, EMIDEC case folders.

Everything returns a :class:`Volume` with data (Z, Y, X) or (Y, X). Format modules (nibabel,
tifffile, pydicom) are imported only when a file of that kind is touched, so this import stays cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.volume import Volume, atomic_path, check_image, check_labels, check_pair, full_suffix, spacing_of

__all__ = [
    "Volume", "atomic_path", "check_image", "check_labels", "check_pair", "full_suffix",
    "read_image", "read_labels", "write_image", "write_labels", "image_kind", "folder_sources", "folder_walk",
    "spacing_of",
    "NIFTI_SUFFIXES", "TIFF_SUFFIXES",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
TIFF_SUFFIXES = (".tif", ".tiff")


def image_kind(path) -> str | None:
    """'nifti', 'tiff', 'emidec-case', 'emidec-dataset', 'dicom' (folder), 'dicom-file' or None."""
    from napari_lvseg.io import emidec

    path = Path(path)
    if path.is_dir():
        if emidec.is_case_folder(path):
            return "emidec-case"
        if emidec.is_dataset_folder(path):
            return "emidec-dataset"
        from napari_lvseg.io.dicom import is_dicom_folder

        return "dicom" if is_dicom_folder(path) else None
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix == ".dcm" and path.parent.is_dir():
        return "dicom-file"
    from napari_lvseg.io.dicom import is_dicom_file

    return "dicom-file" if path.is_file() and is_dicom_file(path) else None   # scanners' names: IM0001, no suffix


def folder_sources(folder, dicom_series: bool = True) -> list[Path]:
    """What a folder holds to segment, each readable by :func:`read_image`: its EMIDEC case folders if it has any,
    else its NIfTI/TIFF images and (with ``dicom_series``) its DICOM series sub-folders; where it holds none of
    these, the DICOM series folders further down (`dicom.nested_series`). Hidden entries are skipped."""
    return folder_walk(folder, dicom_series)[0]


def folder_walk(folder, dicom_series: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """`folder_sources`, and (path, why) for each entry left out that looks meant to be segmented: a folder that
    looks like an EMIDEC case and is not one (the folder itself too), an image beside case folders. Other files
    (notes, tables) and folders without images are left alone unreported."""
    from napari_lvseg.io.emidec import case_problem, find_cases

    folder = Path(folder)
    cases = [case.image_path.parent.parent for case in find_cases(folder)]
    if cases == [folder]:
        return cases, []
    entries = [p for p in sorted(folder.iterdir()) if not p.name.startswith(".")]
    wanted = ("nifti", "tiff", "dicom") if dicom_series else ("nifti", "tiff")
    sources = cases or [p for p in entries if image_kind(p) in wanted]
    if not sources and dicom_series:   # a scanner's or PACS export: series folders further down
        from napari_lvseg.io.dicom import nested_series

        sources = nested_series(folder)
    problem = None if sources else case_problem(folder)
    if problem:   # e.g. a case folder without its Images folder
        return [], [(folder, problem)]
    skipped = []
    for p in entries:
        why = None if p in sources else case_problem(p)
        if why is None and cases and p not in cases and image_kind(p) in ("nifti", "tiff", "dicom"):
            why = "an image beside EMIDEC case folders, where only the cases are segmented: segment it on its own"
        if why:
            skipped.append((p, why))
    return sources, skipped


def _read_any(path, want_labels: bool) -> Volume:
    path = Path(path)
    if not path.exists():
        raise LvsegError("file not found", path)
    kind = image_kind(path)
    if kind == "nifti":
        from napari_lvseg.io.nifti import read_nifti

        return read_nifti(path)
    if kind == "tiff":
        from napari_lvseg.io.tiff import read_tiff

        return read_tiff(path)
    if kind in ("dicom", "dicom-file"):  # one file of a series opens the whole series
        from napari_lvseg.io.dicom import read_dicom_series

        return read_dicom_series(path if kind == "dicom" else path.parent)
    if kind == "emidec-case":
        from napari_lvseg.io.emidec import case_from_path, read_case, read_case_image

        case = case_from_path(path)
        if not want_labels:
            return read_case_image(case)
        if case.labels_path is None:
            raise LvsegError("EMIDEC case has no Contours/<case>.nii.gz labels", path)
        return read_case(case)[1]
    if kind == "emidec-dataset":
        raise LvsegError("folder holds several EMIDEC cases; open one Case_* folder", path)
    if path.is_dir():
        raise LvsegError("folder is neither an EMIDEC case nor a DICOM series", path)
    raise LvsegError(f"unsupported file type '{full_suffix(path) or path.name}' "
                     "(expected .nii, .nii.gz, .tif, .tiff, a DICOM folder or an EMIDEC case folder)", path)


def read_image(path) -> Volume:
    """Read a grey-level slice/stack (validated: 2-D or 3-D, not colour, finite, not empty)."""
    volume = _read_any(path, want_labels=False)
    check_image(volume.data, path)
    return volume


def read_labels(path) -> Volume:
    """Read a label map; values must be integers 0..4. Data comes back as uint8."""
    volume = _read_any(path, want_labels=True)
    volume.data = check_labels(volume.data, path)
    return volume


def _writer(path):
    suffix = full_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        from napari_lvseg.io.nifti import write_nifti

        return write_nifti
    if suffix in TIFF_SUFFIXES:
        from napari_lvseg.io.tiff import write_tiff

        return write_tiff
    raise LvsegError(f"cannot write '{suffix or Path(path).name}' files (use .nii.gz, .nii, .tif or .tiff)", path)


def write_image(path, data: np.ndarray, meta: dict | None = None) -> Path:
    """Write an image atomically; the format follows the extension. NIfTI ``meta`` restores the header."""
    writer = _writer(path)
    check_image(data, path)
    return writer(path, np.asarray(data), meta)


def write_labels(path, labels: np.ndarray, meta: dict | None = None) -> Path:
    """Write a label map atomically as uint8 (values checked to be 0..4)."""
    writer = _writer(path)
    return writer(path, check_labels(labels, path), meta)
