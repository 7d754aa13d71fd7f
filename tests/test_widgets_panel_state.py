"""Per-viewer panel state (`widgets.panel_state.PanelState`): the folders and the model-registry signal the panels
share, instead of reading each other's attributes."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_lvseg.widgets.correct import CorrectWidget  # noqa: E402
from napari_lvseg.widgets.panel_state import PanelState, default_annotation_dir, default_synthetic_dir  # noqa: E402
from napari_lvseg.widgets.synthesize import SynthesizeWidget  # noqa: E402
from napari_lvseg.widgets.train import TrainWidget  # noqa: E402


@pytest.fixture
def viewer(make_napari_viewer, tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    return make_napari_viewer()


def sources(train) -> list[str]:
    return [train.sources.item(row, 0).text() for row in range(train.sources.rowCount())]


def test_train_adds_the_folders_the_correct_and_synthesize_panels_use(viewer, tmp_path, errors):
    train = TrainWidget(viewer)
    state = PanelState.of(viewer)
    assert state.annotation_folder == default_annotation_dir() == tmp_path / "data" / "annotations"
    assert state.synthetic_folder == default_synthetic_dir()
    train.add_source(state.annotation_folder)   # what "+ annotations" adds with no Correct panel open

    correct = CorrectWidget(viewer)   # no folder given: the viewer's
    assert correct.logic.folder == state.annotation_folder
    correct.folder_edit.setText(str(tmp_path / "mine"))
    correct.folder_edit.editingFinished.emit()
    synthesize = SynthesizeWidget(viewer, folder=tmp_path / "syn")
    assert state.annotation_folder == tmp_path / "mine" and state.synthetic_folder == tmp_path / "syn"
    synthesize.folder_edit.setText(str(tmp_path / "syn2"))   # as typed, before Enter
    assert state.synthetic_folder == tmp_path / "syn2"
    synthesize.folder_edit.setText("")
    assert state.synthetic_folder == default_synthetic_dir()
    synthesize.folder_edit.setText(str(tmp_path / "syn2"))

    buttons = {button.text(): button for button in train.findChildren(type(correct.save_button))}
    buttons["+ annotations"].click()
    buttons["+ synthetic"].click()
    assert sources(train)[-2:] == [str(tmp_path / "mine"), str(tmp_path / "syn2")]
    # a refused folder leaves the shared one as it was
    (tmp_path / "a-file").write_text("")
    correct.folder_edit.setText(str(tmp_path / "a-file"))
    correct.folder_edit.editingFinished.emit()
    assert state.annotation_folder == tmp_path / "mine" and "a-file" in errors[-1]


def test_one_state_per_viewer_also_through_naparis_proxy(make_napari_viewer, tmp_path, monkeypatch):
    from napari.utils._proxies import PublicOnlyProxy

    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    first, second = make_napari_viewer(), make_napari_viewer()
    assert PanelState.of(first) is PanelState.of(PublicOnlyProxy(first)) is not PanelState.of(second)
    PanelState.of(first).annotation_folder = tmp_path / "a"
    assert PanelState.of(second).annotation_folder == default_annotation_dir()


def test_a_registered_model_reaches_every_picker_of_the_viewer_only(viewer, make_napari_viewer, models_dir):
    from napari_lvseg.widgets._testing import save_tiny_segmentation_model
    from napari_lvseg.widgets.segment import SegmentWidget

    segment, correct, synthesize = SegmentWidget(viewer), CorrectWidget(viewer), SynthesizeWidget(viewer)
    elsewhere = SegmentWidget(make_napari_viewer())
    save_tiny_segmentation_model(models_dir, "tiny-seg")
    PanelState.of(viewer).models_changed.emit()   # what the Train panel does after registering a model
    assert "tiny-seg" in segment.model_picker.names() and "tiny-seg" in correct.model_picker.names()
    assert "tiny-seg" not in elsewhere.model_picker.names()
    assert synthesize.model_picker.count() > 0
