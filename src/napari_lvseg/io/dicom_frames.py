"""Enhanced (multi-frame) DICOM: one file that holds a whole stack, read as one slice per frame.

Enhanced MR Image Storage (how Siemens XA, Philips and other scanners often export an LGE series) keeps each frame's
place, pixel size and intensity scaling in functional groups: per frame (PerFrameFunctionalGroupsSequence) or
shared by all frames (SharedFunctionalGroupsSequence). `frames` turns such a file into one `Frame` per frame that
carries the attributes a single-frame image has (ImagePositionPatient, ImageOrientationPatient, PixelSpacing,
SliceThickness, SpacingBetweenSlices, RescaleSlope/Intercept, and the frame's FrameType as its ImageType, so that
magnitude and phase frames form separate stacks), so the series reader groups, orders and checks frames exactly as
it does files.
"""

from __future__ import annotations

from pathlib import Path

# a single-frame image's attribute: (the functional group sequence that holds it, its name there)
_FROM_GROUPS = {
    "ImagePositionPatient": ("PlanePositionSequence", "ImagePositionPatient"),
    "ImageOrientationPatient": ("PlaneOrientationSequence", "ImageOrientationPatient"),
    "PixelSpacing": ("PixelMeasuresSequence", "PixelSpacing"),
    "SliceThickness": ("PixelMeasuresSequence", "SliceThickness"),
    "SpacingBetweenSlices": ("PixelMeasuresSequence", "SpacingBetweenSlices"),
    "RescaleSlope": ("PixelValueTransformationSequence", "RescaleSlope"),
    "RescaleIntercept": ("PixelValueTransformationSequence", "RescaleIntercept"),
    "ImageType": ("MRImageFrameTypeSequence", "FrameType"),
}
_FROM_FILE = ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "SOPInstanceUID", "filename")


def frame_count(ds) -> int:
    try:
        return int(getattr(ds, "NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return 1


def is_multiframe(ds) -> bool:
    """A file whose frames are described by functional groups (or that simply holds several frames)."""
    return frame_count(ds) > 1 or "PerFrameFunctionalGroupsSequence" in ds


def image_name(image) -> str:
    """How a message names an image: its file, and the frame where the file holds several."""
    return getattr(image, "frame_name", None) or Path(image.filename).name


def _from_group(groups, index: int, sequence: str, keyword: str):
    if groups is None or len(groups) <= index:
        return None
    items = getattr(groups[index], sequence, None)
    return getattr(items[0], keyword, None) if items else None


class Frame:
    """One frame of a multi-frame file, with the attributes the series reader reads of a single-frame image."""

    def __init__(self, ds, index: int, decoded: dict):
        self.index = index
        self.InstanceNumber = index + 1   # the order to fall back on where frames give no position
        for keyword in _FROM_FILE:
            if hasattr(ds, keyword):
                setattr(self, keyword, getattr(ds, keyword))
        per_frame = getattr(ds, "PerFrameFunctionalGroupsSequence", None)
        shared = getattr(ds, "SharedFunctionalGroupsSequence", None)
        for keyword, (sequence, inner) in _FROM_GROUPS.items():
            value = _from_group(per_frame, index, sequence, inner)
            if value is None:
                value = _from_group(shared, 0, sequence, inner)
            if value is None:
                value = getattr(ds, keyword, None)   # some writers repeat it at the top level
            if value is not None:
                setattr(self, keyword, value)
        self.frame_name = f"{Path(ds.filename).name} frame {index + 1}"
        self._ds, self._decoded = ds, decoded

    @property
    def pixel_array(self):
        """This frame's pixels; the file is decoded once for all its frames."""
        if "pixels" not in self._decoded:
            pixels = self._ds.pixel_array
            self._decoded["pixels"] = pixels if frame_count(self._ds) > 1 else pixels[None]
        return self._decoded["pixels"][self.index]


def frames(ds) -> list[Frame]:
    """The frames of a multi-frame file, in file order."""
    decoded: dict = {}
    return [Frame(ds, index, decoded) for index in range(frame_count(ds))]
