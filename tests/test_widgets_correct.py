"""Correct and save dock widget: saved pairs, autosave replacing one pair, reopening, least-certain-first cases."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_lvseg import labels as lb
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.inference import SegmentationResult
from napari_lvseg.io import write_image
from napari_lvseg.io.pairs import PairFolder

pytest.importorskip("napari")

from napari_lvseg.widgets._testing import StepGate, save_tiny_segmentation_model  # noqa: E402
from napari_lvseg.widgets.correct import CorrectLogic, CorrectWidget, default_annotation_dir  # noqa: E402
from napari_lvseg.widgets.segment import SegmentLogic  # noqa: E402


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    widget = CorrectWidget(viewer, folder=tmp_path / "annotations")
    viewer.window.add_dock_widget(widget)
    return viewer, widget, tmp_path


def _open_prediction(viewer, source):
    image, labels = make_phantom(n_slices=2, size=96, seed=1)
    image_layer = viewer.add_image(image, name="case1", metadata={"lvseg_source_path": str(source)})
    result = SegmentationResult(labels=labels, model="tiny-seg")
    labels_layer = viewer.add_labels(labels.copy(), **SegmentLogic.labels_layer_kwargs(result, "case1", str(source)))
    return image_layer, labels_layer


def _open_in_panel(viewer, widget, source):
    """`_open_prediction`, chosen in the Correct panel's pickers."""
    image_layer, labels_layer = _open_prediction(viewer, source)
    widget.image_picker.select(image_layer)
    widget.labels_picker.select(labels_layer)
    return image_layer, labels_layer


def _paint_infarct(layer, n):
    """Turn ``n`` myocardium pixels of slice 0 into infarct through the layer's paint (an edit event)."""
    layer.brush_size = 1
    for y, x in np.argwhere(layer.data[0] == lb.MYOCARDIUM)[:n]:
        layer.paint((0, y, x), lb.INFARCT)


def test_save_writes_corrected_pair_with_edit_count(setup, errors):
    viewer, widget, tmp = setup
    source = tmp / "case1.nii.gz"
    image_layer, labels_layer = _open_in_panel(viewer, widget, source)
    widget.autosave.setChecked(False)
    _paint_infarct(labels_layer, 5)
    name = widget.save()
    assert errors == [] and name.startswith("case1_") and name.endswith("_corrected")
    folder = PairFolder(tmp / "annotations")
    (record,) = folder.records()
    assert record["origin"] == "corrected" and record["source"] == str(source)
    assert record["model"] == "tiny-seg" and record["edited_pixels"] == 5
    image, mask = folder.read(name)
    assert np.array_equal(mask, labels_layer.data) and np.allclose(image, image_layer.data)
    assert widget.load_button.isEnabled()   # the image now has a saved correction


def test_autosave_after_edits_replaces_one_pair_and_reopen_offers_it(setup, qtbot, errors):
    viewer, widget, tmp = setup
    source = tmp / "case1.nii.gz"
    image_layer, labels_layer = _open_in_panel(viewer, widget, source)
    widget.autosave_timer.setInterval(50)
    folder = PairFolder(tmp / "annotations")
    _paint_infarct(labels_layer, 3)
    qtbot.waitUntil(lambda: folder.manifest_path.exists(), timeout=5_000)
    _paint_infarct(labels_layer, 8)
    qtbot.waitUntil(lambda: folder.records()[0]["edited_pixels"] == 3 + 8, timeout=5_000)
    assert len(folder.records()) == 1 and errors == []

    # Reopening the same source: the saved correction is offered and loads the edited labels.
    edited = labels_layer.data.copy()
    viewer.layers.remove(labels_layer)
    viewer.layers.remove(image_layer)
    assert not widget.load_button.isEnabled()
    image2 = viewer.add_image(make_phantom(n_slices=2, size=96, seed=1)[0], name="again", translate=(0, 30, 40),
                              metadata={"lvseg_source_path": str(source),
                                        "lvseg_source": {"format": "tiff", "spacing": (8.0, 1.0, 1.0)}})
    widget.image_picker.select(image2)
    assert widget.load_button.isEnabled()
    loaded = widget.load_saved()
    assert loaded.name == "again labels" and np.array_equal(loaded.data, edited)
    assert np.allclose(loaded.translate, (0, 30, 40))   # over its image
    assert loaded.metadata["lvseg_source"]["spacing"] == (8.0, 1.0, 1.0)   # File > Save keeps the image's voxel size

    # another annotation folder: neither the button nor the status line speaks of the first folder's correction
    assert "has a saved correction" in widget.status.text()
    widget.folder_edit.setText(str(tmp / "other"))
    widget.folder_edit.editingFinished.emit()
    assert not widget.load_button.isEnabled() and widget.status.text() == f"corrections are saved in {tmp / 'other'}"


