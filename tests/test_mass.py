"""Masses in grams from a known voxel size; "pixel size unknown" without one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_lvseg.analysis import mass
from napari_lvseg.errors import LvsegError


def test_masses_with_known_spacing():
    labels = np.zeros((2, 10, 10), np.uint8)
    labels[0, :5, :4] = 2      # 20 px
    labels[1, :2, :5] = 3      # 10 px infarct
    labels[1, 5, :4] = 4       # 4 px no-reflow
    m = mass.masses(labels, (8.0, 1.5, 1.5))   # 18 mm3 a voxel
    assert m["known"] and m["voxel_mm3"] == pytest.approx(18.0)
    assert m["myocardium_px"] == 34 and m["infarct_px"] == 14 and m["no_reflow_px"] == 4
    assert m["myocardium_ml"] == pytest.approx(34 * 18 / 1000)
    assert m["myocardium_g"] == pytest.approx(34 * 18 / 1000 * 1.05)
    assert m["infarct_g"] == pytest.approx(14 * 18 / 1000 * 1.05)
    assert m["no_reflow_g"] == pytest.approx(4 * 18 / 1000 * 1.05)
    assert mass.format_mass(m["myocardium_g"]) == "0.6 g"


def test_unknown_pixel_size_gives_no_grams():
    labels = np.full((1, 4, 4), 2, np.uint8)
    for spacing in (None, (1.0, 1.0, 1.0)):
        m = mass.masses(labels, spacing)
        assert not m["known"] and m["note"] == "pixel size unknown"
        assert math.isnan(m["myocardium_g"]) and m["myocardium_px"] == 16
        assert mass.format_mass(m["myocardium_g"]) == "pixel size unknown"
    with pytest.raises(LvsegError, match="--spacing"):
        mass.check_spacing_option([1, -2, 3])
