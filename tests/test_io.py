"""File I/O: NIfTI/TIFF/DICOM/EMIDEC reading, exact NIfTI round trips, validation, atomic writes."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lvseg.errors import LvsegError, LvsegWarning
from napari_lvseg.io import (
    atomic_path,
    check_image,
    check_labels,
    check_pair,
    read_image,
    read_labels,
    write_image,
    write_labels,
)
from napari_lvseg.io.dicom import read_dicom_series
from napari_lvseg.io.emidec import find_cases, is_case_folder, read_case
from napari_lvseg.io.nifti import looks_like_labels, read_nifti, write_nifti
from napari_lvseg.io.tiff import read_tiff, write_tiff

RNG = np.random.default_rng(0)


def save_nifti(path, disk, affine=None):
    nib.save(nib.Nifti1Image(disk, np.eye(4) if affine is None else affine), str(path))
    return path


def make_case(root, name="Case_T01", shape_xyz=(16, 12, 3), labels=True, bad_value=None):
    image = RNG.uniform(0, 100, shape_xyz).astype(np.float32)
    (root / name / "Images").mkdir(parents=True)
    save_nifti(root / name / "Images" / f"{name}.nii.gz", image)
    if labels:
        lab = RNG.integers(0, 5, shape_xyz).astype(np.uint8)
        if bad_value is not None:
            lab[0, 0, 0] = bad_value
        (root / name / "Contours").mkdir()
        save_nifti(root / name / "Contours" / f"{name}.nii.gz", lab)
    return root / name


def no_temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


# -- NIfTI -------------------------------------------------------------------------------------

def test_nifti_read_transposes_xyz_to_zyx_and_keeps_spacing(tmp_path):
    disk = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)
    img = nib.Nifti1Image(disk, np.diag([0.7, 0.8, 5.0, 1.0]))
    nib.save(img, str(tmp_path / "a.nii.gz"))
    vol = read_nifti(tmp_path / "a.nii.gz")
    assert vol.data.shape == (2, 3, 4)
    np.testing.assert_array_equal(vol.data, disk.transpose(2, 1, 0))
    assert vol.meta["format"] == "nifti" and vol.meta["orientation"] == "xyz->zyx"
    assert vol.meta["spacing"] == pytest.approx((5.0, 0.8, 0.7))
    assert vol.meta["dtype"] == "int16"


@pytest.mark.parametrize("disk_shape", [(6, 5, 4), (6, 5), (6, 5, 1), (6, 5, 4, 1)])
def test_nifti_round_trip_is_exact(tmp_path, disk_shape):
    disk = RNG.normal(size=disk_shape).astype(np.float32)
    affine = np.array([[0, -0.9, 0, 10], [1.1, 0, 0, -4], [0, 0, 6, 2], [0, 0, 0, 1.0]])
    src = tmp_path / "src.nii.gz"
    img = nib.Nifti1Image(disk, affine)
    img.header.set_qform(affine, code=1)
    img.header.set_sform(affine, code=2)
    nib.save(img, str(src))
    vol = read_nifti(src)
    expected_mem = {(6, 5, 4): (4, 5, 6), (6, 5): (5, 6), (6, 5, 1): (1, 5, 6), (6, 5, 4, 1): (4, 5, 6)}
    assert vol.data.shape == expected_mem[disk_shape]
    out = write_nifti(tmp_path / "out.nii.gz", vol.data, vol.meta)
    back = nib.load(str(out))
    assert back.shape == disk_shape
    assert back.get_data_dtype() == np.float32
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), disk)
    np.testing.assert_array_equal(back.affine, nib.load(str(src)).affine)
    assert int(back.header["qform_code"]) == 1 and int(back.header["sform_code"]) == 2
    assert no_temp_files(tmp_path)


def test_scaled_integer_nifti_round_trips_to_same_raw_values_and_dtype(tmp_path):
    raw = RNG.integers(-300, 300, (5, 4, 3)).astype(np.int16)
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(0.25, 7.0)
    # nibabel would recompute scaling from a float array; write the raw integers through an explicit header.
    img.to_filename(str(tmp_path / "s.nii"))
    vol = read_nifti(tmp_path / "s.nii")
    np.testing.assert_array_equal(vol.data, (raw * 0.25 + 7.0).transpose(2, 1, 0))
    write_nifti(tmp_path / "o.nii", vol.data, vol.meta)
    back = nib.load(str(tmp_path / "o.nii"))
    assert back.get_data_dtype() == np.int16
    np.testing.assert_array_equal(back.dataobj.get_unscaled(), raw)
    np.testing.assert_array_equal(read_nifti(tmp_path / "o.nii").data, vol.data)


def test_nifti_without_meta_gets_identity_affine(tmp_path):
    data = RNG.normal(size=(3, 4, 5)).astype(np.float32)
    write_nifti(tmp_path / "n.nii.gz", data)
    back = nib.load(str(tmp_path / "n.nii.gz"))
    np.testing.assert_array_equal(back.affine, np.eye(4))
    assert back.shape == (5, 4, 3)
    np.testing.assert_array_equal(read_nifti(tmp_path / "n.nii.gz").data, data)


def test_labels_written_with_image_meta_are_uint8(tmp_path):
    src = save_nifti(tmp_path / "img.nii.gz", RNG.normal(size=(6, 5, 2)).astype(np.float32),
                     np.diag([2.0, 2.0, 8.0, 1.0]))
    meta = read_image(src).meta
    labels = RNG.integers(0, 5, (2, 5, 6)).astype(np.int64)
    write_labels(tmp_path / "lab.nii.gz", labels, meta)
    back = nib.load(str(tmp_path / "lab.nii.gz"))
    assert back.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(back.affine, np.diag([2.0, 2.0, 8.0, 1.0]))
    np.testing.assert_array_equal(read_labels(tmp_path / "lab.nii.gz").data, labels)


def test_real_emidec_cases_round_trip_bit_for_bit(emidec_cases, tmp_path):
    for case_dir in emidec_cases:
        for sub in ("Images", "Contours"):
            src = case_dir / sub / f"{case_dir.name}.nii.gz"
            original = nib.load(str(src))
            vol = read_nifti(src)
            assert vol.data.shape[1:] == (128, 128)
            out = write_nifti(tmp_path / f"{case_dir.name}_{sub}.nii.gz", vol.data, vol.meta)
            back = nib.load(str(out))
            assert back.get_data_dtype() == original.get_data_dtype()
            assert back.shape == original.shape
            np.testing.assert_array_equal(back.affine, original.affine)
            a, b = np.asanyarray(original.dataobj), np.asanyarray(back.dataobj)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
            out.unlink()


def test_looks_like_labels():
    assert looks_like_labels(np.array([[0, 1], [2, 4]], np.uint8))
    assert looks_like_labels(np.array([[0.0, 3.0]], np.float32))
    assert not looks_like_labels(np.array([[0.0, 0.5]], np.float32))
    assert not looks_like_labels(np.array([[0, 5]], np.uint8))
    assert not looks_like_labels(np.array([[-1, 2]], np.int16))
    assert not looks_like_labels(RNG.normal(size=(8, 8)).astype(np.float32))


# -- TIFF --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,dtype", [((7, 9), np.float32), ((3, 7, 9), np.float32), ((4, 7, 9), np.uint8)])
def test_tiff_round_trip(tmp_path, shape, dtype):
    data = (RNG.uniform(0, 4, shape)).astype(dtype)
    write_tiff(tmp_path / "a.tif", data)
    vol = read_tiff(tmp_path / "a.tif")
    assert vol.data.shape == shape and vol.data.dtype == dtype
    np.testing.assert_array_equal(vol.data, data)
    assert vol.meta["format"] == "tiff"
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("shape,dtype", [((7, 9), np.uint8), ((3, 7, 9), np.float32), ((4, 7, 9), np.uint8),
                                         ((1, 7, 9), np.uint8)])   # a one-slice stack stays a stack
def test_tiff_keeps_the_voxel_size_imagej_s_way(tmp_path, shape, dtype):
    data = (RNG.uniform(0, 4, shape)).astype(dtype)
    write_tiff(tmp_path / "a.tif", data, {"spacing": (8.0, 0.7, 0.8)})
    vol = read_tiff(tmp_path / "a.tif")
    np.testing.assert_array_equal(vol.data, data)
    assert vol.meta["spacing"] == pytest.approx((8.0 if len(shape) == 3 else 1.0, 0.7, 0.8))


def test_tiff_voxel_size_in_imagej_units_or_none(tmp_path):
    stack = RNG.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    tifffile.imwrite(tmp_path / "fiji.tif", stack, imagej=True, resolution=(2.0, 4.0),
                     metadata={"unit": "micron", "spacing": 500.0, "axes": "ZYX"})   # 0.5 x 0.25 um, 0.5 mm apart
    assert read_tiff(tmp_path / "fiji.tif").meta["spacing"] == pytest.approx((0.5, 0.00025, 0.0005))
    # resolution without a length unit is print resolution, not anatomy
    tifffile.imwrite(tmp_path / "print.tif", stack, photometric="minisblack", resolution=(300, 300))
    assert read_tiff(tmp_path / "print.tif").meta["spacing"] == (1.0, 1.0, 1.0)
    # a slice spacing without a length unit is in pixels: no voxel size at all
    tifffile.imwrite(tmp_path / "pixels.tif", stack, imagej=True, metadata={"spacing": 2.5, "axes": "ZYX"})
    assert read_tiff(tmp_path / "pixels.tif").meta["spacing"] == (1.0, 1.0, 1.0)


def test_rgb_tiff_is_refused(tmp_path):
    path = tmp_path / "colour.tiff"
    tifffile.imwrite(str(path), RNG.integers(0, 255, (3, 16, 16)).astype(np.uint8), photometric="rgb")
    with pytest.raises(LvsegError, match="colour.tiff.*colour"):
        read_image(path)


def test_a_truncated_tiff_stack_is_refused_not_read_in_part_and_the_library_says_nothing(tmp_path, caplog):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(str(path), RNG.random((8, 64, 64)).astype(np.float32), photometric="minisblack", metadata=None)
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])   # the later pages are cut off
    with pytest.raises(LvsegError, match=r"stack\.tif: damaged TIFF, part of it cannot be read \(invalid page offset"):
        read_image(path)
    assert caplog.records == []   # tifffile's own line, which would come before the error, is in the error


def test_a_tiff_with_a_bad_private_tag_is_read_whole(tmp_path, caplog):
    """tifffile logs an error for a tag it cannot read, and reads every pixel: such files (vendor software writes
    them) are read, not refused as damaged."""
    stack = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8)
    path = tmp_path / "vendor.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", extratags=[(65000, "s", 0, "vendor note", True)])
    raw = path.read_bytes()
    entry = (65000).to_bytes(2, "little") + (2).to_bytes(2, "little")   # the tag, type ASCII
    assert raw.count(entry) == 1
    path.write_bytes(raw.replace(entry, (65000).to_bytes(2, "little") + (99).to_bytes(2, "little")))
    np.testing.assert_array_equal(read_image(path).data, stack)
    assert caplog.records == []


def test_nibabel_s_header_notes_stay_off_the_terminal(tmp_path, caplog):
    image = nib.Nifti1Image(RNG.random((16, 16, 2)).astype(np.float32), np.eye(4))
    image.header["pixdim"][1:4] = 0
    nib.save(image, tmp_path / "pix0.nii.gz")
    assert read_image(tmp_path / "pix0.nii.gz").shape == (2, 16, 16)
    assert caplog.records == []   # "pixdim[1,2,3] should be non-zero; setting 0 dims to 1"


# -- DICOM -------------------------------------------------------------------------------------

def write_dicom(path, pixels, *, series_uid, instance, position=None, orientation=None,
                slope=1.0, intercept=0.0, pixel_spacing=(0.7, 0.8), **tags):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    file_meta = FileMetaDataset()
    file_meta.MediaStorageSOPClassUID = MRImageStorage
    file_meta.MediaStorageSOPInstanceUID = generate_uid()
    file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = file_meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.InstanceNumber = "MR", series_uid, instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelSpacing = list(pixel_spacing)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    for keyword, value in tags.items():   # e.g. SeriesNumber, SeriesDescription, ImageType
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_series_ordered_by_position_on_slice_normal(tmp_path):
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(0.5), -np.sin(0.5)])
    normal = np.cross(row, col)
    n = 6
    shifts = [40.0, -30.0, 25.0, -45.0, 10.0, 35.0]  # in-plane shifts: sorting by patient z alone is wrong
    names = [f"IM{random.Random(1).randrange(10**6) + i * 7919:07d}" for i in range(n)]
    random.Random(2).shuffle(names)
    instances = [3, 1, 6, 2, 5, 4]  # deliberately not the anatomical order
    for k in range(n):
        position = k * 8.0 * normal + shifts[k] * col
        pixels = np.full((5, 4), 10 * k + 1, np.uint16)
        write_dicom(tmp_path / names[k], pixels, series_uid="1.2.3", instance=instances[k],
                    position=position, orientation=[*row, *col], slope=2.0, intercept=-5.0)
    (tmp_path / "notes.txt").write_text("not dicom")
    assert [row_ for row_ in sorted(range(n), key=lambda k: (k * 8.0 * normal + shifts[k] * col)[2])] != list(range(n))
    vol = read_dicom_series(tmp_path)
    assert vol.data.shape == (n, 5, 4) and vol.data.dtype == np.float32
    np.testing.assert_array_equal(vol.data[:, 0, 0], [2.0 * (10 * k + 1) - 5.0 for k in range(n)])
    assert vol.meta["spacing"] == pytest.approx((8.0, 0.7, 0.8))
    assert vol.meta["format"] == "dicom"


def test_dicom_falls_back_to_instance_number_and_takes_largest_series(tmp_path):
    order = [2, 0, 3, 1]
    for i, k in enumerate(order):
        write_dicom(tmp_path / f"x{i}.dcm", np.full((3, 3), k, np.uint16), series_uid="9.9", instance=k + 1)
    write_dicom(tmp_path / "loc", np.full((3, 3), 99, np.uint16), series_uid="1.1", instance=1)
    vol = read_image(tmp_path)
    np.testing.assert_array_equal(vol.data[:, 1, 1], [0, 1, 2, 3])
    assert vol.meta["series_uid"] == "9.9" and vol.meta["skipped_series"] == ["1.1"]


def test_a_damaged_dicom_slice_is_reported_not_skipped(tmp_path):
    """Skipping it would close the gap silently: two slices 16 mm apart read as neighbours."""
    for k in range(3):
        write_dicom(tmp_path / f"s{k}.dcm", np.full((4, 4), k, np.uint16), series_uid="1.2", instance=k + 1,
                    position=(0.0, 0.0, 8.0 * k), orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, GrayscaleSoftcopyPresentationStateStorage, generate_uid

    state = Dataset()   # a presentation state beside the slices: DICOM, but no image, and not damaged
    state.file_meta = FileMetaDataset()
    state.file_meta.MediaStorageSOPClassUID = GrayscaleSoftcopyPresentationStateStorage
    state.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    state.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    state.SOPClassUID, state.Modality = GrayscaleSoftcopyPresentationStateStorage, "PR"
    state.save_as(str(tmp_path / "pr.dcm"), enforce_file_format=True)
    assert read_dicom_series(tmp_path).data.shape == (3, 4, 4)
    whole = (tmp_path / "s1.dcm").read_bytes()
    # the preamble and the DICM magic, then noise: pydicom reads it leniently, as a dataset of nothing
    (tmp_path / "s1.dcm").write_bytes(whole[:132] + bytes(random.Random(0).randrange(256) for _ in range(300)))
    with pytest.raises(LvsegError, match=r"s1\.dcm is a damaged DICOM file .*: repair or remove it"):
        read_dicom_series(tmp_path)
    (tmp_path / "s1.dcm").write_bytes(whole[:200])                   # cut off inside its file header
    with pytest.raises(LvsegError, match=r"s1\.dcm is a damaged DICOM file"):
        read_image(tmp_path / "s0.dcm")                              # a file of the series reads the series


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)   # slice normal +z: a slice's position on it is its z


def write_stack(folder, positions, *, uid="1.2", first=0, value=None, **tags):
    """One file per slice position (z, mm), file names and InstanceNumbers counting from ``first``; pixel value
    100 + z unless ``value``."""
    folder.mkdir(exist_ok=True)
    for k, z in enumerate(positions):
        write_dicom(folder / f"IM{first + k:04d}", np.full((4, 4), 100 + z if value is None else value, np.uint16),
                    series_uid=uid, instance=first + k + 1, position=(0.0, 0.0, z), orientation=AXIAL, **tags)


def test_a_series_with_a_missing_slice_is_refused_not_closed_up(tmp_path):
    write_stack(tmp_path / "lge", [0.0, 8.0, 16.0, 32.0, 40.0], SeriesNumber=5, SeriesDescription="LGE SAX")
    with pytest.raises(LvsegError) as info:
        read_dicom_series(tmp_path / "lge")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'lge'}: series 5 'LGE SAX' (UID 1.2, 5 slices): a gap, no slice "
                              "between 16.00 and 32.00 mm along the slice normal where the spacing is 8.00 mm "
                              "(1 slice(s) missing)"), message
    assert "\n" not in message
    write_stack(tmp_path / "lge", [24.0], first=5)   # the missing slice back: one regular stack
    volume = read_dicom_series(tmp_path / "lge")
    assert volume.data.shape == (6, 4, 4) and volume.meta["spacing"][0] == pytest.approx(8.0)
    np.testing.assert_array_equal(volume.data[:, 0, 0], [100, 108, 116, 124, 132, 140])


def test_a_missing_slice_is_refused_on_the_command_line_in_one_line(tmp_path, capsys):
    from napari_lvseg.cli import main

    write_stack(tmp_path / "lge", [0.0, 10.0, 30.0])
    assert main(["segment", str(tmp_path / "lge"), "-o", str(tmp_path / "seg.nii.gz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{tmp_path / 'lge'}: series (UID 1.2, 3 slices): a gap, no slice between 10.00 and 30.00 mm" in err
    assert not (tmp_path / "seg.nii.gz").exists()


def test_two_series_uids_in_one_folder_read_one_and_say_what_was_left_out(tmp_path):
    # 9 slices, 4 of them re-exported under another UID: a stack of 5 is read and the 4 are named, not dropped silently
    write_stack(tmp_path, [0.0, 8.0, 16.0, 24.0, 32.0], uid="1.2.5", SeriesNumber=5, SeriesDescription="LGE")
    write_stack(tmp_path, [40.0, 48.0, 56.0, 64.0], uid="1.2.6", first=5, SeriesNumber=6, SeriesDescription="LGE")
    with pytest.warns(LvsegWarning) as caught:
        volume = read_dicom_series(tmp_path)
    assert volume.data.shape == (5, 4, 4) and volume.meta["series_uid"] == "1.2.5"
    assert volume.meta["skipped_series"] == ["1.2.6"]
    (warning,) = [str(w.message) for w in caught]
    assert warning == (f"{tmp_path}: holds 2 series: read series 5 'LGE' (UID 1.2.5, 5 slices); left out series 6 "
                       "'LGE' (UID 1.2.6, 4 slices)")


def test_two_uids_interleaved_read_one_stack_and_name_the_slices_left_out(tmp_path):
    """The probe's folder: 9 slices 8 mm apart, every other one under a second UID. Both halves are regular stacks
    (16 mm), so no gap shows; what was left out is said."""
    write_stack(tmp_path, [0.0, 16.0, 32.0, 48.0, 64.0], uid="1.2.5")
    for k, z in enumerate([8.0, 24.0, 40.0, 56.0]):
        write_stack(tmp_path, [z], uid="1.2.6", first=5 + k)
    with pytest.warns(LvsegWarning, match=re.escape("read series (UID 1.2.5, 5 slices); left out series (UID 1.2.6, "
                                                    "4 slices)")):
        volume = read_dicom_series(tmp_path)
    assert volume.data.shape == (5, 4, 4) and volume.meta["spacing"][0] == pytest.approx(16.0)


def test_two_images_at_one_position_are_refused_not_stacked(tmp_path):
    write_stack(tmp_path, [0.0, 8.0, 16.0], SeriesNumber=3)
    write_stack(tmp_path, [8.0], first=3, SeriesNumber=3)   # a repeated acquisition of the middle slice
    with pytest.raises(LvsegError, match=r"series 3 \(UID 1\.2, 4 slices\): two images at one slice position "
                                          r"\(8\.00 mm along the slice normal: IM0001, IM0003\)"):
        read_dicom_series(tmp_path)


def test_magnitude_and_psir_sharing_a_series_and_positions_are_split_by_image_type(tmp_path):
    magnitude, psir = ["ORIGINAL", "PRIMARY", "M", "NORM"], ["DERIVED", "PRIMARY", "PSIR"]
    write_stack(tmp_path, [0.0, 8.0, 16.0, 24.0], uid="1.2", first=0, value=7, ImageType=psir, SeriesNumber=9)
    write_stack(tmp_path, [0.0, 8.0, 16.0, 24.0], uid="1.2", first=4, value=3, ImageType=magnitude, SeriesNumber=9)
    expected = ("holds 2 series: read series 9 (UID 1.2, image type DERIVED\\PRIMARY\\PSIR, 4 slices); left out "
                "series 9 (UID 1.2, image type ORIGINAL\\PRIMARY\\M\\NORM, 4 slices)")
    with pytest.warns(LvsegWarning, match=re.escape(expected)):
        volume = read_dicom_series(tmp_path)
    assert volume.data.shape == (4, 4, 4) and (volume.data == 7).all()
    assert volume.meta["skipped_series"] == ["1.2 [ORIGINAL\\PRIMARY\\M\\NORM]"]


@pytest.mark.parametrize("names", [("a", "b"), ("b", "a")])
def test_of_two_series_of_one_size_the_same_one_is_read_whatever_the_file_names(tmp_path, names):
    """Most slices first, then the lowest SeriesNumber: not the order the files happen to be listed in."""
    for name, uid, number, value in zip(names, ("1.2.7", "1.2.4"), (7, 4), (70, 40)):
        for k, z in enumerate([0.0, 8.0, 16.0]):
            write_dicom(tmp_path / f"{name}{k}", np.full((4, 4), value, np.uint16), series_uid=uid, instance=k + 1,
                        position=(0.0, 0.0, z), orientation=AXIAL, SeriesNumber=number)
    with pytest.warns(LvsegWarning, match=r"read series 4 \(UID 1\.2\.4, 3 slices\); left out series 7 "
                                          r"\(UID 1\.2\.7, 3 slices\)$"):
        volume = read_dicom_series(tmp_path)
    assert volume.meta["series_uid"] == "1.2.4" and (volume.data == 40).all()


def test_one_series_reads_without_a_warning(tmp_path, recwarn):
    write_stack(tmp_path, [0.0, 8.0, 16.0])
    assert read_dicom_series(tmp_path).data.shape == (3, 4, 4)
    assert [w for w in recwarn if issubclass(w.category, LvsegWarning)] == []


def test_folder_without_dicom_is_an_error(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(LvsegError, match=tmp_path.name):
        read_image(tmp_path)
    with pytest.raises(LvsegError, match="no DICOM"):
        read_dicom_series(tmp_path)


# -- EMIDEC ------------------------------------------------------------------------------------

def test_find_cases_from_dataset_or_single_case(tmp_path):
    make_case(tmp_path, "Case_A")
    make_case(tmp_path, "Case_B", labels=False)
    (tmp_path / "other").mkdir()
    cases = find_cases(tmp_path)
    assert [c.name for c in cases] == ["Case_A", "Case_B"]
    assert cases[1].labels_path is None
    assert [c.name for c in find_cases(tmp_path / "Case_A")] == ["Case_A"]
    assert is_case_folder(tmp_path / "Case_A") and not is_case_folder(tmp_path)
    image, labels = read_case(cases[0])
    assert image.data.shape == labels.data.shape == (3, 12, 16) and labels.data.dtype == np.uint8
    assert read_case(cases[1])[1] is None


def test_read_case_rejects_mismatched_shapes_and_bad_labels(tmp_path):
    case = make_case(tmp_path, "Case_S")
    save_nifti(case / "Contours" / "Case_S.nii.gz", np.zeros((16, 12, 4), np.uint8))
    with pytest.raises(LvsegError, match="Case_S.nii.gz.*shape"):
        read_case(find_cases(case)[0])
    bad = make_case(tmp_path, "Case_V", bad_value=7)
    with pytest.raises(LvsegError, match=r"Contours/Case_V.nii.gz.*7"):
        read_labels(bad)


def test_emidec_case_dispatch(tmp_path):
    case = make_case(tmp_path, "Case_D")
    assert read_image(case).data.dtype == np.float32
    assert read_labels(case).data.dtype == np.uint8
    with pytest.raises(LvsegError, match="several EMIDEC cases"):
        read_image(tmp_path)


# -- validation, dispatch, atomic writes --------------------------------------------------------

@pytest.mark.parametrize("data,problem", [
    (np.zeros((2, 3, 4, 5), np.float32), "4 dimensions"),
    (np.zeros((16, 16, 3), np.uint8), "colour"),
    (np.zeros((16, 16, 4), np.float32), "colour"),
    (np.array([[1.0, np.nan]], np.float32), "NaN"),
    (np.array([[1.0, np.inf]], np.float32), "NaN or infinite"),
    (np.zeros((0, 4), np.float32), "empty"),
])
def test_check_image_rejects(data, problem):
    with pytest.raises(LvsegError, match=f"scan.nii.gz: .*{problem}"):
        check_image(data, "scan.nii.gz")


def test_check_image_accepts_thin_stacks():
    assert check_image(np.zeros((3, 64, 64), np.float32)).shape == (3, 64, 64)
    assert check_image(np.zeros((64, 64), np.int16)).shape == (64, 64)


def test_check_labels_and_pair():
    out = check_labels(np.array([[0, 4], [2, 1]], np.int64))
    assert out.dtype == np.uint8
    with pytest.raises(LvsegError, match=r"mask.tif: .*5.*9"):
        check_labels(np.array([[0, 5], [9, 1]]), "mask.tif")
    with pytest.raises(LvsegError, match=r"mask.tif: .*1.5"):
        check_labels(np.array([[0, 1.5]]), "mask.tif")
    with pytest.raises(LvsegError, match=r"m.tif: .*\(2, 3\).*\(3, 2\)"):
        check_pair(np.zeros((2, 3)), np.zeros((3, 2)), "m.tif")


def test_bad_files_raise_errors_naming_the_file(tmp_path):
    garbage = tmp_path / "broken.nii.gz"
    garbage.write_bytes(b"not a nifti file at all")
    with pytest.raises(LvsegError, match="broken.nii.gz"):
        read_image(garbage)
    broken_tif = tmp_path / "broken.tif"
    broken_tif.write_bytes(b"II*\x00garbage")
    with pytest.raises(LvsegError, match="broken.tif"):
        read_image(broken_tif)
    with pytest.raises(LvsegError, match="notes.txt.*unsupported"):
        (tmp_path / "notes.txt").write_text("x")
        read_image(tmp_path / "notes.txt")
    with pytest.raises(LvsegError, match="missing.nii.gz.*not found"):
        read_image(tmp_path / "missing.nii.gz")
    nan_file = save_nifti(tmp_path / "nan.nii.gz", np.full((4, 4, 2), np.nan, np.float32))
    with pytest.raises(LvsegError, match="nan.nii.gz.*NaN"):
        read_image(nan_file)
    four_d = save_nifti(tmp_path / "four.nii.gz", np.zeros((4, 4, 2, 3), np.float32))
    with pytest.raises(LvsegError, match="four.nii.gz.*4 dimensions"):
        read_image(four_d)
    with pytest.raises(LvsegError, match="out.png.*cannot write"):
        write_image(tmp_path / "out.png", np.zeros((4, 4), np.float32))
    with pytest.raises(LvsegError, match="lab.tif.*8"):
        write_labels(tmp_path / "lab.tif", np.full((4, 4), 8))
    assert not (tmp_path / "lab.tif").exists()


def test_write_dispatch_and_overwrite_is_atomic(tmp_path):
    data = RNG.normal(size=(2, 4, 5)).astype(np.float32)
    for name in ("a.nii.gz", "a.nii", "a.tif", "a.tiff"):
        write_image(tmp_path / name, data)
        write_image(tmp_path / name, data * 2)  # overwrite in place
        np.testing.assert_array_equal(read_image(tmp_path / name).data, data * 2)
    with open(tmp_path / "a.nii.gz", "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"  # gzip: the temporary kept the .nii.gz suffix
    assert no_temp_files(tmp_path)


def test_atomic_writes_get_the_mode_of_a_plain_write(tmp_path):
    import os
    import stat

    mask = os.umask(0o027)
    try:
        from napari_lvseg.io import atomic

        atomic._umask.cache_clear()
        fresh, kept = tmp_path / "fresh.json", tmp_path / "kept.json"
        kept.write_text("{}")
        kept.chmod(0o644)
        atomic.write_json_atomic(fresh, {})   # mkstemp alone would leave 0600
        atomic.write_json_atomic(kept, {})
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o640
        assert stat.S_IMODE(kept.stat().st_mode) == 0o644
    finally:
        os.umask(mask)
        atomic._umask.cache_clear()


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.nii.gz"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.endswith(".nii.gz")
            tmp.write_text("partial")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert no_temp_files(tmp_path)


def test_a_failed_atomic_write_names_the_destination_not_its_temp_file(tmp_path):
    from napari_lvseg.io.atomic import write_text_atomic

    target = tmp_path / "eval.csv"
    target.mkdir()   # the temp file is written, then cannot replace a folder
    with pytest.raises(OSError) as info:
        write_text_atomic(target, "x")
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
    with pytest.raises(OSError) as info:   # a failure writing the temp file itself
        with atomic_path(tmp_path / "labels.nii.gz") as tmp:
            os.truncate(tmp, -1)
    assert info.value.filename == str(tmp_path / "labels.nii.gz")
    assert no_temp_files(tmp_path)


def test_importing_io_stays_cheap():
    code = ("import sys, napari_lvseg.io, napari_lvseg._reader, napari_lvseg._writer;"
            "print(sorted(m for m in ('nibabel', 'tifffile', 'pydicom', 'napari', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("spacing", [(0.7,), ()])
def test_a_damaged_pixel_spacing_leaves_the_voxel_size_unknown(tmp_path, spacing):
    from napari_lvseg.io import read_image

    for z in range(2):
        write_dicom(tmp_path / f"IM{z}", np.full((8, 8), 100 * z), series_uid="1.2", instance=z + 1,
                    pixel_spacing=spacing)
    vol = read_image(tmp_path)
    assert vol.data.shape == (2, 8, 8) and vol.meta["spacing"][1:] == (1.0, 1.0)


def test_series_further_down_are_searched_within_a_depth_and_a_folder_budget(tmp_path, monkeypatch):
    from napari_lvseg.io import dicom

    for path in ("A/S1", "A/S2", "B/S3", "C/D/E/F/S4"):   # S4 lies 5 levels down
        (tmp_path / path).mkdir(parents=True)
        write_dicom(tmp_path / path / "IM0", np.zeros((4, 4)), series_uid=path, instance=1)
    (tmp_path / "A" / "S1" / "deeper").mkdir()   # inside a series: not searched
    write_dicom(tmp_path / "A" / "S1" / "deeper" / "IM0", np.zeros((4, 4)), series_uid="x", instance=1)
    assert [p.relative_to(tmp_path).as_posix() for p in dicom.nested_series(tmp_path)] == ["A/S1", "A/S2", "B/S3"]
    monkeypatch.setattr(dicom, "NESTED_FOLDERS", 3)   # A, A/S1, A/S2: then the search stops
    assert [p.relative_to(tmp_path).as_posix() for p in dicom.nested_series(tmp_path)] == ["A/S1", "A/S2"]