def test_undo_is_autosaved_and_moving_through_slices_is_not(setup, qtbot, errors):
    viewer, widget, tmp = setup
    _, labels_layer = _open_in_panel(viewer, widget, tmp / "case1.nii.gz")
    widget.autosave_timer.setInterval(50)
    folder = PairFolder(tmp / "annotations")
    _paint_infarct(labels_layer, 3)
    qtbot.waitUntil(lambda: folder.manifest_path.exists() and folder.records()[0]["edited_pixels"] == 3,
                    timeout=5_000)
    labels_layer.undo()   # napari tells only "set_data", as for a move of the z slider
    qtbot.waitUntil(lambda: folder.records()[0]["edited_pixels"] == 2, timeout=5_000)
    assert np.array_equal(folder.read(folder.records()[0]["name"])[1], labels_layer.data)
    labels_layer.undo()
    labels_layer.undo()   # back to the prediction the saved edits were made on: the saved pair follows
    qtbot.waitUntil(lambda: folder.records()[0]["edited_pixels"] == 0, timeout=5_000)
    assert np.array_equal(folder.read(folder.records()[0]["name"])[1], labels_layer.metadata["lvseg_prediction"])
    viewer.dims.set_current_step(0, 1)
    labels_layer.refresh()
    assert not widget.autosave_timer.isActive() and errors == []


def test_pending_autosave_saves_the_edited_case_when_the_pickers_move_on(setup, errors):
    viewer, widget, tmp = setup
    image_layer, labels_layer = _open_in_panel(viewer, widget, tmp / "case1.nii.gz")
    widget.autosave_timer.setInterval(60_000)   # the timer would fire long after the pickers changed
    _paint_infarct(labels_layer, 4)
    assert widget.autosave_timer.isActive()
    other_image = viewer.add_image(make_phantom(n_slices=2, size=96, seed=5)[0], name="case2",
                                   metadata={"lvseg_source_path": str(tmp / "case2.nii.gz")})
    widget.image_picker.select(other_image)   # moving on saves case1's edits at once, as case1
    (record,) = PairFolder(tmp / "annotations").records()
    assert record["source"] == str(tmp / "case1.nii.gz") and record["edited_pixels"] == 4
    assert not widget.autosave_timer.isActive() and errors == []


def test_closing_the_panel_saves_pending_edits_at_once(setup, errors):
    viewer, widget, tmp = setup
    image_layer, labels_layer = _open_in_panel(viewer, widget, tmp / "case1.nii.gz")
    widget.autosave_timer.setInterval(60_000)
    _paint_infarct(labels_layer, 3)
    viewer.window.remove_dock_widget(widget)   # what the dock's close button does
    (record,) = PairFolder(tmp / "annotations").records()
    assert record["edited_pixels"] == 3 and not widget.autosave_timer.isActive() and errors == []


def test_a_case_opened_later_brings_its_own_labels_and_never_saves_with_another_image(setup, qtbot, errors):
    viewer, widget, tmp = setup
    widget.autosave_timer.setInterval(50)
    cases = {}
    for name, seed in (("Case_X01", 1), ("Case_X02", 2)):
        image, truth = make_phantom(n_slices=2, size=96, seed=seed)
        for sub, data in (("Images", image), ("Contours", truth)):
            (tmp / name / sub).mkdir(parents=True)
            write_image(tmp / name / sub / f"{name}.nii.gz", data)
        cases[name] = viewer.open(str(tmp / name), plugin="napari-lvseg")
    (image1, labels1), (image2, labels2) = cases.values()
    assert widget.image_picker.current_layer() is image2 and widget.labels_picker.current_layer() is labels2
    # the first case's labels chosen by hand beside the second case's image: refused, nothing written
    widget.labels_picker.select(labels1)
    assert widget.save() is None and "belong to" in errors[-1]
    _paint_infarct(labels1, 2)
    qtbot.wait(300)
    assert not (tmp / "annotations" / "manifest.jsonl").exists()


