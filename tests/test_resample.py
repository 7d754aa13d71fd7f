"""The model's view of an image (data/resample.py): a plain crop at zoom 1, a faithful round trip at other zooms."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.data.normalize import to_grid
from napari_lvseg.data.resample import View, paste_view, sample_view


def smooth_stack(shape):
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    one = np.sin(yy / 9.0) + np.cos(xx / 7.0)
    return np.stack([one, 2 * one]).astype(np.float32)


@pytest.mark.parametrize("center", [None, (40.3, 50.6), (5, 85)])
def test_zoom_1_is_the_crop_to_grid_makes(center):
    image = np.random.default_rng(0).normal(size=(2, 100, 90)).astype(np.float32)
    view = View.around(center, 1.0, 64, image.shape)
    grid, valid = sample_view(image, view)
    y0, x0 = (18, 13) if center is None else (round(center[0] - 32), round(center[1] - 32))
    assert view.box == (y0, x0) == to_grid(image, 64, center)[1]
    padded = np.pad(image, ((0, 0), (64, 64), (64, 64)))   # the crop by hand, zeros where it overhangs
    assert np.array_equal(grid, padded[:, y0 + 64:y0 + 128, x0 + 64:x0 + 128])
    ys, xs = view.window(image.shape)
    assert valid.sum() == (ys.stop - ys.start) * (xs.stop - xs.start)
    back = paste_view(grid, view, image.shape, fill=-1)
    assert np.array_equal(back[:, ys, xs], image[:, ys, xs]) and (back == -1).sum() == 2 * (9000 - valid.sum())


@pytest.mark.parametrize("zoom", [0.5, 0.8, 1.37, 2.0])
def test_sampling_and_pasting_back_keep_a_smooth_image(zoom):
    image = smooth_stack((200, 190))
    view = View.around((100, 95), zoom, 64, image.shape)
    assert view.center == pytest.approx((100, 95))
    grid, valid = sample_view(image, view)
    assert grid.shape == (2, 64, 64) and valid.any()
    back = paste_view(grid, view, image.shape, fill=np.nan)
    ys, xs = view.window(image.shape)
    assert ys.stop - ys.start == xs.stop - xs.start == round(64 / zoom)   # the view's width in image pixels
    seen = ~np.isnan(back)
    assert seen[:, ys, xs].all() and seen.sum() == 2 * round(64 / zoom) ** 2
    inner = seen.copy()
    inner[:, :4], inner[:, -4:], inner[:, :, :4], inner[:, :, -4:] = False, False, False, False
    assert np.abs(back - image)[inner].mean() < 0.02


def test_a_view_reads_the_image_at_its_zoom():
    """A disc of radius 20 seen at zoom 0.5 is a disc of radius 10 on the grid, where the view says it is."""
    yy, xx = np.mgrid[:200, :200]
    image = (np.hypot(yy - 90, xx - 120) <= 20).astype(np.float32)[None]
    view = View.around((90, 120), 0.5, 64, image.shape)
    grid, valid = sample_view(image, view)
    assert valid.all()
    area = (grid[0] > 0.5).sum()
    assert area == pytest.approx(np.pi * 10 ** 2, rel=0.1)
    gy, gx = np.argwhere(grid[0] > 0.5).mean(0)
    assert (gy, gx) == pytest.approx((31.5, 31.5), abs=0.6)


def test_outside_the_image_is_not_valid():
    image = np.ones((1, 50, 50), np.float32)
    view = View.around((5, 5), 2.0, 64, image.shape)   # the view hangs over the top-left corner
    grid, valid = sample_view(image, view)
    assert 0 < valid.sum() < valid.size and (grid[0][~valid] == 0).all() and (grid[0][valid] == 1).all()
