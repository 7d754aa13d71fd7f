"""EMIDEC case folders: ``Case_X/Images/Case_X.nii.gz`` and optional ``Case_X/Contours/Case_X.nii.gz``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.volume import Volume, check_image, check_labels, check_pair

_NIFTI = (".nii.gz", ".nii")


@dataclass
class EmidecCase:
    name: str
    image_path: Path
    labels_path: Path | None = None


def _nifti_in(folder: Path, name: str) -> Path | None:
    """``folder/<name>.nii[.gz]``, else the only NIfTI file in ``folder``."""
    if not folder.is_dir():
        return None
    for suffix in _NIFTI:
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(_NIFTI)
                   and not p.name.startswith("."))
    return found[0] if len(found) == 1 else None


def is_case_folder(path) -> bool:
    """A folder with an ``Images`` sub-folder holding the case's NIfTI image."""
    path = Path(path)
    return path.is_dir() and _nifti_in(path / "Images", path.name) is not None


def case_problem(path) -> str | None:
    """Why a folder that looks like an EMIDEC case (named Case_*, or holding Images/ or Contours/) is not one; None
    for a case, and for a folder that does not look like one."""
    path = Path(path)
    if not path.is_dir() or is_case_folder(path):
        return None
    if not (path.name.startswith("Case_") or (path / "Images").is_dir() or (path / "Contours").is_dir()):
        return None
    if not (path / "Images").is_dir():
        return f"not an EMIDEC case: no Images folder (expected Images/{path.name}.nii.gz)"
    return f"not an EMIDEC case: its Images folder holds no {path.name}.nii.gz (nor one lone NIfTI image)"


def _case(path: Path) -> EmidecCase:
    return EmidecCase(path.name, _nifti_in(path / "Images", path.name), _nifti_in(path / "Contours", path.name))


def find_cases(root) -> list[EmidecCase]:
    """The cases under a dataset folder (``Case_*`` children), or ``root`` itself if it is a case."""
    root = Path(root)
    if is_case_folder(root):
        return [_case(root)]
    if not root.is_dir():
        return []
    return [_case(p) for p in sorted(root.iterdir()) if is_case_folder(p)]


def is_dataset_folder(path) -> bool:
    path = Path(path)
    return path.is_dir() and not is_case_folder(path) and any(is_case_folder(p) for p in path.glob("Case_*"))


def read_case_image(case: EmidecCase) -> Volume:
    """The image of a case alone (validated); its labels are not read."""
    from napari_lvseg.io.nifti import read_nifti

    image = read_nifti(case.image_path)
    check_image(image.data, case.image_path)
    return image


def read_case(case: EmidecCase) -> tuple[Volume, Volume | None]:
    """Image and labels (uint8, validated) of a case; their shapes must match."""
    from napari_lvseg.io.nifti import read_nifti

    image = read_case_image(case)
    if case.labels_path is None:
        return image, None
    labels = read_nifti(case.labels_path)
    labels.data = check_labels(labels.data, case.labels_path)
    check_pair(image.data, labels.data, case.labels_path)
    return image, labels


def case_from_path(path) -> EmidecCase:
    """The case of a case folder, or a clear error."""
    if not is_case_folder(path):
        raise LvsegError("not an EMIDEC case folder (expected Images/<case>.nii.gz)", path)
    return _case(Path(path))
