"""napari writers for label layers: NIfTI restores the source header exactly, TIFF writes uint8."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lvseg._reader import get_reader
from napari_lvseg._writer import write_labels_nifti, write_labels_tiff
from napari_lvseg.errors import LvsegError

RNG = np.random.default_rng(3)


def source_labels(tmp_path):
    affine = np.array([[0.0, 1.5, 0, 3], [-1.5, 0, 0, 7], [0, 0, 8.0, -2], [0, 0, 0, 1]])
    img = nib.Nifti1Image(RNG.integers(0, 5, (12, 10, 3)).astype(np.uint8), affine)
    img.header.set_qform(affine, code=1)
    nib.save(img, str(tmp_path / "src.nii.gz"))
    return tmp_path / "src.nii.gz"


def test_nifti_writer_restores_source_header(tmp_path):
    src = source_labels(tmp_path)
    (data, kwargs, layer_type), = get_reader(str(src))(str(src))
    assert layer_type == "labels"
    edited = data.copy()
    edited[0, 0, 0] = 4
    written = write_labels_nifti(str(tmp_path / "out.nii.gz"), edited, kwargs)
    assert written == [str(tmp_path / "out.nii.gz")]
    original, back = nib.load(str(src)), nib.load(written[0])
    np.testing.assert_array_equal(back.affine, original.affine)
    assert back.shape == original.shape and back.get_data_dtype() == np.uint8
    assert int(back.header["qform_code"]) == int(original.header["qform_code"])
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), edited.transpose(2, 1, 0))


def test_unedited_layer_writes_back_identical_voxels(tmp_path):
    src = source_labels(tmp_path)
    (data, kwargs, _), = get_reader(str(src))(str(src))
    out = write_labels_nifti(str(tmp_path / "same.nii.gz"), data, kwargs)[0]
    assert np.asanyarray(nib.load(out).dataobj).tobytes() == np.asanyarray(nib.load(str(src)).dataobj).tobytes()


def test_writers_add_missing_extension_and_work_without_metadata(tmp_path):
    labels = RNG.integers(0, 5, (2, 6, 7)).astype(np.int64)
    (nii,) = write_labels_nifti(str(tmp_path / "plain"), labels, {})
    assert nii.endswith("plain.nii.gz")
    back = nib.load(nii)
    np.testing.assert_array_equal(back.affine, np.eye(4))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), labels.transpose(2, 1, 0))
    (tif,) = write_labels_tiff(str(tmp_path / "plain"), labels, {"metadata": {}})
    assert tif.endswith("plain.tif")
    stored = tifffile.imread(tif)
    assert stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, labels)


def test_a_layer_drawn_in_napari_is_saved_with_its_scale_as_voxel_size(tmp_path):
    from napari_lvseg.io import read_image

    labels = RNG.integers(0, 5, (3, 6, 7)).astype(np.uint8)
    attributes = {"metadata": {}, "scale": (8.0, 0.7, 0.8)}
    (nii,) = write_labels_nifti(str(tmp_path / "drawn.nii.gz"), labels, attributes)
    assert nib.load(nii).header.get_zooms() == pytest.approx((0.8, 0.7, 8.0))
    (tif,) = write_labels_tiff(str(tmp_path / "drawn.tif"), labels, attributes)
    assert read_image(tif).meta["spacing"] == pytest.approx((8.0, 0.7, 0.8))


def test_writer_rejects_invalid_labels(tmp_path):
    with pytest.raises(LvsegError, match=r"bad.nii.gz: .*12"):
        write_labels_nifti(str(tmp_path / "bad.nii.gz"), np.full((3, 3), 12), {})
    assert list(tmp_path.iterdir()) == []
