"""Labels as a DICOM Segmentation (SEG) of the series they were made from, with highdicom (the ``dicom`` extra).

One segment per class 1..4 (names and colours from `labels`, SNOMED CT concepts), one frame per slice and segment,
each frame referencing its source image (SOPInstanceUID; for a series read from an enhanced multi-frame file, the
file and its frame) and placed where that image lies; the SEG shares the series' study, patient and frame of
reference. Only labels of a DICOM series read here (`read_dicom_series` meta,
which lists its files) can be written: the source images are read again, and must be the ones the labels were made
from.
"""

from __future__ import annotations

from pathlib import Path

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError
from napari_lvseg.io.atomic import atomic_path
from napari_lvseg.io.volume import check_labels

INSTALL = 'DICOM SEG export needs highdicom: pip install "napari-lvseg[dicom]"'
SERIES_DESCRIPTION = "LV segmentation (napari-lvseg)"
# (segmented property category, segmented property type), SNOMED CT: (value, meaning)
_ANATOMY = ("91723000", "Anatomical Structure")
_ABNORMAL = ("49755003", "Morphologically Abnormal Structure")
CONCEPTS = {
    lb.CAVITY: (_ANATOMY, ("87878005", "Left ventricle")),   # labelled "LV cavity": the blood pool
    lb.MYOCARDIUM: (_ANATOMY, ("49848007", "Left ventricle myocardium")),
    lb.INFARCT: (_ABNORMAL, ("55641003", "Infarct")),
    lb.NO_REFLOW: (_ABNORMAL, ("26036001", "Obstruction")),   # microvascular obstruction
}


def _code(pair):
    from pydicom.sr.coding import Code

    value, meaning = pair
    return Code(value, "SCT", meaning)


def segment_descriptions(model: str | None = None, edited: bool = False) -> list:
    """highdicom SegmentDescriptions of classes 1..4: AUTOMATIC with ``model`` named, SEMIAUTOMATIC where a
    model's labels may have been edited by hand, MANUAL without a model."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import napari_lvseg

    kind, algorithm = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    if model:
        kind = (hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC if edited
                else hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC)
        algorithm = hd.AlgorithmIdentificationSequence(name=str(model)[:64], version=napari_lvseg.__version__,
                                                       family=codes.cid7162.ArtificialIntelligence)
    descriptions = []
    for value in lb.FOREGROUND:
        category, kind_of = CONCEPTS[value]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=value, segment_label=lb.NAMES[value], segmented_property_category=_code(category),
            segmented_property_type=_code(kind_of), algorithm_type=kind, algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in lb.COLORS[value][:3]))))
    return descriptions


def _sources(meta: dict, path) -> list:
    """The series' images (headers only), in the labels' slice order, checked to be the ones read."""
    import pydicom

    uids = meta.get("sop_instance_uids") or [None] * len(meta["files"])
    sources = []
    for name, uid in zip(meta["files"], uids):
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception as exc:   # gone, unreadable: the SEG could not reference it
            raise LvsegError(f"cannot read the series image {name} the labels were made from "
                             f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})", path) from None
        if uid and str(getattr(ds, "SOPInstanceUID", "")) != uid:
            raise LvsegError(f"the series image {name} has changed since it was read (another SOPInstanceUID): "
                             "open the series again", path)
        sources.append(ds)
    return sources


def _frame_sources(meta: dict, path):
    """The multi-frame file a series was read from (header only, checked to be the one read) and each slice's
    highdicom PlanePositionSequence: highdicom references the source frames by position, so that a file's other
    frames (phase images beside magnitude ones, at the same positions) need no labels."""
    import highdicom as hd

    from napari_lvseg.io.dicom_frames import Frame

    source = _sources({"files": meta["files"][:1], "sop_instance_uids": meta.get("sop_instance_uids", [None])[:1]},
                      path)[0]
    positions = []
    for number in meta["frames"]:
        position = getattr(Frame(source, number - 1, {}), "ImagePositionPatient", None)
        if position is None:   # `placed` says every frame has one; a file changed since is caught here
            raise LvsegError(f"frame {number} of {Path(meta['files'][0]).name} gives no patient position: save the "
                             "labels as NIfTI instead", path)
        positions.append(hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in position]))
    return source, positions


def check_seg(meta: dict | None, path) -> None:
    """Refuse, before any work, a SEG that could not be written: highdicom missing, labels of no DICOM series, a
    series that does not say where it lies, a series spread over several multi-frame files."""
    meta = meta or {}
    if meta.get("frames") and (None in meta["frames"] or len(set(meta.get("files") or ())) > 1):
        # a SEG references either single-frame images or exactly one multi-frame image
        raise LvsegError("DICOM SEG is not written for a series spread over several multi-frame (enhanced) DICOM "
                         "files; save the labels as NIfTI instead (they keep the series' patient position)", path)
    try:
        import highdicom  # noqa: F401
    except ImportError:
        raise LvsegError(INSTALL, path) from None
    if meta.get("format") != "dicom" or not meta.get("files"):
        raise LvsegError("DICOM SEG is written only for labels made from a DICOM series (open the series folder, "
                         "segment it, then save)", path)
    if not meta.get("placed", meta.get("affine") is not None):
        raise LvsegError(f"cannot write DICOM SEG: {meta.get('no_affine') or 'the series gives no patient position'}"
                         "; save the labels as NIfTI instead", path)


def write_seg(path, labels, meta: dict | None, model: str | None = None, edited: bool = False) -> Path:
    """Write ``labels`` (Z, Y, X) of the DICOM series ``meta`` describes as a DICOM SEG file, atomically."""
    from napari_lvseg.io.dicom import check_series_shape

    path = Path(path)
    check_seg(meta, path)
    import highdicom as hd

    labels = check_labels(labels, path)
    check_series_shape(meta, labels.shape, path)
    labels = labels.reshape(tuple(meta["shape"]))
    if meta.get("frames"):   # one multi-frame file: its frames are found by position
        source, positions = _frame_sources(meta, path)
        sources, placed = [source], {"plane_positions": positions}
    else:
        sources, placed = _sources(meta, path), {}
    first = sources[0]
    try:
        number = int(getattr(first, "SeriesNumber", 0) or 0) + 1000
    except (TypeError, ValueError):
        number = 1000
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=segment_descriptions(model, edited), series_instance_uid=hd.UID(),
            series_number=number, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="napari-lvseg",
            manufacturer_model_name=str(model or "napari-lvseg")[:64], software_versions=_version(),
            device_serial_number="0", content_label="LVSEG", series_description=SERIES_DESCRIPTION,
            content_description="LV cavity, normal myocardium, infarct, no-reflow",
            omit_empty_frames=False,   # every slice of every segment: each source image referenced, none left out
            **placed)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:   # what highdicom says of a series it refuses
        raise LvsegError(f"cannot write DICOM SEG for this series ({str(exc).splitlines()[0]})", path) from None
    try:
        with atomic_path(path) as tmp:
            seg.save_as(str(tmp), enforce_file_format=True)
    except OSError as exc:
        raise LvsegError(f"cannot write DICOM SEG ({exc.strerror or exc})", path) from None
    return path


def _version() -> str:
    import napari_lvseg

    return f"napari-lvseg {napari_lvseg.__version__}"

