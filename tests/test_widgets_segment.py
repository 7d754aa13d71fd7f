"""Segment LV dock widget: segmentation into a coloured labels layer, class tools, quantification, bad input."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_lvseg import labels as lb
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.inference import SegmentationResult

pytest.importorskip("napari")

from napari_lvseg.widgets._testing import StepGate, save_tiny_segmentation_model  # noqa: E402
from napari_lvseg.widgets.segment import SegmentLogic, SegmentWidget  # noqa: E402


@pytest.fixture
def viewer_and_widget(make_napari_viewer, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    save_tiny_segmentation_model(models_dir, "tiny-seg")
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _phantom_layer(viewer, name="case"):
    image, labels = make_phantom(n_slices=2, size=128, seed=0)
    return viewer.add_image(image, name=name), labels


def test_segment_runs_in_worker_and_adds_coloured_editable_labels(viewer_and_widget, qtbot, errors):
    viewer, widget = viewer_and_widget
    _phantom_layer(viewer)
    assert widget.model_picker.names()[-1] == "tiny-seg"  # after any bundled model
    assert widget.model_picker.select("tiny-seg")
    widget.uncertainty.setChecked(True)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert errors == []
    layer = viewer.layers["case labels"]
    assert layer.data.shape == (2, 128, 128) and layer.data.dtype == np.uint8
    assert set(np.unique(layer.data)) <= set(range(lb.N_CLASSES))
    for value in lb.FOREGROUND:
        assert np.allclose(layer.colormap.color_dict[value], lb.COLORS[value])
    assert list(layer.features["class"]) == [lb.NAMES[v] for v in range(lb.N_CLASSES)]
    assert np.array_equal(layer.metadata["lvseg_prediction"], layer.data)
    assert layer.editable
    unc = viewer.layers["case uncertainty"].data
    assert unc.shape == (2, 128, 128) and 0.0 <= unc.min() and unc.max() <= 1.0
    assert widget.table.rowCount() == 3 and widget.table.item(2, 0).text() == "total"
    assert widget.table.columnCount() == 5   # no voxel size: pixels and percentages only

    # A second run replaces the labels layer instead of stacking new ones.
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert [layer.name for layer in viewer.layers].count("case labels") == 1


@pytest.mark.parametrize("stop", ["second press", "closing the panel"])
def test_segmentation_stops_between_steps_and_leaves_the_layers_alone(viewer_and_widget, qtbot, monkeypatch, errors,
                                                                       stop):
    from napari_lvseg import inference

    def steps(image, model, **kwargs):
        for k in range(1, 51):
            yield k, 50
        return _fake_result(np.ones(image.shape, np.uint8))

    gate = StepGate(steps)

    monkeypatch.setattr(inference, "segment_steps", gate)
    viewer, widget = viewer_and_widget
    _phantom_layer(viewer)
    names = [layer.name for layer in viewer.layers]
    worker = widget.run()
    assert widget.run_button.text() == "Stop"
    worker.yielded.connect(lambda _: gate.stop(stop, widget, viewer))
    gate.connected.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=20_000)
    assert errors == [] and gate.steps in (1, 2) and [layer.name for layer in viewer.layers] == names
    assert widget.status.text() == "segmentation stopped; labels unchanged"
    assert widget.run_button.text() == "Segment" and widget.run_button.isEnabled()


def _fake_result(labels):
    return SegmentationResult(labels=labels.copy(), model="fake")


def test_workers_leave_qt_pool_threads_free(viewer_and_widget, qtbot):
    """napari runs workers in Qt's global thread pool, where Qt also scales the frames of napari's activity
    animation. With the pool full, the main thread waited there holding the GIL the worker needed: a deadlock at
    0 % CPU (a 1-core machine has a pool of 1). So two threads stay free beside the running workers."""
    import threading

    from qtpy.QtCore import QThreadPool

    from napari_lvseg.widgets._common import start_worker

    pool = QThreadPool.globalInstance()
    size = pool.maxThreadCount()
    release = threading.Event()
    pool.setMaxThreadCount(1)   # as on a 1-core machine
    try:
        worker = start_worker(lambda: release.wait(10), description="waiting")
        qtbot.waitUntil(lambda: pool.activeThreadCount() >= 1, timeout=5_000)
        assert pool.maxThreadCount() - pool.activeThreadCount() >= 2
        with qtbot.waitSignal(worker.finished, timeout=15_000):
            release.set()
    finally:
        release.set()
        pool.setMaxThreadCount(max(size, pool.maxThreadCount()))


def test_class_buttons_keys_visibility_table_and_csv(viewer_and_widget, qtbot, tmp_path, errors):
    viewer, widget = viewer_and_widget
    image_layer, truth = _phantom_layer(viewer)
    layer = widget.show_result(_fake_result(truth), "case", "case.nii.gz", image_layer)
    assert layer.name == "case labels"

    widget.pick_class(lb.INFARCT)
    assert layer.selected_label == lb.INFARCT and layer.mode == "paint"
    # Keys 1..4 are bound on the labels layer itself.
    bound = {str(k): f for k, f in layer.keymap.items()}
    assert {"1", "2", "3", "4"} <= set(bound)
    bound["2"](layer)
    assert layer.selected_label == lb.MYOCARDIUM
    # ...and they win over napari's own Labels shortcuts when pressed in the canvas.
    layer.mode = "pan_zoom"
    viewer.layers.selection.active = layer
    keys = viewer.window._qt_viewer.canvas._key_map_handler
    keys.press_key("4")
    keys.release_key("4")
    assert layer.selected_label == lb.NO_REFLOW and layer.mode == "paint"

    widget.class_checks[lb.INFARCT].setChecked(False)
    assert layer.colormap.color_dict[lb.INFARCT][3] == 0.0
    assert layer.colormap.color_dict[lb.MYOCARDIUM][3] == 1.0
    assert np.array_equal(layer.data, truth)  # hiding never changes the data
    widget.class_checks[lb.INFARCT].setChecked(True)
    assert layer.colormap.color_dict[lb.INFARCT][3] == 1.0

    infarct_before = int(widget.rows[-1]["infarct_px"])
    myo = np.argwhere(truth[0] == lb.MYOCARDIUM)[0]
    layer.brush_size = 1
    layer.paint((0, *myo), lb.INFARCT)
    qtbot.waitUntil(lambda: int(widget.rows[-1]["infarct_px"]) > infarct_before, timeout=5_000)
    assert widget.table.item(2, 0).text() == "total"

    out = widget.export_csv(tmp_path / "q.csv")
    with open(out, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["slice"] for r in rows] == ["0", "1", "total"]
    assert int(rows[-1]["infarct_px"]) == int(np.count_nonzero(np.isin(layer.data, (3, 4))))
    assert errors == []

    # segmenting again replaces the labels in one undo step: the hand edit comes back with Ctrl+Z
    edited = layer.data.copy()
    n_edited = int(np.count_nonzero(edited != truth))
    assert n_edited > 0 and "replaced" not in widget.status.text()
    assert widget.show_result(_fake_result(truth), "case", "case.nii.gz", image_layer) is layer
    assert np.array_equal(layer.data, truth)
    assert widget.status.text().endswith(f"; {n_edited} hand-edited pixels replaced (Ctrl+Z)")   # said, not silent
    infarct_px = lambda labels: int(np.isin(labels, (3, 4)).sum())  # noqa: E731
    qtbot.waitUntil(lambda: not widget.refresh_timer.isActive(), timeout=5_000)
    assert int(widget.rows[-1]["infarct_px"]) == infarct_px(truth)
    layer.undo()
    assert np.array_equal(layer.data, edited)
    # ... and the table follows the undo, which napari reports only as "set_data"
    qtbot.waitUntil(lambda: int(widget.rows[-1]["infarct_px"]) == infarct_px(edited), timeout=5_000)
    # labels that cannot be quantified export nothing, not the figures of the labels before
    layer.data_setitem((np.array([0]), np.array([0]), np.array([0])), 9)
    widget.refresh_table()
    assert widget.rows == [] and "9" in errors[-1]
    assert widget.export_csv(tmp_path / "stale.csv") is None and not (tmp_path / "stale.csv").exists()


def test_bad_layers_give_notifications_not_exceptions(viewer_and_widget, errors):
    viewer, widget = viewer_and_widget
    assert widget.run() is None
    assert errors and "no image layer" in errors[-1]

    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="photo", rgb=True)
    widget.image_picker.select(viewer.layers["photo"])
    assert widget.run() is None and "RGB" in errors[-1]

    viewer.add_image(np.zeros((2, 2, 32, 32), np.float32), name="4d")
    widget.image_picker.select(viewer.layers["4d"])
    assert widget.run() is None and "4 dimensions" in errors[-1]

    _phantom_layer(viewer, "ok")
    widget.image_picker.select(viewer.layers["ok"])
    viewer.add_points(name="centre", ndim=3)
    widget.center_picker.select(viewer.layers["centre"])
    assert widget.run() is None and "no points" in errors[-1]
    assert widget.worker is None

    widget.pick_class(1)  # no labels layer yet
    assert "no labels layer" in errors[-1]
    assert widget.export_csv("unused.csv") is None and "nothing to export" in errors[-1]


def test_a_newly_opened_image_becomes_the_one_to_segment_and_names_never_clash(viewer_and_widget, errors):
    viewer, widget = viewer_and_widget
    first, truth = _phantom_layer(viewer, "case1")
    edited = truth.copy()
    edited[0, :4, :4] = lb.INFARCT
    widget.show_result(_fake_result(edited), "case1", "case1.nii.gz", first)
    second, _ = _phantom_layer(viewer, "case2")
    assert widget.image_picker.current_layer() is second   # opening a case picks it
    viewer.add_image(np.zeros((2, 64, 64), np.float32), name="hidden case", visible=False)   # a dataset's others
    assert widget.image_picker.current_layer() is second
    # a derived image (the uncertainty map) does not take the picker away from the case
    widget.show_result(SegmentationResult(truth.copy(), np.zeros(truth.shape, np.float32), model="fake"), "case2",
                       "case2.nii.gz", second)
    assert "case2 uncertainty" in viewer.layers and widget.image_picker.current_layer() is second
    assert np.array_equal(viewer.layers["case1 labels"].data, edited)   # case1's edits untouched

    # a user's layer named like our labels is never deleted: an image, or labels of another shape
    viewer.add_image(np.zeros((2, 128, 128), np.float32), name="case3 labels")
    viewer.add_labels(np.zeros((5, 64, 64), np.uint8), name="case4 labels")
    for name in ("case3", "case4"):
        image, _ = _phantom_layer(viewer, name)
        widget.show_result(_fake_result(truth), name, f"{name}.nii.gz", image)
    assert viewer.layers["case3 labels"].data.dtype == np.float32 and viewer.layers["case4 labels"].data.shape[0] == 5
    assert np.array_equal(widget.labels_layer.data, truth) and widget.labels_layer.name == "case4 prediction"
    assert errors == []

    # the table forgets labels that leave the viewer
    assert widget.rows
    viewer.layers.remove(widget.labels_layer)
    assert widget.rows == [] and widget.table.rowCount() == 0


def test_an_experts_labels_opened_with_the_case_are_never_overwritten(viewer_and_widget, tmp_path, errors):
    """A case folder opens with its contours as "Case labels": segmenting puts the prediction beside them, as
    "Case prediction", and segmenting again replaces only the prediction (one undo step)."""
    from napari_lvseg.io import write_image

    viewer, widget = viewer_and_widget
    image, truth = make_phantom(n_slices=2, size=128, seed=0)
    case = tmp_path / "Case_X01"
    for sub, data in (("Images", image), ("Contours", truth)):
        (case / sub).mkdir(parents=True)
        write_image(case / sub / "Case_X01.nii.gz", data)
    image_layer, expert = viewer.open(str(case), plugin="napari-lvseg")
    assert expert.name == "Case_X01 labels" and np.array_equal(expert.data, truth)
    predicted = np.ones(truth.shape, np.uint8)
    first = widget.show_result(_fake_result(predicted), "Case_X01", "Case_X01.nii.gz", image_layer)
    assert first.name == "Case_X01 prediction" and first is not expert and np.array_equal(expert.data, truth)
    again = widget.show_result(_fake_result(predicted * 2), "Case_X01", "Case_X01.nii.gz", image_layer)
    assert again is first and np.all(first.data == 2) and np.array_equal(expert.data, truth)
    assert [layer.name for layer in viewer.layers] == ["Case_X01", "Case_X01 labels", "Case_X01 prediction"]
    assert errors == []


def test_a_slice_with_a_pixel_size_shows_its_myocardium_in_mm2(viewer_and_widget, errors):
    viewer, widget = viewer_and_widget
    image, truth = make_phantom(n_slices=1, size=128, seed=0)
    layer = viewer.add_image(image[0], name="slice", scale=(1.5, 2.0))
    widget.show_result(_fake_result(truth[0]), "slice", "slice.tif", layer)
    total = widget.rows[-1]
    assert total["myocardium_mm2"] == pytest.approx(3.0 * int(np.isin(truth[0], (2, 3, 4)).sum()))   # 2+3+4
    assert "myocardium_mm2" in SegmentLogic.table_columns(widget.rows) and "myocardium_mm3" not in total
    assert errors == []


def test_the_progress_total_counts_the_lv_search_of_the_chosen_models_grid(viewer_and_widget, models_dir):
    import json

    path = save_tiny_segmentation_model(models_dir, "tiny-64")
    card = json.loads((path / "card.json").read_text())
    card["input_size"] = 64   # a 100-pixel image is larger than its grid: the LV is searched for first
    (path / "card.json").write_text(json.dumps(card))
    image = make_phantom(n_slices=1, size=128, seed=0)[0][:, 14:114, 14:114]
    for model in ("tiny-64", "tiny-seg"):
        steps = list(SegmentLogic.run_steps(image, model))
        total = SegmentLogic.steps(image, model=model)
        assert all(t == total for _, t in steps) and steps[-1] == (total, total)
        assert [d for d, _ in steps] == sorted({d for d, _ in steps})
    # one search step on the 64 grid and two more where the field of view shows a coil's shading (the field divided
    # out, and flattened); a pass, and a shading pass where the heart shows one
    assert SegmentLogic.steps(image, model="tiny-64") == 5 and SegmentLogic.steps(image, model="tiny-seg") == 2
    card["expects"] = {"lv_diameter_px": 30.0, "lv_diameter_range_px": [27.0, 33.0]}   # a second pass may come
    (path / "card.json").write_text(json.dumps(card))
    steps = list(SegmentLogic.run_steps(image, "tiny-64"))
    assert SegmentLogic.steps(image, model="tiny-64") == 6 and steps[-1] == (6, 6)
    assert all(t == 6 for _, t in steps) and [d for d, _ in steps] == sorted({d for d, _ in steps})
    # the panel's "correct a coil's shading" unticked: neither shading step is counted, or made
    assert SegmentLogic.steps(image, model="tiny-64", shading=False) == 3
    steps = list(SegmentLogic.run_steps(image, "tiny-64", shading=False))
    assert steps[-1] == (3, 3) and all(t == 3 for _, t in steps)
    viewer, widget = viewer_and_widget
    assert widget.shading.isChecked() and widget.shading.toolTip()   # on by default, as in `lvseg segment`


def test_centre_from_last_point():
    from napari.layers import Image, Points

    image = Image(np.zeros((2, 64, 64), np.float32))
    points = Points(np.array([[0, 10, 12], [1, 30.0, 40.0]]))
    assert SegmentLogic.center_from_points(points, image) == (30.0, 40.0)
    assert SegmentLogic.center_from_points(Points(ndim=3), image) is None


def test_labels_of_an_opened_nifti_save_back_in_its_space(viewer_and_widget, tmp_path, errors):
    import nibabel as nib

    from napari_lvseg._reader import read_path
    from napari_lvseg._writer import write_labels_nifti

    viewer, widget = viewer_and_widget
    image, _ = make_phantom(n_slices=2, size=128, seed=0)
    affine = np.array([[0.0, 1.4, 0, 3], [-1.4, 0, 0, 7], [0, 0, 8.0, -2], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), tmp_path / "case.nii.gz")
    (data, kwargs, _), = read_path(str(tmp_path / "case.nii.gz"))
    viewer.add_image(data, **kwargs)
    assert widget.model_picker.select("tiny-seg")
    layer = widget.run_blocking()
    # the file's voxel size reaches the layers, so the quantification is in mm as well as pixels
    for shown in (viewer.layers["case"], layer):
        assert tuple(shown.scale) == pytest.approx((8.0, 1.4, 1.4))
    total = widget.rows[-1]
    assert total["slice"] == "total"
    assert total["myocardium_mm3"] == pytest.approx(total["myocardium_px"] * 8.0 * 1.4 * 1.4)
    headers = [widget.table.horizontalHeaderItem(c).text() for c in range(widget.table.columnCount())]
    assert headers[:5] == ["slice", "myo px", "myo mm²", "myo mm³", "mass g"]
    last = widget.table.rowCount() - 1
    assert float(widget.table.item(last, 3).text()) == pytest.approx(total["myocardium_mm3"], rel=0.01)
    saved, = write_labels_nifti(str(tmp_path / "labels.nii.gz"), layer.data, {"metadata": layer.metadata})
    back = nib.load(saved)
    assert back.shape == (128, 128, 2) and np.allclose(back.affine, affine)
    np.testing.assert_array_equal(np.asarray(back.dataobj).transpose(2, 1, 0), layer.data)
    assert errors == []


def test_uncertainty_layer_covers_only_the_models_view(viewer_and_widget):
    viewer, widget = viewer_and_widget
    image = viewer.add_image(np.zeros((2, 160, 170), np.float32), name="big", scale=(8.0, 1.5, 1.5),
                             translate=(0.0, 3.0, -6.0))
    unc = np.zeros((2, 160, 170), np.float32)
    unc[:, 10:138, 20:148] = 0.5
    result = SegmentationResult(np.zeros((2, 160, 170), np.uint8), unc, (74.0, 84.0), "m",
                                {"box": (10, 20), "grid": 128})
    widget.show_result(result, "big", "big", image)
    layer = viewer.layers["big uncertainty"]
    assert layer.data.shape == (2, 128, 128) and np.all(layer.data == 0.5)
    assert list(layer.scale) == [8.0, 1.5, 1.5] and list(layer.translate) == [0.0, 3.0 + 15.0, -6.0 + 30.0]
    assert layer.visible and widget.status.text() == "big: segmented with m; uncertainty map added (bright = unsure)"


def test_a_model_folder_left_out_of_the_pickers_is_said_once(make_napari_viewer, models_dir, monkeypatch):
    from napari_lvseg.widgets import _common

    broken = save_tiny_segmentation_model(models_dir, "broken")
    (broken / "card.json").write_text("{not json")
    warned = []
    monkeypatch.setattr(_common, "notify_warning", warned.append)
    monkeypatch.setattr(_common, "_WARNED_MODELS", set())
    widget = SegmentWidget(make_napari_viewer())
    widget.model_picker.refresh()   # every refresh, every picker: said once
    assert "broken" not in widget.model_picker.names()
    assert warned == [f"model left out of the lists: {broken / 'card.json'}: model card is not valid JSON "
                      "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"]


def test_labels_of_an_image_removed_while_it_was_segmented_are_not_added(viewer_and_widget, errors):
    viewer, widget = viewer_and_widget
    image_layer, truth = _phantom_layer(viewer)
    viewer.layers.remove(image_layer)
    assert widget.show_result(_fake_result(truth), "case", "case.nii.gz", image_layer) is None
    assert "case labels" not in viewer.layers and "removed while it was segmented" in widget.status.text()
    assert errors == []


def test_the_panel_and_the_cli_give_the_same_labels_with_defaults(viewer_and_widget, qtbot, tmp_path, errors):
    """A whole field of view (the phantom off-centre in a 220 x 240 frame) with the default model: the panel's worker
    and `lvseg segment` with no options write the same labels; the panel says nothing about a failed search."""
    import tifffile

    from napari_lvseg.cli import main

    viewer, widget = viewer_and_widget
    image, _ = make_phantom(n_slices=3, size=128, seed=2)
    wide = np.pad(image, ((0, 0), (70, 22), (100, 12)), mode="minimum")
    viewer.add_image(wide, name="wide")
    assert widget.model_picker.select("lvseg-seg")
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert errors == [] and "found no left ventricle" not in widget.status.text()
    tifffile.imwrite(tmp_path / "wide.tif", wide, photometric="minisblack")
    assert main(["segment", str(tmp_path / "wide.tif"), "-o", str(tmp_path / "seg.tif")]) == 0
    cli_labels = tifffile.imread(tmp_path / "seg.tif")
    assert np.array_equal(viewer.layers["wide labels"].data, cli_labels) and cli_labels[:, 70:198, 100:228].any()
