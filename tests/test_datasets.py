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
