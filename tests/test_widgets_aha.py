"""The panels fit a laptop screen (tabbed, scrolling), and the Segment panel's AHA section gives the core's figures:
levels, a draggable RV insertion point, the bullseye, threshold methods as a layer, PNG export and the report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_lvseg import labels as lb
from napari_lvseg.analysis import aha, thresholds
from napari_lvseg.data.phantom import make_phantom

pytest.importorskip("napari")

from qtpy.QtWidgets import QDockWidget  # noqa: E402

from napari_lvseg.widgets.segment import SegmentWidget  # noqa: E402

PANELS = ("Segment LV", "Correct and save", "Synthesize", "Train")


def test_the_four_panels_from_the_plugins_menu_are_tabs_that_fit_a_laptop_screen(make_napari_viewer, models_dir,
                                                                                  tmp_path, monkeypatch, qtbot,
                                                                                  errors):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    window = viewer.window._qt_window
    docks = [viewer.window.add_plugin_dock_widget("napari-lvseg", name)[0] for name in PANELS]

    def tabbed():
        return all(set(window.tabifiedDockWidgets(dock)) == set(docks) - {dock} for dock in docks)

    qtbot.waitUntil(tabbed, timeout=5000)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1366 and hint.height() <= 768, (hint.width(), hint.height())
    for dock in docks:   # each panel scrolls instead of asking for its full height
        assert dock.widget()._lvseg_scroll is not None and dock.widget().minimumSizeHint().height() <= 200
    # a panel opened again (menu entry pressed twice) stays one tab; another window area is left alone
    viewer.window.add_plugin_dock_widget("napari-lvseg", "Train")
    qtbot.wait(50)
    assert tabbed() and len([d for d in window.findChildren(QDockWidget) if d in docks]) == 4
    assert errors == []


# ------------------------------------------------------------------------------------------ the AHA section

SIZE, C = 64, 31.5


def ring_stack(n=9):
    """test_aha's phantom: a stack narrowing towards index 0 (apex first), cavity r < inner, wall 10 px; infarct
    60 % transmural at 60-180 deg on screen in the mid slices (segments 7 and 8 with the insertion at 120 deg)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    radius, angle = np.hypot(yy - C, xx - C), aha.screen_angle(yy - C, xx - C)
    slices = []
    for z in range(n):
        inner = 8 + z * 0.5
        s = np.zeros((SIZE, SIZE), np.uint8)
        s[radius < inner + 10] = lb.MYOCARDIUM
        s[radius < inner] = lb.CAVITY
        if z in (3, 4, 5):
            s[(s == lb.MYOCARDIUM) & (angle >= 60) & (angle < 180) & (radius < inner + 0.5 + 6)] = lb.INFARCT
        slices.append(s)
    return np.stack(slices)


