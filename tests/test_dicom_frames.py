"""Enhanced (multi-frame) DICOM files: a whole stack in one file, read as a series of slices (io.dicom_frames)."""

import importlib.util

import numpy as np
import pytest

from napari_lvseg.errors import LvsegError
from napari_lvseg.io import read_image
from napari_lvseg.io.dicom import read_dicom_series
from napari_lvseg.io.dicom_seg import check_seg

ROW = np.array([1.0, 0.0, 0.0])
COL = np.array([0.0, np.cos(0.4), -np.sin(0.4)])
NORMAL = np.cross(ROW, COL)


def _item(**values):
    from pydicom.dataset import Dataset

    item = Dataset()
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def write_enhanced(path, frames, positions, *, frame_types=None, slope=2.0, intercept=-5.0, spacing=(0.7, 0.8),
                   per_frame_rescale=True, series_uid="1.2.840.1"):
    """An Enhanced MR Image Storage file: ``frames`` (F, Y, X) at ``positions`` (F, 3), orientation and pixel size
    in the shared functional groups, the rescale per frame (or shared) and each frame's FrameType where given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, generate_uid

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedMRImageStorage, file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = "MR", series_uid, 7, 1
    ds.SeriesDescription = "LGE PSIR enhanced"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Enhanced", "LV002", "19700101", "O"
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = "1.2.840.2", "1.2.840.3"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
    ds.ReferringPhysicianName = ""
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = frames.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    rescale = _item(RescaleSlope=slope, RescaleIntercept=intercept, RescaleType="US")
    shared = _item(PlaneOrientationSequence=Sequence([_item(ImageOrientationPatient=[*ROW, *COL])]),
                   PixelMeasuresSequence=Sequence([_item(PixelSpacing=list(spacing), SliceThickness=8.0)]))
    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = Sequence([rescale])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for k, position in enumerate(positions):
        item = _item(PlanePositionSequence=Sequence([_item(ImagePositionPatient=[float(v) for v in position])]))
        if per_frame_rescale:
            item.PixelValueTransformationSequence = Sequence([rescale])
        if frame_types is not None:
            item.MRImageFrameTypeSequence = Sequence([_item(FrameType=frame_types[k])])
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = frames.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def _stack(n=5, shape=(6, 8)):
    """Frames whose value says their anatomical place (10 * slice + 1), written in a shuffled frame order."""
    order = [z for z in (3, 0, 4, 1, 2) if z < n]
    frames = np.stack([np.full(shape, 10 * z + 1, np.uint16) for z in order])
    positions = np.array([z * 8.0 * NORMAL + (5.0 - 3 * z * z) * COL for z in order])   # in-plane shifts too
    return frames, positions


def test_an_enhanced_file_reads_as_its_stack_in_anatomical_order(tmp_path):
    frames, positions = _stack()
    write_enhanced(tmp_path / "IM0001", frames, positions)
    volume = read_dicom_series(tmp_path)
    assert volume.data.shape == (5, 6, 8)
    # sorted along the slice normal, each frame rescaled by its own functional group (x2 - 5)
    assert [float(v) for v in volume.data[:, 0, 0]] == [2.0 * (10 * z + 1) - 5.0 for z in range(5)]
    assert volume.meta["spacing"] == pytest.approx((8.0, 0.7, 0.8))
    assert volume.meta["frames"] == [2, 4, 5, 1, 3]   # the file's frame of each sorted slice
    # in-plane shifts that differ per slice: no one affine, but every slice says where it lies
    assert volume.meta["affine"] is None and volume.meta["placed"]


def test_an_even_enhanced_stack_has_the_affine_of_its_frames(tmp_path):
    frames = np.stack([np.full((6, 4), z, np.uint16) for z in (2, 0, 1)])
    positions = np.array([[10.0, -20.0, 30.0] + z * 6.0 * NORMAL for z in (2, 0, 1)])
    write_enhanced(tmp_path / "lge.dcm", frames, positions, per_frame_rescale=False, slope=1.0, intercept=0.0)
    volume = read_dicom_series(tmp_path)
    assert [float(v) for v in volume.data[:, 0, 0]] == [0.0, 1.0, 2.0]
    affine = volume.meta["affine"]
    for i, j, k in [(0, 0, 0), (3, 5, 2), (1, 2, 1)]:
        lps = np.array([10.0, -20.0, 30.0]) + k * 6.0 * NORMAL + i * 0.8 * ROW + j * 0.7 * COL
        assert (affine @ [i, j, k, 1.0])[:3] == pytest.approx(lps * [-1, -1, 1])


def test_one_frame_of_an_enhanced_file_opens_the_whole_stack(tmp_path):
    frames, positions = _stack()
    write_enhanced(tmp_path / "IM0001", frames, positions)
    volume = read_image(tmp_path / "IM0001")   # what napari's reader and `lvseg segment FILE` call
    assert volume.data.shape == (5, 6, 8)


def test_magnitude_and_phase_frames_of_one_file_are_separate_stacks(tmp_path):
    frames, positions = _stack(n=4)
    both = np.concatenate([frames, frames + 1000])
    types = [["ORIGINAL", "PRIMARY", "M_IR", "NONE"]] * 4 + [["ORIGINAL", "PRIMARY", "PHASE_IR", "NONE"]] * 4
    write_enhanced(tmp_path / "IM0001", both, np.concatenate([positions, positions]), frame_types=types)
    with pytest.warns(UserWarning, match=r"holds 2 series: read series 7 'LGE PSIR enhanced' .*image type "
                                         r"ORIGINAL\\PRIMARY\\M_IR\\NONE, 4 slices"):
        volume = read_dicom_series(tmp_path)
    assert volume.data.shape == (4, 6, 8) and volume.data.max() < 1000   # the magnitude frames alone


def test_frames_at_one_position_are_refused_naming_the_frames(tmp_path):
    frames, positions = _stack(n=3)   # three inversion times of one slice, say
    write_enhanced(tmp_path / "ti.dcm", frames, np.repeat(positions[:1], 3, axis=0))
    with pytest.raises(LvsegError, match=r"two images at one slice position .*ti\.dcm frame 1, ti\.dcm frame 2\): "
                                         r"not one stack .*export the LGE stack alone"):
        read_dicom_series(tmp_path)


needs_highdicom = pytest.mark.skipif(importlib.util.find_spec("highdicom") is None, reason="highdicom not installed")
MAGNITUDE, PHASE = ["ORIGINAL", "PRIMARY", "M", "NONE"], ["ORIGINAL", "PRIMARY", "P", "NONE"]


@needs_highdicom
def test_labels_of_an_enhanced_file_export_as_a_seg_of_its_magnitude_frames(tmp_path):
    import highdicom as hd
    import pydicom

    from napari_lvseg.io.dicom_seg import write_seg

    frames, positions = _stack()
    write_enhanced(tmp_path / "IM0001", np.concatenate([frames, frames + 1000]), np.concatenate([positions] * 2),
                   frame_types=[MAGNITUDE] * 5 + [PHASE] * 5)   # the phase frames at the same positions
    with pytest.warns(UserWarning, match="left out series 7"):
        volume = read_dicom_series(tmp_path)
    labels = np.zeros(volume.data.shape, np.uint8)
    for k in range(len(labels)):   # each slice its own pattern, every class
        labels[k, 1:5, 1:6], labels[k, 2, 2], labels[k, 3, 1 + k], labels[k, 4, 4] = 2, 1, 3, 4
    write_seg(tmp_path / "seg.dcm", labels, volume.meta, model="lvseg-seg")

    source = pydicom.dcmread(tmp_path / "IM0001", stop_before_pixels=True)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert seg.NumberOfFrames == 4 * 5 and seg.StudyInstanceUID == source.StudyInstanceUID
    by_position = {tuple(np.round(p, 3)): k for k, p in enumerate(positions)}   # file frame k+1 (magnitude)
    for pixels, item in zip(seg.pixel_array, seg.PerFrameFunctionalGroupsSequence):
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        frame = by_position[tuple(np.round([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], 3))]
        slice_ = volume.meta["frames"].index(frame + 1)
        np.testing.assert_array_equal(pixels, labels[slice_] == number)
        referenced = item.DerivationImageSequence[0].SourceImageSequence
        assert {r.ReferencedSOPInstanceUID for r in referenced} == {source.SOPInstanceUID}
        assert frame + 1 in {int(r.ReferencedFrameNumber) for r in referenced}
    read = hd.seg.segread(tmp_path / "seg.dcm").get_pixels_by_source_frame(
        source.SOPInstanceUID, source_frame_numbers=volume.meta["frames"], segment_numbers=[1, 2, 3, 4])
    for number in (1, 2, 3, 4):
        np.testing.assert_array_equal(read[..., number - 1], labels == number)


def test_no_dicom_seg_is_written_for_a_series_over_several_enhanced_files(tmp_path):
    frames, positions = _stack()
    write_enhanced(tmp_path / "IM0001", frames[:3], positions[:3])
    write_enhanced(tmp_path / "IM0002", frames[3:], positions[3:])   # the same series, its other frames
    volume = read_dicom_series(tmp_path)
    assert volume.data.shape[0] == 5
    with pytest.raises(LvsegError, match=r"seg\.dcm: DICOM SEG is not written for a series spread over several "
                                         r"multi-frame .*save the labels as NIfTI instead"):
        check_seg(volume.meta, tmp_path / "seg.dcm")