def test_edits_with_autosave_off_are_offered_when_napari_closes(setup, qtbot, errors):
    viewer, widget, tmp = setup
    widget.autosave.setChecked(False)
    _, labels_layer = _open_in_panel(viewer, widget, tmp / "case1.nii.gz")
    answers, asked = ["cancel", "cancel", "save"], []

    def answer(name, can_cancel):
        asked.append((name, can_cancel))
        return answers.pop(0)

    widget.ask_save = answer
    assert widget.close_requested() and asked == []   # nothing edited: napari closes without a question
    _paint_infarct(labels_layer, 3)
    assert not widget.close_requested() and widget.unsaved is not None   # cancel: napari stays open
    assert not viewer.window._qt_window.close()   # the window's own close asks too: cancel keeps it open
    assert widget.close_requested()   # save
    assert asked == [("case1 labels", True)] * 3
    (record,) = PairFolder(tmp / "annotations").records()
    assert record["edited_pixels"] == 3 and widget.unsaved is None and errors == []
    # what a save or load put there, or a fresh prediction, is nothing to ask about
    _paint_infarct(labels_layer, 1)
    widget.load_saved()
    assert widget.close_requested() and len(asked) == 3
    from napari_lvseg.widgets.segment import SegmentWidget

    _paint_infarct(labels_layer, 1)
    new_prediction = labels_layer.metadata["lvseg_prediction"].copy()
    new_prediction[0, :2, :2] = lb.CAVITY   # another model's answer: the layer's data leaves the old prediction
    SegmentWidget(viewer).show_result(SegmentationResult(labels=new_prediction, model="tiny-seg"), "case1",
                                      str(tmp / "case1.nii.gz"))
    assert np.array_equal(labels_layer.data, new_prediction)
    assert widget.close_requested() and len(asked) == 3 and errors == []


def test_pickers_follow_the_renaming_of_layers_opened_before_the_widget(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((8, 8), np.float32), name="before")
    widget = CorrectWidget(viewer, folder=tmp_path / "annotations")
    layer.name = "renamed"
    assert widget.image_picker.currentText() == "renamed" and widget.image_picker.current_layer() is layer
    # the chosen layer stays chosen under its new name, and its edits stay watched
    first = viewer.add_labels(np.zeros((8, 8), np.uint8), name="a labels")
    second = viewer.add_labels(np.zeros((8, 8), np.uint8), name="b labels")
    widget.labels_picker.select(second)
    second.name = "b corrected"
    assert widget.labels_picker.current_layer() is second and widget.watched is second
    viewer.layers.remove(second)
    assert widget.labels_picker.current_layer() is first and widget.watched is first


def test_segmenting_again_does_not_autosave_the_prediction_over_a_correction(setup, qtbot, errors):
    from napari_lvseg.widgets.segment import SegmentWidget

    viewer, widget, tmp = setup
    source = tmp / "case1.nii.gz"
    image_layer, labels_layer = _open_in_panel(viewer, widget, source)
    widget.autosave_timer.setInterval(50)
    folder = PairFolder(tmp / "annotations")
    prediction = labels_layer.data.copy()
    _paint_infarct(labels_layer, 3)
    qtbot.waitUntil(lambda: folder.manifest_path.exists(), timeout=5_000)
    corrected = labels_layer.data.copy()
    # the Segment panel puts a fresh prediction into the same layer (a paint event, as napari fires it)
    SegmentWidget(viewer).show_result(SegmentationResult(labels=prediction, model="tiny-seg"), "case1", str(source))
    assert np.array_equal(labels_layer.data, prediction)
    qtbot.wait(300)
    (record,) = folder.records()
    assert record["edited_pixels"] == 3 and np.array_equal(folder.read(record["name"])[1], corrected)
    assert "not autosaved" in widget.status.text() and errors == []


def test_hiding_the_panel_saves_pending_edits(setup, errors):
    from qtpy.QtGui import QHideEvent
    from qtpy.QtWidgets import QApplication

    viewer, widget, tmp = setup
    image_layer, labels_layer = _open_in_panel(viewer, widget, tmp / "case1.nii.gz")
    widget.autosave_timer.setInterval(60_000)
    _paint_infarct(labels_layer, 2)
    QApplication.sendEvent(widget, QHideEvent())   # napari's window closing hides its docks
    (record,) = PairFolder(tmp / "annotations").records()
    assert record["edited_pixels"] == 2 and not widget.autosave_timer.isActive() and errors == []


