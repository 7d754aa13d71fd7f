"""napari reader: NIfTI, TIFF, DICOM series folders (and media exports of them) and EMIDEC case/dataset folders ->
layers.

Bad input raises LvsegError (one line naming the file), which napari shows as a notification.
"""

from __future__ import annotations

from pathlib import Path

from napari_lvseg import layer_meta
from napari_lvseg.io import check_image, check_labels, image_kind, read_image, spacing_of


def labels_layer_kwargs() -> dict:
    """napari Labels kwargs with the project's fixed class colours."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_lvseg.labels import napari_colormap

    return {"colormap": DirectLabelColormap(color_dict=napari_colormap())}


def layer_scale(meta: dict | None, ndim: int) -> dict:
    """napari ``scale`` kwargs from a file's voxel size (z, y, x in mm), so that napari measures in mm and the
    Segment panel's quantification gives mm² and mm³; {} when the file gives no size."""
    scale = tuple(float(s) for s in spacing_of(meta)[-ndim:])
    return {"scale": scale} if all(s > 0 for s in scale) and any(s != 1.0 for s in scale) else {}


def _labels_layer(volume, name: str, image_source: str | None = None, **kwargs) -> tuple:
    metadata = layer_meta.file_metadata(volume.meta, image_source, labels=True)
    return volume.data, {"name": name, "metadata": metadata, **labels_layer_kwargs(),
                         **layer_scale(volume.meta, volume.data.ndim), **kwargs}, "labels"


def _image_layer(volume, name: str, **kwargs) -> tuple:
    return volume.data, {"name": name, "metadata": layer_meta.file_metadata(volume.meta),
                         **layer_scale(volume.meta, volume.data.ndim), **kwargs}, "image"


def _case_layers(case, visible: bool = True) -> list[tuple]:
    from napari_lvseg.io.emidec import read_case

    image, labels = read_case(case)
    layers = [_image_layer(image, case.name, visible=visible)]
    if labels is not None:
        # tied to the case's image file, as a prediction is: the Correct panel then refuses to save these labels
        # with another case's image, and its labels picker follows a newly opened case
        layers.append(_labels_layer(labels, f"{case.name} labels", image.meta.get("source"), visible=visible))
    return layers


def _stem(path: Path) -> str:
    from napari_lvseg.io import full_suffix

    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def read_path(path) -> list[tuple]:
    """LayerData tuples for one path (what :func:`get_reader` returns, applied to the path)."""
    from napari_lvseg.io import emidec

    path = Path(path)
    kind = image_kind(path)
    if kind == "emidec-case":
        return _case_layers(emidec.case_from_path(path))
    if kind == "emidec-dataset":
        # Every case, only the first shown: the stacks differ in depth and would overlap otherwise.
        cases = emidec.find_cases(path)
        return [layer for i, case in enumerate(cases) for layer in _case_layers(case, visible=i == 0)]
    if kind in ("nifti", "tiff"):
        from napari_lvseg.io.nifti import looks_like_labels, read_nifti
        from napari_lvseg.io.tiff import read_tiff

        volume = read_nifti(path) if kind == "nifti" else read_tiff(path)
        # EMIDEC's NIfTI label maps may be stored as floats; a TIFF label map is an integer one (as saved here)
        if looks_like_labels(volume) and (kind == "nifti" or volume.data.dtype.kind in "biu"):
            volume.data = check_labels(volume.data, path)
            return [_labels_layer(volume, _stem(path))]
        check_image(volume.data, path)
        return [_image_layer(volume, _stem(path))]
    series = _export_series(path) if kind is None else []
    if series:
        return _export_layers(path, series)
    name = path.parent.name if kind == "dicom-file" else _stem(path) if path.is_file() else path.name
    return [_image_layer(read_image(path), name)]


def _export_series(path: Path) -> list[Path]:
    """The DICOM series folders further down a folder that holds no images of its own (a media export)."""
    from napari_lvseg.io.dicom import nested_series

    return nested_series(path) if path.is_dir() else []


def _export_layers(path: Path, found: list[Path]) -> list[tuple]:
    """Every series ``found`` in a media export that reads as one stack, named by its path, the first one shown; the
    others (a cine's phases at one position, a damaged file) are named in one warning. None readable: one error."""
    from napari_lvseg.errors import LvsegError, warn

    layers, refused = [], []
    for series in found:
        name = "/".join(series.relative_to(path).parts)
        try:
            layers.append(_image_layer(read_image(series), name, visible=not layers))
        except LvsegError as exc:
            refused.append(f"{name} ({exc.message})")
    if not layers:
        raise LvsegError(f"no series of this export reads as one stack: {'; '.join(refused)}", path)
    if refused:
        warn(f"opened {len(layers)} series; left out {len(refused)}: {'; '.join(refused)}", path)
    return layers


def _read_paths(paths) -> list[tuple]:
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return [layer for path in paths for layer in read_path(path)]


def get_reader(path):
    """The reader function for ``path`` (str or list of str), or None when the path is not ours."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or any(image_kind(p) is None and not _export_series(Path(p)) for p in paths):
        return None
    return _read_paths