@pytest.fixture
def panel(make_napari_viewer, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def open_section(widget, labels_layer, qtbot):
    """Labels as segmenting attaches them, the section opened, its first result awaited."""
    widget.attach(labels_layer)
    section = widget.aha
    section.set_expanded(True)
    qtbot.waitUntil(lambda: section.result is not None and section.worker is None, timeout=20_000)
    return section


def wait_for(section, qtbot, condition):
    qtbot.waitUntil(lambda: condition() and section.worker is None and not section.timer.isActive()
                    and not section.point_timer.isActive(), timeout=20_000)


def same_rows(got, want):
    for a, b in zip(got, want):
        assert a.keys() == b.keys()
        for key in a:
            if isinstance(a[key], float) and math.isnan(a[key]):
                assert math.isnan(b[key]), (a["segment"], key)
            else:
                assert a[key] == b[key], (a["segment"], key, a[key], b[key])


def test_the_section_gives_the_cores_figures_on_a_phantom(panel, qtbot, errors):
    viewer, widget = panel
    image, labels = make_phantom(n_slices=8, size=128, seed=0)
    viewer.add_image(image, name="phantom")
    layer = viewer.add_labels(labels, name="phantom labels", metadata={"lvseg_image": "phantom"})
    assert widget.aha.result is None and "phantom labels RV insertion" not in viewer.layers   # closed: no work
    section = open_section(widget, layer, qtbot)

    core = aha.analyse(labels, image)
    same_rows(section.result.rows, core.rows)
    assert section.result.levels == core.levels and section.levels_edit.text() == "aaammbbb"
    assert section.result.insertion.source == "image"
    assert section.result.insertion.angle_deg == core.insertion.angle_deg
    points = viewer.layers["phantom labels RV insertion"]
    np.testing.assert_allclose(points.data, aha.insertion_points(labels, core.insertion.angle_deg))
    methods = thresholds.reference_methods(image, labels)
    assert [m["method"] for m in section.methods] == ["labels", "2-SD", "3-SD", "5-SD", "FWHM"]
    for got, want in zip(section.methods, methods):
        assert got["infarct_px"] == want["infarct_px"]
        assert section.methods_table.item(section.methods.index(got), 2).text() == str(want["infarct_px"])
    assert not section.bullseye.pixmap().isNull() and section.bullseye.pixmap().width() > 200
    assert errors == []


def test_edits_levels_and_a_dragged_insertion_point_change_the_segment_figures(panel, qtbot, errors):
    viewer, widget = panel
    labels = ring_stack()
    layer = viewer.add_labels(labels, name="rings")
    section = open_section(widget, layer, qtbot)   # no image of this shape: the stated default insertion, 120 deg
    rows = section.result.by_segment()
    assert section.result.insertion.source == "default"
    assert rows[7]["transmurality_class"] == rows[8]["transmurality_class"] == "51-75"
    assert rows[9]["infarct_px"] == 0

    # drag the mid slice's point to 60 deg on screen (up and right of the centre): the origin turns by 60 deg
    points = viewer.layers["rings RV insertion"]
    data = np.array(points.data)
    z = 4
    row = int(np.flatnonzero(data[:, 0] == z)[0])
    data[row, 1:] = (C - 15 * math.sin(math.radians(60)), C + 15 * math.cos(math.radians(60)))
    points.data = data
    wait_for(section, qtbot, lambda: section.result.insertion.source == "user point")
    assert section.result.insertion.angle_deg == pytest.approx(60, abs=2)
    turned = section.result.by_segment()
    assert turned[8]["transmurality_class"] == turned[9]["transmurality_class"] == "51-75"
    assert turned[7]["infarct_px"] == 0
    same_rows(section.result.rows, aha.analyse(labels, insertion=section.result.insertion).rows)
    # every slice's marker follows the new angle
    np.testing.assert_allclose(points.data, aha.insertion_points(labels, section.result.insertion.angle_deg))

    # an edit of the labels is followed (debounced): infarct painted at 285-315 deg
    yy, xx = np.mgrid[:SIZE, :SIZE]
    wall = (layer.data[4] == lb.MYOCARDIUM) & (np.abs(aha.screen_angle(yy - C, xx - C) - 300) < 15)
    before = section.result
    layer.data_setitem((np.full(wall.sum(), 4), *np.nonzero(wall)), lb.INFARCT)
    wait_for(section, qtbot, lambda: section.result is not before)
    infarct = sum(r["infarct_px"] for r in section.result.rows)
    assert infarct == sum(r["infarct_px"] for r in before.rows) + wall.sum()

    # levels given by hand: every slice mid puts all infarct into the mid ring
    section.levels_edit.setText("m" * 9)
    section.levels_edit.editingFinished.emit()
    wait_for(section, qtbot, lambda: section.result.levels == ["mid"] * 9)
    assert all(not r["imaged"] for r in section.result.rows if r["level"] != "mid")
    section.set_levels("bad")
    assert errors and "levels" in errors[-1]


def test_threshold_layer_export_png_and_report(panel, qtbot, tmp_path, errors):
    viewer, widget = panel
    image, labels = make_phantom(n_slices=8, size=128, seed=1)
    viewer.add_image(image, name="case", scale=(8.0, 1.4, 1.4))
    layer = viewer.add_labels(labels, name="case labels", scale=(8.0, 1.4, 1.4))
    section = open_section(widget, layer, qtbot)

    threshold = section.show_method("3-SD")
    assert threshold.name == "case labels 3-SD" and tuple(threshold.scale) == (8.0, 1.4, 1.4)
    assert set(np.unique(threshold.data)) <= {0, lb.INFARCT} and (threshold.data > 0).any()
    assert not (threshold.data[~lb.region(labels, "myocardium")]).any()   # only inside the myocardium
    np.testing.assert_array_equal(threshold.data, thresholds.n_sd(image, labels, 3)["labels"])
    assert section.show_method("3-SD") is threshold and len(viewer.layers) == 4   # pressed again: updated
    assert viewer.layers.selection.active is layer   # painting goes on in the labels

    png = section.export_png(tmp_path / "bullseye.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    section.export_png(tmp_path / "bullseye.jpg")
    assert errors and ".png" in errors[-1]

    section.write_report(tmp_path / "report.png")
    qtbot.waitUntil(lambda: (tmp_path / "report.csv").exists(), timeout=60_000)
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG"
    assert "case" in (tmp_path / "report.csv").read_text()
    qtbot.waitUntil(lambda: "report written" in section.status.text(), timeout=5000)


def test_labels_without_myocardium_and_a_removed_layer_say_so(panel, qtbot, errors):
    viewer, widget = panel
    layer = viewer.add_labels(np.zeros((3, 32, 32), np.uint8), name="empty")
    widget.attach(layer)
    widget.aha.set_expanded(True)
    qtbot.waitUntil(lambda: "no myocardium" in widget.aha.status.text(), timeout=5000)
    widget.aha.export_png()
    assert errors and "no AHA figures" in errors[-1]
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: widget.aha.labels_layer() is None, timeout=5000)
    assert widget.aha.result is None
