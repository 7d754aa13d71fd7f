"""Training slices: fine-tuning reads another site's cases at the zoom segmenting reads them at."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.data.datasets import load_source, training_zoom
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.locate import lv_diameter

EXPECTED = (61.4, 69.7, 78.1)   # the bundled model's card: LV diameters it trained on (low, median, high)


def scaled(image, labels, factor):
    """The phantom at pixels 1/factor the size: image bilinear, labels by their indicator maps."""
    from skimage.transform import resize

    shape = (len(image), round(image.shape[1] * factor), round(image.shape[2] * factor))
    img = resize(image, shape, order=1, preserve_range=True).astype(np.float32)
    onehot = np.stack([resize((labels == k).astype(np.float32), shape, order=1) for k in range(5)])
    return img, onehot.argmax(0).astype(np.uint8)


@pytest.fixture(scope="module")
def phantom():
    image, labels = make_phantom(n_slices=3, seed=1)
    return np.asarray(image, np.float32), np.asarray(labels, np.uint8)


def test_training_zoom_brings_an_lv_into_the_expected_range_as_segmenting_does(phantom):
    image, labels = phantom
    own = lv_diameter(labels)
    assert training_zoom(labels, None) == 1.0
    # a phantom LV scaled to the range's ends and beyond: inside it (or within the 1.1x tolerance) zoom 1
    assert training_zoom(scaled(image, labels, 70.0 / own)[1], EXPECTED) == 1.0
    small = scaled(image, labels, 40.0 / own)[1]
    assert training_zoom(small, EXPECTED) == pytest.approx(61.4 / lv_diameter(small), rel=1e-6)
    large = scaled(image, labels, 110.0 / own)[1]
    assert training_zoom(large, EXPECTED) == pytest.approx(78.1 / lv_diameter(large), rel=1e-6)


def test_a_fine_tuning_source_of_another_pixel_size_is_read_at_the_expected_lv_size(phantom, tmp_path):
    image, labels = phantom
    big_pixels = scaled(image, labels, 40.0 / lv_diameter(labels))   # an LV of 40 px: pixels ~1.7x larger
    folder = PairFolder(tmp_path / "site")
    folder.add(*big_pixels, origin="corrected", name="case_A")
    plain = load_source(folder.root, 128, None)
    zoomed = load_source(folder.root, 128, None, expected=EXPECTED)
    assert plain.images.shape == zoomed.images.shape == (3, 128, 128)
    assert lv_diameter(plain.labels) == pytest.approx(40.0, abs=1.0)
    assert lv_diameter(zoomed.labels) == pytest.approx(61.4, abs=1.5)   # the range's nearer end, as segmenting
    assert set(np.unique(zoomed.labels)) == set(np.unique(big_pixels[1]))   # no class lost
    # the LV in the middle of the grid, the image normalised over the view
    ys, xs = np.nonzero(zoomed.labels.max(0))
    assert abs(ys.mean() - 63.5) < 4 and abs(xs.mean() - 63.5) < 4
    assert np.isfinite(zoomed.images).all() and zoomed.images.std() > 0.1


def write_case(root, name, image, labels, pixel_mm):
    """An EMIDEC-layout case whose NIfTI headers record ``pixel_mm`` in-plane pixels (8 mm slices)."""
    import nibabel as nib

    affine = np.diag([pixel_mm, pixel_mm, 8.0, 1.0])
    for sub, data in (("Images", image.astype(np.float32)), ("Contours", labels.astype(np.uint8))):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(np.transpose(data, (2, 1, 0)), affine), str(root / name / sub / f"{name}.nii.gz"))


def test_cases_whose_files_record_pixel_sizes_are_read_at_their_median_and_the_card_says_so(phantom, tmp_path):
    """Two cases of one heart at 1.4 and 2.8 mm: a new model reads both at 2.1 mm, where their LVs are one size;
    its card records 2.1 mm, and segmenting a 2.8 mm file takes the ratio as its zoom."""
    from napari_lvseg.data.datasets import common_pixel_size
    from napari_lvseg.engine import TrainOptions, train
    from napari_lvseg.locate import expected_pixel_size
    from napari_lvseg.models.registry import load_model

    image, labels = phantom
    write_case(tmp_path / "cases", "Case_N001", image, labels, 1.4)
    write_case(tmp_path / "cases", "Case_N002", *scaled(image, labels, 0.5), 2.8)
    native = load_source(tmp_path / "cases", 128)
    assert native.pixel_sizes == {"Case_N001": pytest.approx(1.4), "Case_N002": pytest.approx(2.8)}
    assert common_pixel_size([native]) == pytest.approx(2.1)
    sizes = {case: lv_diameter(lab) for case, _, lab in native.volumes()}
    assert sizes["Case_N001"] == pytest.approx(2 * sizes["Case_N002"], rel=0.05)   # one heart, two pixel sizes
    read = load_source(tmp_path / "cases", 128, read_at=2.1)
    sizes = {case: lv_diameter(lab) for case, _, lab in read.volumes()}
    assert sizes["Case_N001"] == pytest.approx(sizes["Case_N002"], rel=0.05)
    assert sizes["Case_N001"] == pytest.approx(lv_diameter(labels) * 1.4 / 2.1, rel=0.05)
    # a case whose header carries the 1 mm placeholder: no common pixel size
    write_case(tmp_path / "cases", "Case_N003", image, labels, 1.0)
    assert common_pixel_size([load_source(tmp_path / "cases", 128)]) is None
    import shutil

    shutil.rmtree(tmp_path / "cases" / "Case_N003")
    opts = TrainOptions(data=[str(tmp_path / "cases")], out=str(tmp_path / "run"), epochs=1, samples_per_epoch=4,
                        batch_size=2, size=128, width=4, depth=3, threads=1, val_fraction=0.0, augment="light")
    list(train(opts))
    _, card = load_model(str(tmp_path / "run"))
    assert expected_pixel_size(card) == pytest.approx(2.1)
    lv = card.extra["expects"]["lv_diameter_px"]
    assert lv == pytest.approx(lv_diameter(labels) * 1.4 / 2.1, rel=0.05)   # measured on the grid it read at


def test_a_pair_keeps_the_pixel_size_it_was_saved_with(phantom, tmp_path):
    from napari_lvseg.locate import pixel_size_mm

    image, labels = phantom
    folder = PairFolder(tmp_path / "site")
    folder.add(image, labels, origin="corrected", name="tif", spacing=(8.0, 1.7, 1.7))
    folder.add(image, labels, origin="corrected", name="nii", spacing=(8.0, 1.7, 1.7), fmt="nifti")
    folder.add(image, labels, origin="corrected", name="none")
    assert pixel_size_mm(folder.read_with_spacing("tif")[2]) == pytest.approx(1.7)
    assert pixel_size_mm(folder.read_with_spacing("nii")[2]) == pytest.approx(1.7)
    assert pixel_size_mm(folder.read_with_spacing("none")[2]) is None
    assert load_source(folder.root, 128).pixel_sizes == {"tif": pytest.approx(1.7), "nii": pytest.approx(1.7),
                                                         "none": None}
