"""Labels of a DICOM series in the series' patient space: NIfTI with the series' affine (CLI and napari writer) and
DICOM SEG referencing the source images (highdicom)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import warnings

import nibabel as nib
import numpy as np
import pytest

from napari_lvseg.errors import LvsegError
from napari_lvseg.io import read_image

ROWS, COLS, SLICES = 6, 5, 4           # non-square: a swapped row/column would show
PIXEL_SPACING = (0.7, 0.9)             # (between rows, between columns), DICOM's order
STEP = 8.0                              # mm between slices along the normal
ORIGIN = np.array([-31.5, 12.25, 48.0])


def _orientation():
    """An oblique plane: the row and column directions rotated about two axes."""
    a, b = np.deg2rad(25.0), np.deg2rad(-40.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rotation = rx @ rz
    return rotation[:, 0], rotation[:, 1]


def write_series(folder, orientation=True, slices=SLICES, shifts=None):
    """An oblique MR series, files named and numbered out of slice order (slice k ``shifts[k]`` mm along the column
    direction: an uneven stack); returns the sorted (position, UID)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = _orientation()
    normal = np.cross(row_dir, col_dir)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    written = []
    for n, k in enumerate([2, 0, 3, 1][:slices] if slices == SLICES else range(slices)):
        position = ORIGIN + k * STEP * normal + (shifts[k] if shifts else 0.0) * col_dir
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = MRImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.PatientName, ds.PatientID = "MR", "Test^Phantom", "LV001"
        ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 7, 10 - n
        ds.Rows, ds.Columns = ROWS, COLS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelSpacing = list(PIXEL_SPACING)
        ds.SliceThickness = STEP
        if orientation:
            ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
            ds.ImagePositionPatient = [float(v) for v in position]
        ds.PixelData = np.full((ROWS, COLS), 100 + k, np.uint16).tobytes()
        ds.save_as(str(folder / f"IM{n:03d}"), enforce_file_format=True)
        written.append((k, position, ds.SOPInstanceUID))
    return [(position, uid) for _, position, uid in sorted(written, key=lambda w: w[0])]


def expected_affine():
    """The NIfTI affine computed from the tags alone: columns row direction x column spacing, column direction x
    row spacing, slice step, first position; then LPS -> RAS (x and y negated)."""
    row_dir, col_dir = _orientation()
    lps = np.eye(4)
    lps[:3, 0] = row_dir * PIXEL_SPACING[1]
    lps[:3, 1] = col_dir * PIXEL_SPACING[0]
    lps[:3, 2] = np.cross(row_dir, col_dir) * STEP
    lps[:3, 3] = ORIGIN
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def patient_ras(position, row, col):
    """The RAS coordinate of pixel (row, col) of the slice at ``position`` (DICOM's own formula, then LPS->RAS)."""
    row_dir, col_dir = _orientation()
    lps = position + col * PIXEL_SPACING[1] * row_dir + row * PIXEL_SPACING[0] * col_dir
    return lps * np.array([-1.0, -1.0, 1.0])


def fake_labels(shape=(SLICES, ROWS, COLS)):
    """Every class, and a different pattern on each slice."""
    labels = np.zeros(shape, np.uint8)
    for k in range(shape[0]):
        labels[k, 1:4, 1:4] = 2
        labels[k, 2, 2] = 1
        labels[k, (k % 3) + 1, 1] = 3
        labels[k, 4, (k % 4) + 1] = 4
    return labels


def check_in_patient_space(nifti_path, sorted_series, labels):
    img = nib.load(str(nifti_path))
    np.testing.assert_allclose(img.affine, expected_affine(), atol=1e-5)
    assert int(img.header["sform_code"]) == 1
    disk = np.asanyarray(img.dataobj)
    assert disk.shape == (COLS, ROWS, SLICES)
    for k, (position, _) in enumerate(sorted_series):
        for row, col in ((0, 0), (ROWS - 1, 0), (2, COLS - 1), (ROWS - 1, COLS - 1)):
            np.testing.assert_allclose(img.affine @ [col, row, k, 1], [*patient_ras(position, row, col), 1],
                                       atol=1e-4)
            assert disk[col, row, k] == labels[k, row, col]