def test_next_case_opens_least_certain_first(setup, qtbot, models_dir, errors):
    viewer, widget, tmp = setup
    save_tiny_segmentation_model(models_dir, "tiny-seg")
    widget.refresh_models()
    cases = tmp / "cases"
    cases.mkdir()
    for seed in (0, 1):
        write_image(cases / f"img{seed}.tif", make_phantom(n_slices=1, size=128, seed=seed)[0])
    (cases / "broken.tif").write_bytes(b"not a tiff")   # left out and reported; the others are still ranked
    tifffile.imwrite(cases / "nan.tif", np.full((64, 64), np.nan, np.float32))   # readable, not segmentable
    ranked, skipped = CorrectLogic.rank_cases(CorrectLogic.list_cases(cases), "tiny-seg")
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert len(ranked) == 2 and len(skipped) == 2
    assert "broken.tif" in skipped[0] and "nan.tif: image contains NaN" in skipped[1]

    widget.cases_edit.setText("  ")   # an empty field is no folder (it would be napari's working folder)
    assert widget.next_case() is None and errors == ["choose a folder of cases first"]
    errors.clear()
    widget.folder_edit.setText("")
    widget.folder_edit.editingFinished.emit()
    assert widget.logic.folder == default_annotation_dir() == tmp / "data" / "annotations"
    assert widget.folder_edit.text() == str(default_annotation_dir())   # empty means the default, said so
    widget.cases_edit.setText(str(cases))
    assert widget.next_case() is not None  # ranking runs in a worker
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert errors == []
    first = ranked[0]["name"]
    assert first in viewer.layers and f"{first} labels" in viewer.layers
    assert widget.labels_picker.current_layer().name == f"{first} labels"
    assert len(widget.logic.queue) == 1
    widget.next_case()
    assert ranked[1]["name"] in viewer.layers and widget.logic.queue == []
    # reopening a case whose labels hold edits (autosave off) keeps them under another name
    widget.autosave.setChecked(False)
    edited = viewer.layers[f"{first} labels"]
    edited.data[0, 0, 0] = 3 if edited.data[0, 0, 0] != 3 else 2
    reopened = widget.open_case(ranked[0])
    assert reopened is not edited and reopened.name == f"{first} labels"
    assert edited in viewer.layers and edited.name == f"{first} labels (edited earlier)" and errors == []


def test_pressing_next_case_while_ranking_stops_the_ranking(setup, qtbot, models_dir, monkeypatch, errors):
    from napari_lvseg import inference

    gate = StepGate(inference.uncertainty_scores)

    def press_stop(step):
        widget.next_case()
        gate.pressed.set()

    monkeypatch.setattr(inference, "uncertainty_scores", gate)
    viewer, widget, tmp = setup
    save_tiny_segmentation_model(models_dir, "tiny-seg")
    widget.refresh_models()
    cases = tmp / "cases"
    cases.mkdir()
    for seed in range(6):
        write_image(cases / f"img{seed}.tif", make_phantom(n_slices=1, size=128, seed=seed)[0])
    widget.cases_edit.setText(str(cases))
    n_layers = len(viewer.layers)
    worker = widget.next_case()
    assert widget.next_button.text() == "Stop ranking"
    steps = []
    worker.yielded.connect(steps.append)
    worker.yielded.connect(press_stop)
    gate.connected.set()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    # the press lands while the second case is made or before it starts: one or two steps of six
    assert errors == [] and steps == [(1, 6), (2, 6)][:gate.steps] and gate.steps in (1, 2)
    assert len(viewer.layers) == n_layers and widget.logic.queue == []
    assert widget.status.text() == "ranking stopped; no case queued"
    assert widget.next_button.text() == "Next case" and widget.next_button.isEnabled()


def test_missing_layers_and_bad_folder_notify(setup, errors):
    viewer, widget, tmp = setup
    assert widget.save() is None and "choose an image layer" in errors[-1]
    widget.cases_edit.setText(str(tmp / "nowhere"))
    assert widget.next_case() is None and "not a folder" in errors[-1]
    assert widget.load_saved() is None and "choose an image layer" in errors[-1]
    # an EMIDEC dataset as the annotation folder: said at once, and the folder in use stays
    in_use = widget.logic.folder
    image_and_labels = make_phantom(n_slices=1, size=64)
    for part in ("Images", "Contours"):
        write_image(tmp / "emidec/Case_A" / part / "Case_A.nii.gz", image_and_labels[part == "Contours"])
    widget.folder_edit.setText(str(tmp / "emidec"))
    widget.folder_edit.editingFinished.emit()
    assert "emidec: holds EMIDEC cases" in errors[-1]
    assert widget.logic.folder == in_use and widget.folder_edit.text() == str(in_use)
    (tmp / "a-file").write_text("not a folder")
    widget.folder_edit.setText(str(tmp / "a-file"))
    widget.folder_edit.editingFinished.emit()
    assert "a-file: is a file: a pair folder cannot be made there" in errors[-1] and widget.logic.folder == in_use
    # labels a pair cannot hold: the error names the labels layer, not the image
    image = viewer.add_image(make_phantom(n_slices=1, size=64)[0], name="img")
    labels = viewer.add_labels(np.full((1, 64, 64), 7, np.uint8), name="lab")
    assert widget.save(layers=(image, labels)) is None and errors[-1].startswith("labels 'lab': label values")


def test_same_file_name_in_two_folders_gives_two_pairs():
    from napari_lvseg.widgets.correct import CorrectLogic

    assert CorrectLogic.pair_name("/a/img.tif") != CorrectLogic.pair_name("/b/img.tif")
    assert CorrectLogic.pair_name("/a/img.tif") == CorrectLogic.pair_name("/a/img.tif")
