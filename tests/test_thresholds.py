"""n-SD and FWHM reference methods on a phantom with known intensities."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.analysis import thresholds
from napari_lvseg.errors import LvsegError


def phantom():
    """One slice: remote myocardium 45/55 alternating (mean 50, SD 5 exactly), an infarct patch at 200, a grey
    patch at 120 and a faint one at 58 (labelled normal), cavity 300 (outside the myocardium), background 0."""
    labels = np.zeros((40, 40), np.uint8)
    labels[5:35, 5:35] = 2
    labels[15:25, 15:25] = 1
    image = np.zeros(labels.shape)
    image[labels == 2] = np.where((np.indices(labels.shape).sum(axis=0) % 2) == 0, 45.0, 55.0)[labels == 2]
    image[labels == 1] = 300.0
    labels[5:10, 5:15] = 3
    image[5:10, 5:15] = 200.0
    image[5:10, 20:25] = 120.0   # labelled 2 in the labels, but bright
    image[30:35, 20:25] = 90.0
    return image, labels


def test_n_sd_finds_what_is_brighter_than_n_sd():
    image, labels = phantom()
    two = thresholds.n_sd(image, labels, 2)
    assert two["thresholds"][0] == pytest.approx(image[labels == 2].mean() + 2 * image[labels == 2].std())
    found = two["labels"] == 3
    assert found[5:10, 5:15].all() and found[5:10, 20:25].all() and found[30:35, 20:25].all()
    assert not found[labels == 1].any()   # the bright cavity lies outside the myocardium
    assert two["infarct_px"] == 50 + 25 + 25
    assert two["myocardium_px"] == 800 and two["infarct_pct"] == pytest.approx(100 * 100 / 800)
    # a remote mask of the dim pixels alone: mean 50, SD 5 -> 3-SD 65, 5-SD 75 both still find 90, 120 and 200
    remote = (labels == 2) & (image < 60)
    five = thresholds.n_sd(image, labels, 5, remote=remote)
    assert five["thresholds"][0] == pytest.approx(75.0)
    assert five["infarct_px"] == 100
    assert set(np.unique(five["labels"])) == {0, 3}


def test_fwhm_half_way_from_the_floor_to_the_infarct_max():
    image, labels = phantom()
    result = thresholds.fwhm(image, labels)
    assert result["thresholds"][0] == pytest.approx(100.0)   # floor 0, max 200
    found = result["labels"] == 3
    assert found[5:10, 5:15].all() and found[5:10, 20:25].all()
    assert not found[30:35, 20:25].any()   # 90 < 100
    # an offset image (clipped data): the threshold moves with the floor
    shifted = thresholds.fwhm(image + 1000, labels)
    assert shifted["thresholds"][0] == pytest.approx(1100.0)
    assert np.array_equal(shifted["labels"], result["labels"])


def test_no_reflow_filled_and_methods_table():
    image, labels = phantom()
    labels[7, 7] = 4
    image[7, 7] = 10.0   # dark core
    assert thresholds.n_sd(image, labels, 2)["labels"][7, 7] == 3
    assert thresholds.n_sd(image, labels, 2, fill_no_reflow=False)["labels"][7, 7] == 0
    rows = thresholds.reference_methods(image, labels)
    assert [r["method"] for r in rows] == ["labels", "2-SD", "3-SD", "5-SD", "FWHM"]
    assert rows[0]["infarct_px"] == 50


def test_bad_inputs():
    image, labels = phantom()
    with pytest.raises(LvsegError, match="differ"):
        thresholds.n_sd(image[:10], labels)
    only_infarct = np.where(labels == 2, 3, labels)
    with pytest.raises(LvsegError, match="no remote myocardium"):
        thresholds.n_sd(image, only_infarct)
