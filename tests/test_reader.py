"""napari reader contribution: which paths it takes and the layers it returns (no viewer needed)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lvseg._reader import get_reader, labels_layer_kwargs, read_path
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import COLORS

RNG = np.random.default_rng(2)


def make_case(root, name, z=4, bad_value=None):
    image = RNG.uniform(0, 100, (128, 128, z)).astype(np.float32)
    labels = RNG.integers(0, 5, (128, 128, z)).astype(np.uint8)
    if bad_value is not None:
        labels[1, 2, 0] = bad_value
    for sub, data in (("Images", image), ("Contours", labels)):
        (root / name / sub).mkdir(parents=True)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(root / name / sub / f"{name}.nii.gz"))
    return root / name, image, labels


def test_declines_what_is_not_ours(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "unrelated").mkdir()
    (tmp_path / "unrelated" / "a.txt").write_text("x")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader(str(tmp_path / "unrelated")) is None
    assert get_reader([str(tmp_path / "notes.txt")]) is None


def test_case_folder_gives_image_and_labels_slice_axis_first(tmp_path):
    case, image, labels = make_case(tmp_path, "Case_R1")
    layers = get_reader(str(case))(str(case))
    assert [layer_type for _, _, layer_type in layers] == ["image", "labels"]
    (img_data, img_kwargs, _), (lab_data, lab_kwargs, _) = layers
    assert img_data.shape == lab_data.shape == (4, 128, 128)
    np.testing.assert_array_equal(img_data, image.transpose(2, 1, 0))
    np.testing.assert_array_equal(lab_data, labels.transpose(2, 1, 0))
    assert lab_data.dtype == np.uint8
    assert img_kwargs["name"] == "Case_R1" and lab_kwargs["name"] == "Case_R1 labels"
    assert img_kwargs["metadata"]["lvseg_source"]["format"] == "nifti"
    assert lab_kwargs["metadata"]["lvseg_source"]["source"].endswith("Contours/Case_R1.nii.gz")
    # the labels name their image, as a prediction does: the Correct panel pairs them with no other image
    assert lab_kwargs["metadata"]["lvseg_source_path"] == img_kwargs["metadata"]["lvseg_source"]["source"]
    colours = lab_kwargs["colormap"].color_dict
    np.testing.assert_allclose(colours[3], COLORS[3])


def test_real_case_folder(emidec_cases):
    case = emidec_cases[0]
    layers = get_reader(str(case))(str(case))
    assert [t for _, _, t in layers] == ["image", "labels"]
    assert layers[0][0].shape[1:] == (128, 128) and layers[0][0].shape == layers[1][0].shape
    assert set(np.unique(layers[1][0])) <= {0, 1, 2, 3, 4}
    # these crops carry 1 mm placeholder voxels (the data's README): no scale, sizes stay in pixels
    assert all("scale" not in kwargs for _, kwargs, _ in layers)


def test_voxel_size_becomes_the_layer_scale(tmp_path):
    case, _, _ = make_case(tmp_path, "Case_U1")
    for sub in ("Images", "Contours"):   # the same case with 1.4 x 1.5 mm pixels, 8 mm apart
        path = case / sub / "Case_U1.nii.gz"
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj), np.diag([1.4, 1.5, 8.0, 1.0])), path)
    layers = get_reader(str(case))(str(case))
    assert [kwargs["scale"] for _, kwargs, _ in layers] == [pytest.approx((8.0, 1.5, 1.4))] * 2
    img = nib.Nifti1Image(RNG.uniform(0, 1, (20, 30)).astype(np.float32), np.diag([0.7, 0.9, 1.0, 1.0]))
    nib.save(img, tmp_path / "slice.nii.gz")
    (data, kwargs, _), = get_reader(str(tmp_path / "slice.nii.gz"))(str(tmp_path / "slice.nii.gz"))
    assert data.shape == (30, 20) and kwargs["scale"] == pytest.approx((0.9, 0.7))


def test_dataset_folder_opens_every_case_showing_the_first(tmp_path):
    make_case(tmp_path, "Case_A", z=2)
    make_case(tmp_path, "Case_B", z=3)
    layers = get_reader(str(tmp_path))(str(tmp_path))
    assert [kw["name"] for _, kw, _ in layers] == ["Case_A", "Case_A labels", "Case_B", "Case_B labels"]
    assert [kw["visible"] for _, kw, _ in layers] == [True, True, False, False]


def test_label_like_nifti_opens_as_labels_others_as_image(tmp_path):
    nib.save(nib.Nifti1Image(RNG.integers(0, 5, (9, 8, 2)).astype(np.float32), np.eye(4)), str(tmp_path / "m.nii.gz"))
    nib.save(nib.Nifti1Image(RNG.normal(size=(9, 8, 2)).astype(np.float32), np.eye(4)), str(tmp_path / "i.nii"))
    (data, kwargs, layer_type), = get_reader(str(tmp_path / "m.nii.gz"))(str(tmp_path / "m.nii.gz"))
    assert layer_type == "labels" and data.dtype == np.uint8 and data.shape == (2, 8, 9) and kwargs["name"] == "m"
    (_, kwargs, layer_type), = get_reader(str(tmp_path / "i.nii"))(str(tmp_path / "i.nii"))
    assert layer_type == "image" and kwargs["name"] == "i"


def test_tiff_and_several_paths(tmp_path):
    tifffile.imwrite(str(tmp_path / "s.tif"), RNG.normal(size=(3, 6, 7)).astype(np.float32),
                     photometric="minisblack")
    tifffile.imwrite(str(tmp_path / "t.tiff"), RNG.normal(size=(6, 7)).astype(np.float32))
    paths = [str(tmp_path / "s.tif"), str(tmp_path / "t.tiff")]
    layers = get_reader(paths)(paths)
    assert [(d.shape, t) for d, _, t in layers] == [((3, 6, 7), "image"), ((6, 7), "image")]


def test_a_labels_tiff_saved_by_the_plugin_reopens_as_labels(tmp_path):
    from napari_lvseg.io import write_labels

    labels = RNG.integers(0, 5, (2, 6, 7)).astype(np.uint8)
    write_labels(tmp_path / "mask.tif", labels)
    tifffile.imwrite(str(tmp_path / "float.tif"), labels.astype(np.float32))   # integer-valued, but an image
    (data, kwargs, layer_type), = read_path(tmp_path / "mask.tif")
    assert layer_type == "labels" and np.array_equal(data, labels) and kwargs["name"] == "mask"
    assert read_path(tmp_path / "float.tif")[0][2] == "image"


def test_bad_input_raises_one_line_error_naming_the_file(tmp_path):
    case, _, _ = make_case(tmp_path, "Case_Bad", bad_value=9)
    reader = get_reader(str(case))
    with pytest.raises(LvsegError, match=r"Case_Bad.nii.gz: .*9") as info:
        reader(str(case))
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"junk")
    with pytest.raises(LvsegError, match="broken.nii.gz"):
        get_reader(str(broken))(str(broken))


def test_labels_layer_kwargs_use_fixed_colours():
    colormap = labels_layer_kwargs()["colormap"]
    for value, rgba in COLORS.items():
        np.testing.assert_allclose(colormap.color_dict[value], rgba)


def test_dicom_folder_opens_as_image_stack(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    template = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    folder = tmp_path / "series"
    folder.mkdir()
    for name, z in (("c", 20.0), ("a", 0.0), ("b", 10.0)):  # file names do not follow anatomy
        ds = template.copy()
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.InstanceNumber = 1
        pixels = ds.pixel_array.copy()
        pixels[0, 0] = int(z)
        ds.PixelData = pixels.tobytes()
        ds.save_as(str(folder / name))
    (folder / "README").write_text("not dicom")
    reader = get_reader(str(folder))
    assert reader is not None
    (data, kwargs, layer_type), = reader(str(folder))
    assert layer_type == "image" and kwargs["name"] == "series"
    assert data.shape == (3, 64, 64) and data.dtype == np.float32
    np.testing.assert_array_equal(data[:, 0, 0], [0.0, 10.0, 20.0])


def test_napari_accepts_the_layer_data(tmp_path):
    from napari.layers import Layer

    case, _, _ = make_case(tmp_path, "Case_N", z=2)
    layers = [Layer.create(data, kwargs, layer_type) for data, kwargs, layer_type in get_reader(str(case))(str(case))]
    assert [type(layer).__name__ for layer in layers] == ["Image", "Labels"]
    np.testing.assert_allclose(layers[1].colormap.map(np.array([2]))[0], COLORS[2])


def test_a_media_export_opens_each_series_that_reads_as_a_stack(tmp_path):
    from test_io import write_dicom

    export = tmp_path / "export"   # PATIENT/STUDY/SERIES folders of suffix-less files, as a scanner's CD holds them
    for series, uid, z_of in (("SE1", "1.1", lambda k: 8.0 * k), ("SE2", "1.2", lambda k: 6.0 * k),
                              ("SE3", "1.3", lambda k: 0.0)):   # SE3: a cine's phases, all at one position
        (export / "P1" / series).mkdir(parents=True)
        for k in range(3):
            write_dicom(export / "P1" / series / f"IM{k}", np.full((8, 8), 10 * k), series_uid=uid, instance=k + 1,
                        position=[0.0, 0.0, z_of(k)], orientation=[1, 0, 0, 0, 1, 0])
    reader = get_reader(str(export))
    assert reader is not None
    with pytest.warns(UserWarning, match=r"opened 2 series; left out 1: P1/SE3 \(.*two images at one slice position"):
        layers = reader(str(export))
    assert [(kwargs["name"], kwargs["visible"], data.shape) for data, kwargs, _ in layers] == [
        ("P1/SE1", True, (3, 8, 8)), ("P1/SE2", False, (3, 8, 8))]
    assert layers[1][1]["scale"] == pytest.approx((6.0, 0.7, 0.8))
    # nothing in it reads as a stack: one line naming the export and each series' problem
    for series in ("SE1", "SE2"):
        for k in range(3):
            (export / "P1" / series / f"IM{k}").unlink()
        (export / "P1" / series).rmdir()
    with pytest.raises(LvsegError, match=r"export: no series of this export reads as one stack: P1/SE3 \(.*two "
                                         r"images at one slice position"):
        reader(str(export))