def test_a_dicom_series_carries_its_patient_space(tmp_path):
    series = write_series(tmp_path / "lge")
    volume = read_image(tmp_path / "lge")
    assert volume.data.shape == (SLICES, ROWS, COLS)
    np.testing.assert_array_equal(volume.data[:, 0, 0], [100, 101, 102, 103])   # sorted along the normal
    np.testing.assert_allclose(volume.meta["affine"], expected_affine(), atol=1e-6)
    assert volume.meta["sop_instance_uids"] == [uid for _, uid in series]


def test_labels_written_as_nifti_land_in_the_series_patient_space(tmp_path):
    from napari_lvseg.io import write_labels

    series = write_series(tmp_path / "lge")
    volume = read_image(tmp_path / "lge")
    labels = fake_labels()
    write_labels(tmp_path / "labels.nii.gz", labels, volume.meta)
    check_in_patient_space(tmp_path / "labels.nii.gz", series, labels)


def test_the_napari_writer_keeps_the_series_patient_space(tmp_path):
    from napari_lvseg._reader import get_reader
    from napari_lvseg._writer import write_labels_nifti

    series = write_series(tmp_path / "lge")
    (data, kwargs, kind), = get_reader(str(tmp_path / "lge"))(str(tmp_path / "lge"))
    assert kind == "image" and kwargs["scale"] == pytest.approx((STEP, *PIXEL_SPACING))
    labels = fake_labels()
    # the Segment panel's labels layer carries its image's source meta (SegmentLogic.labels_layer_kwargs)
    attributes = {"metadata": {"lvseg_source": kwargs["metadata"]["lvseg_source"]}, "scale": kwargs["scale"]}
    written, = write_labels_nifti(str(tmp_path / "out"), labels, attributes)
    check_in_patient_space(written, series, labels)


def test_the_cli_writes_labels_of_a_dicom_folder_in_its_patient_space(tmp_path, monkeypatch):
    from napari_lvseg import cli, inference

    series = write_series(tmp_path / "lge")
    labels = fake_labels()

    def fake_steps(image, *args, **kwargs):   # the model is not what is tested: the labels' place is
        assert image.shape == labels.shape
        yield 1, 1
        return inference.SegmentationResult(labels=labels.copy(), model="fake-model")

    monkeypatch.setattr(inference, "segment_steps", fake_steps)
    assert cli.main(["segment", str(tmp_path / "lge"), "-o", str(tmp_path / "labels.nii.gz")]) == 0
    check_in_patient_space(tmp_path / "labels.nii.gz", series, labels)


def test_a_series_without_orientation_writes_nifti_with_its_voxel_size_and_says_so(tmp_path):
    from napari_lvseg.errors import LvsegWarning
    from napari_lvseg.io import write_labels

    write_series(tmp_path / "lge", orientation=False)
    volume = read_image(tmp_path / "lge")
    assert volume.meta["affine"] is None
    with pytest.warns(LvsegWarning, match=r"labels\.nii\.gz: written without the DICOM series' patient position "
                                          r"\(the series has no .*ImageOrientationPatient"):
        write_labels(tmp_path / "labels.nii.gz", fake_labels(), volume.meta)
    np.testing.assert_allclose(nib.load(str(tmp_path / "labels.nii.gz")).affine,
                               np.diag([PIXEL_SPACING[1], PIXEL_SPACING[0], STEP, 1.0]))


def test_labels_of_another_shape_than_the_series_are_refused(tmp_path):
    from napari_lvseg.io import write_labels

    write_series(tmp_path / "lge")
    volume = read_image(tmp_path / "lge")
    with pytest.raises(LvsegError, match=r"out\.nii\.gz: labels of shape \(3, 6, 5\) do not match the DICOM series "
                                         r"they are written for \(shape \(4, 6, 5\)"):
        write_labels(tmp_path / "out.nii.gz", fake_labels((3, ROWS, COLS)), volume.meta)
    assert not (tmp_path / "out.nii.gz").exists()


# -- DICOM SEG ------------------------------------------------------------------------------------

needs_highdicom = pytest.mark.skipif(importlib.util.find_spec("highdicom") is None,
                                     reason="highdicom (the dicom extra) is not installed")


