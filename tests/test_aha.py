"""AHA 17-segment analysis on phantoms with known answers, and the RV-insertion estimate on a drawn RV."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_lvseg.analysis import aha
from napari_lvseg.errors import LvsegError

SIZE, C = 64, 31.5


def grids():
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.hypot(yy - C, xx - C), aha.screen_angle(yy - C, xx - C)


def phantom(n=9, cap=False):
    """A stack narrowing towards index 0 (apex first, as EMIDEC): cavity r < inner, wall 10 px thick."""
    radius, _ = grids()
    slices = []
    for z in range(n):
        inner = 8 + z * 0.5
        s = np.zeros((SIZE, SIZE), np.uint8)
        s[radius < inner + 10] = 2
        s[radius < inner] = 1
        slices.append(s)
    if cap:   # a cavity-less cap in front of the apex
        s = np.zeros((SIZE, SIZE), np.uint8)
        s[radius < 6] = 2
        slices.insert(0, s)
    return np.stack(slices)


def draw_infarct(labels, z, lo_deg, hi_deg, transmural, no_reflow=False):
    radius, angle = grids()
    inner = radius[labels[z] == 1].max() if (labels[z] == 1).any() else 0.0
    wall = (labels[z] >= 2) & (angle >= lo_deg) & (angle < hi_deg)
    thick = 10.0
    labels[z][wall & (radius < inner + 0.5 + transmural * thick)] = 4 if no_reflow else 3


def test_levels_thirds_apex_first_and_cap():
    labels = phantom(9)
    assert aha.apex_is_first(labels)
    assert aha.slice_levels(labels) == ["apical"] * 3 + ["mid"] * 3 + ["basal"] * 3
    assert aha.slice_levels(labels[::-1]) == ["basal"] * 3 + ["mid"] * 3 + ["apical"] * 3
    assert aha.slice_levels(phantom(7)) == ["apical"] * 2 + ["mid"] * 3 + ["basal"] * 2
    capped = aha.slice_levels(phantom(9, cap=True))
    assert capped[0] == "apex" and capped[1:] == ["apical"] * 3 + ["mid"] * 3 + ["basal"] * 3
    empty = phantom(4)
    empty[0] = 0
    assert aha.slice_levels(empty)[0] is None


def test_infarct_in_segments_7_and_8_at_60_percent():
    labels = phantom(9)
    for z in (3, 4, 5):   # the mid slices; 7 anterior = 60..120 deg, 8 anteroseptal = 120..180 with insertion 120
        draw_infarct(labels, z, 60, 180, 0.6)
    result = aha.analyse(labels, insertion=120.0)
    rows = result.by_segment()
    for s in (7, 8):
        assert rows[s]["transmurality_pct"] == pytest.approx(60, abs=6)
        assert rows[s]["transmurality_class"] == "51-75"
        assert rows[s]["infarct_pct"] > 40
    for s in set(range(1, 17)) - {7, 8}:
        assert rows[s]["infarct_px"] == 0 and rows[s]["transmurality_class"] == "0", s
    assert not rows[17]["imaged"] and math.isnan(rows[17]["infarct_pct"])
    assert result.insertion.source == "user angle"
    # the same infarct read with the origin turned by 60 deg lands in the next segments, counter-clockwise: 8 and 9
    turned = aha.analyse(labels, insertion=60.0).by_segment()
    assert turned[8]["transmurality_class"] == "51-75" and turned[9]["transmurality_class"] == "51-75"
    assert turned[7]["infarct_px"] == 0


def test_no_reflow_marked_where_drawn_and_counted_as_infarct():
    labels = phantom(9)
    for z in (6, 7, 8):   # basal: 6 anterolateral (0..60 deg), transmural
        draw_infarct(labels, z, 0, 60, 1.0)
    draw_infarct(labels, 7, 10, 50, 0.3, no_reflow=True)   # no-reflow inside it, on one slice
    rows = aha.analyse(labels, insertion=120.0).by_segment()
    assert rows[6]["no_reflow"] and rows[6]["no_reflow_pct"] > 0
    assert rows[6]["transmurality_class"] == "76-100"
    assert rows[6]["infarct_px"] > rows[6]["no_reflow_px"] > 0
    assert [s for s, r in rows.items() if r["no_reflow"]] == [6]


def test_apical_segments_and_apex_cap():
    labels = phantom(9, cap=True)
    for z in (1, 2, 3):   # apical septal (14) spans 135..225 with insertion 120
        draw_infarct(labels, z, 135, 225, 1.0)
    labels[0][labels[0] == 2] = 3            # the cap, all infarct
    rows = aha.analyse(labels, insertion=120.0).by_segment()
    assert rows[14]["transmurality_class"] == "76-100"
    assert rows[13]["infarct_px"] == rows[15]["infarct_px"] == rows[16]["infarct_px"] == 0
    assert rows[17]["imaged"] and rows[17]["infarct_pct"] == 100.0 and rows[17]["transmurality_class"] == "76-100"


def test_segment_of_borders_and_classes():
    assert aha.segment_of([121, 179, 181, 241, 301, 359, 1, 61, 119], "basal", 120.0).tolist() == \
        [2, 2, 3, 4, 5, 5, 6, 1, 1]
    assert aha.segment_of([90, 180, 270, 0], "apical", 120.0).tolist() == [13, 14, 15, 16]
    assert [aha.transmurality_class(v) for v in (0, 0.1, 25, 25.5, 50, 60, 75, 76, 100)] == \
        ["0", "1-25", "1-25", "26-50", "26-50", "51-75", "51-75", "76-100", "76-100"]
    assert aha.transmurality_class(float("nan")) == ""


def test_explicit_levels_and_bad_ones():
    labels = phantom(6)
    levels = aha.parse_levels("aammbb", 6)
    result = aha.analyse(labels, levels="a,a,m,m,b,b", insertion=120.0)
    assert result.levels == levels
    with pytest.raises(LvsegError, match="3 levels given for a stack of 6"):
        aha.parse_levels("abm", 6)
    with pytest.raises(LvsegError, match="letters"):
        aha.parse_levels("abmmqq", 6)


def test_user_point_gives_its_angle():
    labels = phantom(9)
    # up and to the left of the centre of the middle slice: 135 deg on screen
    ins = aha.insertion_from_point(labels, (C - 10, C - 10))
    assert ins.angle_deg == pytest.approx(135, abs=1) and ins.source == "user point"
    assert aha.analyse(labels, insertion=(4, C + 10, C)).insertion.angle_deg == pytest.approx(270, abs=1)
    with pytest.raises(LvsegError, match="LV centre itself"):
        aha.insertion_from_point(labels, (4, C, C))


def test_rv_insertion_estimated_from_a_drawn_rv():
    labels = phantom(9)
    radius, angle = grids()
    image = np.full(labels.shape, 0.1)
    image[labels == 2] = 0.2
    image[labels == 1] = 1.0
    for z in range(len(labels)):
        epi = radius[labels[z] >= 1].max()
        rv = (radius > epi + 0.5) & (radius < epi + 14) & (angle >= 130) & (angle <= 230)
        image[z][rv] = 0.95   # RV blood pool on the screen's left, against the septum
    ins = aha.estimate_insertion(image, labels)
    assert ins.source == "image"
    assert ins.angle_deg == pytest.approx(130, abs=8)
    # no RV anywhere: the stated default
    flat = np.where(labels == 1, 1.0, 0.1)
    assert aha.estimate_insertion(flat, labels).source == "default"
    assert aha.estimate_insertion(flat, labels).angle_deg == aha.DEFAULT_INSERTION_DEG


def test_insertion_points_lie_on_the_wall_along_the_angle():
    labels = phantom(3)
    points = aha.insertion_points(labels, 180.0)
    assert len(points) == 3
    for z, y, x in points:
        assert labels[int(z), int(y), int(x)] == 2 and x < C and abs(y - C) <= 1