def read_back(seg_path, series, labels):
    """Check a SEG file against the series and labels: references, segments, frames and their positions."""
    import pydicom

    from napari_lvseg.labels import NAMES

    ds = pydicom.dcmread(str(seg_path))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.Modality == "SEG"
    referenced = [item.ReferencedSOPInstanceUID for item in ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence]
    assert sorted(referenced) == sorted(uid for _, uid in series)
    assert [(s.SegmentNumber, s.SegmentLabel) for s in ds.SegmentSequence] == [(v, NAMES[v]) for v in (1, 2, 3, 4)]
    assert ds.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeValue == "49848007"
    # every frame: its segment, its source image, and the source image's position
    by_uid = {uid: (k, position) for k, (position, uid) in enumerate(series)}
    for frame, item in zip(ds.pixel_array.reshape(-1, ROWS, COLS), ds.PerFrameFunctionalGroupsSequence):
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k, position = by_uid[uid]
        np.testing.assert_allclose([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient], position,
                                   atol=1e-4)
        np.testing.assert_array_equal(frame, labels[k] == number)
    # highdicom's reading: each segment's pixels per source image are the label map's
    import highdicom as hd

    seg = hd.seg.segread(str(seg_path))
    uids = [uid for _, uid in series]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2, 3, 4])
    for number in (1, 2, 3, 4):
        np.testing.assert_array_equal(pixels[..., number - 1], labels == number)
    return ds


@needs_highdicom
def test_labels_export_as_a_dicom_seg_that_references_the_series(tmp_path):
    from napari_lvseg.io.dicom_seg import write_seg

    series = write_series(tmp_path / "lge")
    volume = read_image(tmp_path / "lge")
    labels = fake_labels()
    labels[3] = 0   # a slice without labels: still referenced, its frames empty
    write_seg(tmp_path / "labels.dcm", labels, volume.meta, model="lvseg-seg")
    ds = read_back(tmp_path / "labels.dcm", series, labels)
    assert ds.NumberOfFrames == 4 * SLICES
    assert ds.StudyInstanceUID == read_dicom_header(tmp_path / "lge").StudyInstanceUID
    assert ds.FrameOfReferenceUID == read_dicom_header(tmp_path / "lge").FrameOfReferenceUID
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert ds.SegmentSequence[0].SegmentAlgorithmName == "lvseg-seg"


def read_dicom_header(folder):
    import pydicom

    return pydicom.dcmread(str(sorted(folder.iterdir())[0]), stop_before_pixels=True)


@needs_highdicom
def test_the_cli_writes_a_dicom_seg_for_a_dicom_folder(tmp_path, monkeypatch):
    from napari_lvseg import cli, inference

    series = write_series(tmp_path / "lge")
    labels = fake_labels()

    def fake_steps(image, *args, **kwargs):
        yield 1, 1
        return inference.SegmentationResult(labels=labels.copy(), model="fake-model")

    monkeypatch.setattr(inference, "segment_steps", fake_steps)
    assert cli.main(["segment", str(tmp_path / "lge"), "-o", str(tmp_path / "out" / "labels.dcm")]) == 0
    ds = read_back(tmp_path / "out" / "labels.dcm", series, labels)
    assert ds.SegmentSequence[0].SegmentAlgorithmName == "fake-model"


def test_the_cli_refuses_a_dicom_seg_for_an_input_that_is_no_dicom_series(tmp_path, capsys):
    from napari_lvseg import cli

    nib.save(nib.Nifti1Image(np.zeros((8, 8, 2), np.float32), np.eye(4)), str(tmp_path / "image.nii.gz"))
    assert cli.main(["segment", str(tmp_path / "image.nii.gz"), "-o", str(tmp_path / "labels.dcm")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "labels.dcm: a DICOM SEG (.dcm) is written only for a DICOM series" in err


@needs_highdicom
def test_the_napari_writer_saves_a_dicom_seg_of_a_dicom_series(tmp_path):
    from napari_lvseg._reader import get_reader
    from napari_lvseg._writer import write_labels_dicom_seg

    series = write_series(tmp_path / "lge")
    (_, kwargs, _), = get_reader(str(tmp_path / "lge"))(str(tmp_path / "lge"))
    labels = fake_labels()
    attributes = {"metadata": {"lvseg_source": kwargs["metadata"]["lvseg_source"], "lvseg_model": "lvseg-seg",
                               "lvseg_prediction": np.zeros_like(labels)}}
    written, = write_labels_dicom_seg(str(tmp_path / "seg"), labels, attributes)
    assert written == str(tmp_path / "seg.dcm")
    ds = read_back(written, series, labels)
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"   # edited since the prediction
    with pytest.raises(LvsegError, match=r"x\.dcm: DICOM SEG is written only for labels made from a DICOM series"):
        write_labels_dicom_seg(str(tmp_path / "x.dcm"), labels, {"metadata": {}, "scale": (1, 1, 1)})


@needs_highdicom
def test_dicom_seg_refuses_bad_input_in_one_line(tmp_path):
    from napari_lvseg.io.dicom_seg import write_seg

    write_series(tmp_path / "lge")
    volume = read_image(tmp_path / "lge")
    with pytest.raises(LvsegError, match=r"seg\.dcm: labels of shape \(4, 5, 6\) do not match the DICOM series"):
        write_seg(tmp_path / "seg.dcm", fake_labels((SLICES, COLS, ROWS)), volume.meta)
    write_series(tmp_path / "flat", orientation=False)
    flat = read_image(tmp_path / "flat")
    with pytest.raises(LvsegError, match=r"seg\.dcm: cannot write DICOM SEG: the series has no .*"
                                         r"ImageOrientationPatient.*save the labels as NIfTI instead"):
        write_seg(tmp_path / "seg.dcm", fake_labels(), flat.meta)
    (tmp_path / "lge" / "IM001").unlink()   # a source image gone since the series was read
    with pytest.raises(LvsegError, match=r"seg\.dcm: cannot read the series image .*IM001 the labels were made from"):
        write_seg(tmp_path / "seg.dcm", fake_labels(), volume.meta)
    assert not (tmp_path / "seg.dcm").exists()


def test_without_highdicom_the_error_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['highdicom'] = None\n"
            "from napari_lvseg.io.dicom_seg import write_seg\n"
            "from napari_lvseg.errors import LvsegError\n"
            "try:\n    write_seg('x.dcm', None, {})\nexcept LvsegError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.strip()
    assert out == 'x.dcm: DICOM SEG export needs highdicom: pip install "napari-lvseg[dicom]"'


@needs_highdicom
def test_an_uneven_stack_has_no_nifti_affine_but_its_seg_places_each_frame(tmp_path):
    from napari_lvseg.errors import LvsegWarning
    from napari_lvseg.io import write_labels
    from napari_lvseg.io.dicom_seg import write_seg

    series = write_series(tmp_path / "lge", shifts=[0.0, 3.0, -2.0, 0.0])   # in-plane shifts: no one affine fits
    volume = read_image(tmp_path / "lge")
    assert volume.meta["affine"] is None and volume.meta["placed"]
    with pytest.warns(LvsegWarning, match=r"patient position \(its slices do not lie evenly along one line, one is "
                                          r"3\.00 mm off, so no one affine places them all\): voxel size only"):
        write_labels(tmp_path / "labels.nii.gz", fake_labels(), volume.meta)
    labels = fake_labels()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the SEG places each frame itself: nothing to warn of
        write_seg(tmp_path / "labels.dcm", labels, volume.meta)
    ds = read_back(tmp_path / "labels.dcm", series, labels)   # each frame at its own source image's position
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"


@needs_highdicom
def test_the_cli_refuses_a_seg_of_a_series_without_positions_before_segmenting(tmp_path, monkeypatch, capsys):
    from napari_lvseg import cli, inference

    def never(*args, **kwargs):
        raise AssertionError("the model ran before the SEG was refused")

    monkeypatch.setattr(inference, "segment_steps", never)
    write_series(tmp_path / "lge", orientation=False)
    assert cli.main(["segment", str(tmp_path / "lge"), "-o", str(tmp_path / "labels.dcm")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{tmp_path / 'labels.dcm'}: cannot write DICOM SEG: the series has no" in err
    assert not (tmp_path / "labels.dcm").exists()
