"""Train dock widget: a tiny run registers its model in every picker; pause/resume, cancel and close stop cleanly."""

from __future__ import annotations

import re
import weakref

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtGui import QCloseEvent  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_lvseg.widgets._testing import phantom_pair_folder  # noqa: E402
from napari_lvseg.widgets.segment import SegmentWidget  # noqa: E402
from napari_lvseg.widgets.train import TrainLogic, TrainWidget, format_eta  # noqa: E402

TINY = {"width": 4, "depth": 2, "augment": "none", "samples_per_epoch": 4, "checkpoint_every": 1000}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return phantom_pair_folder(tmp_path_factory.mktemp("pairs") / "phantoms", n_pairs=2, n_slices=2).root


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch, models_dir, pairs):
    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.extra_options = dict(TINY)
    widget.add_source(pairs)
    widget.batch_size.setValue(2)
    widget.epochs.setValue(1)
    widget.run_folder.setText(str(tmp_path / "run"))
    yield viewer, widget, tmp_path
    if widget.running:  # never leave a training thread behind
        widget.logic.stop.stop("test teardown")
        widget.wait_stopped(60)


def start_a_long_run(widget, qtbot):
    """A run of 50 epochs, started and past its first step."""
    widget.epochs.setValue(50)
    widget.start()
    qtbot.waitUntil(lambda: len(widget.logic.losses) >= 1, timeout=120_000)   # a child process starts first


def pause_and_wait(widget, qtbot):
    widget.pause()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)


def test_tiny_run_registers_model_in_all_pickers(setup, qtbot, errors):
    viewer, widget, tmp = setup
    segment = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment)
    bundled = segment.model_picker.names()  # the shipped models, if any
    kinds = []
    assert widget.start() is not None
    widget.worker.yielded.connect(lambda e: kinds.append(e.kind))
    qtbot.waitUntil(lambda: not widget.running, timeout=90_000)
    assert errors == []
    assert "step" in kinds and kinds[-1] == "done"
    # two phantom pairs: none validates, and the panel keeps saying so after the run, in its own words
    assert not widget.note.isHidden() and widget.note.text().startswith("no validation case: the model kept is the "
                                                                          "last one")
    assert "tick 'validate on one held-out case'" in widget.note.text() and "--hold-out" not in widget.note.text()
    # the plot says its ranges and steps, and why the validation half is empty (no validation cases here)
    texts = [text for _, text in widget.plot.axis_texts(0.5, 2.0, 2, 80, 160)]
    assert texts == ["2", "0.5", "1", "0", "step 2 of 2",
                     "no validation yet (at each epoch's end, with validation cases)"]
    widget.plot.grab()   # paints without an error
    assert len(widget.logic.losses) == 2  # samples_per_epoch 4 / batch 2
    assert widget.progress.value() == 1000
    assert segment.model_picker.names() == bundled + ["run"]
    assert widget.model_picker.names() == bundled + ["run"]
    assert (tmp / "user-models" / "run" / "model.safetensors").is_file()
    assert widget.start_button.isEnabled() and not widget.resume_button.isEnabled()

    # the finished run chosen again: the epochs field shows its length; resumed as it is, nothing is trained or
    # registered; with more epochs it trains further and registers the longer run
    widget.epochs.setValue(7)
    widget.run_folder.setText(str(tmp / "run"))
    assert widget.epochs.value() == 1 and widget.resume_button.isEnabled()
    widget.resume()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.model_picker.names() == bundled + ["run"] and "nothing left to train" in widget.status.text()
    widget.run_folder.setText(str(tmp / "run"))
    widget.epochs.setValue(2)
    widget.resume()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert len(widget.logic.losses) == 2 and len(widget.model_picker.names()) == len(bundled) + 2
    assert errors == []


def test_width_samples_and_neighbours_fields_reach_the_options(setup):
    viewer, widget, tmp = setup
    widget.extra_options = {}
    options = widget.current_options()
    assert (options.width, options.samples_per_epoch, options.context) == (None, None, None)   # engine defaults
    assert not widget.model_picker.isEnabled()   # from scratch: the picker has nothing to say
    widget.width.setValue(8)
    widget.samples_per_epoch.setValue(64)
    widget.context.setValue(1)
    options = widget.current_options()
    assert (options.width, options.samples_per_epoch, options.context) == (8, 64, 1)
    assert options.hold_out == 0
    widget.hold_out.setChecked(True)
    assert widget.current_options().hold_out == 1
    widget.init_mode.setCurrentIndex(1)
    assert widget.model_picker.isEnabled()


def test_pause_resume_then_cancel_keeps_checkpoint(setup, qtbot, errors):
    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    pause_and_wait(widget, qtbot)
    assert (tmp / "run" / "last.pt").is_file()
    assert widget.resume_button.isEnabled() and widget.logic.last_event.kind == "stopped"
    steps_at_pause = widget.logic.last_event.step

    widget.resume()
    assert widget.running and not widget.resume_button.isEnabled()
    qtbot.waitUntil(lambda: widget.logic.last_event.kind == "step"
                    and widget.logic.last_event.step > steps_at_pause, timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.logic.last_event.kind == "stopped" and "cancelled" in widget.logic.last_event.message
    assert (tmp / "run" / "last.pt").is_file()
    # No validation cases, so no best model was exported before the cancel: nothing to register.
    assert not (tmp / "run" / "model.safetensors").exists() and not (tmp / "user-models").exists()
    assert widget.status.text() == (f"{widget.logic.last_event.message}; the run stays in {tmp / 'run'}: choose it "
                                    "as the run folder and press Resume to continue it")
    assert not widget.resume_button.isEnabled() and widget.run_folder.text() == ""
    assert widget.progress.value() == 0 and re.fullmatch(r"cancelled at epoch \d+/50, step \d+", widget.eta.text())
    widget.run_folder.setText(str(tmp / "run"))   # as the status line says: the run continues
    assert widget.resume_button.isEnabled()
    assert errors == []


def test_a_killed_training_process_is_reported_and_the_run_resumes(setup, qtbot, errors):
    """The run is a child process: killing it (as the out-of-memory killer would) leaves napari and the panel
    working; the panel says what happened and Resume continues from the checkpoint."""
    viewer, widget, tmp = setup
    widget.extra_options["checkpoint_every"] = 1
    start_a_long_run(widget, qtbot)
    child = widget.logic.process
    assert child is not None and child.poll() is None and child.pid != __import__("os").getpid()
    qtbot.waitUntil(lambda: (tmp / "run" / "last.pt").is_file(), timeout=60_000)
    child.kill()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert len(errors) == 1 and "the training process was killed (SIGKILL" in errors[0]
    assert errors[0].startswith(str(tmp / "run"))
    assert widget.status.text() == "training failed; Resume continues from its last checkpoint"
    assert widget.resume_button.isEnabled() and widget.start_button.isEnabled()
    before = widget.logic.losses[-1][0]
    widget.resume()
    qtbot.waitUntil(lambda: widget.logic.last_event is not None and widget.logic.last_event.kind == "step"
                    and widget.logic.last_event.step > before, timeout=120_000)
    assert widget.logic.process is not child and widget.logic.process.poll() is None
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.logic.process.returncode == 1 and len(errors) == 1   # cancelled: no second error


def test_cancel_keeps_the_best_model_exported_so_far(setup, qtbot, errors, tmp_path):
    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.io.pairs import PairFolder

    viewer, widget, tmp = setup
    folder = PairFolder(tmp_path / "cases")   # two cases of one group: one trains, one validates
    for i in range(2):
        folder.add(*make_phantom(n_slices=2, seed=i), origin="real", name=f"case_A{i}")
    widget.sources.setRowCount(0)
    widget.add_source(folder.root)
    widget.extra_options["val_fraction"] = 0.5
    widget.epochs.setValue(50)
    widget.start()
    qtbot.waitUntil(lambda: (tmp / "run" / "model.safetensors").is_file(), timeout=60_000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert errors == [] and widget.logic.last_event.kind == "stopped"
    assert widget.model_picker.names()[-1] == "run" and (tmp / "user-models" / "run" / "model.safetensors").is_file()
    assert widget.status.text() == ("cancelled, best model so far kept; model registered as run; the run stays in "
                                    f"{tmp / 'run'}: choose it as the run folder and press Resume to continue it")


def test_closing_napari_asks_and_stops_training(setup, qtbot, errors):
    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    window = viewer.window._qt_window

    widget.ask_close = lambda: False
    event = QCloseEvent()
    QApplication.sendEvent(window, event)
    assert not event.isAccepted() and widget.running

    asked = []
    widget.ask_close = lambda: asked.append(True) or True
    assert widget.close_requested() is True
    assert asked == [True] and not widget.running
    assert (tmp / "run" / "last.pt").is_file() and widget.logic.last_event.kind == "stopped"
    assert widget.resume_button.isEnabled()
    assert errors == []


def test_closing_the_train_panel_pauses_the_run_with_its_checkpoint(setup, qtbot, errors):
    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    viewer.window.remove_dock_widget(widget)   # what the dock's close button does
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.logic.last_event.kind == "stopped" and "paused" in widget.logic.last_event.message
    assert (tmp / "run" / "last.pt").is_file() and widget.paused and errors == []


def test_bad_options_notify_and_start_nothing(setup, errors):
    viewer, widget, tmp = setup
    widget.sources.setRowCount(0)
    assert widget.start() is None and "add at least one data folder" in errors[-1]
    widget.add_source(tmp / "missing")
    assert widget.start() is None and "does not exist" in errors[-1]
    assert not widget.running
    assert TrainLogic.build_options("segmentation", [(tmp, 1.0)], tmp / "r").mix == [1.0]
    with pytest.raises(Exception, match="ratio"):
        TrainLogic.build_options("segmentation", [(tmp, 1.0), (tmp, None)], tmp / "r")
    assert format_eta(75) == "ETA 1:15" and format_eta(3725) == "ETA 1:02:05" and format_eta(None) == "ETA --"


def test_errors_from_saved_options_name_the_panel_field_not_the_cli_flag(setup, qtbot, errors):
    import json

    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    pause_and_wait(widget, qtbot)
    saved = json.loads((tmp / "run" / "options.json").read_text())
    (tmp / "run" / "options.json").write_text(json.dumps({**saved, "lr": -1.0}))
    other = TrainWidget(viewer)   # a later session: Resume reads the saved options
    viewer.window.add_dock_widget(other)
    other.run_folder.setText(str(tmp / "run"))
    other.resume()
    qtbot.waitUntil(lambda: not other.running, timeout=60_000)
    assert errors[-1] == '"learning rate": must be in (0, 1], got -1.0'
    (tmp / "run" / "options.json").write_text(json.dumps({**saved, "samples_per_epoch": 0}))
    other.resume()
    qtbot.waitUntil(lambda: not other.running, timeout=60_000)
    assert errors[-1] == '"samples per epoch": must be 1..10000000, got 0'


def test_a_run_paused_in_one_panel_resumes_from_another_with_its_saved_settings(setup, qtbot, errors, pairs):
    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    pause_and_wait(widget, qtbot)
    steps_at_pause = widget.logic.last_event.step

    other = TrainWidget(viewer)   # a fresh panel, as after restarting napari
    viewer.window.add_dock_widget(other)
    other.task.setCurrentText("synthesis")
    assert other.model_picker.current_model() == "lvseg-pix2pix-resize"   # the default generator to fine-tune
    assert "SSIM" in other.plot.toolTip()
    other.add_source(pairs)
    assert not other.resume_button.isEnabled()
    other.run_folder.setText(str(tmp / "run"))
    assert other.resume_button.isEnabled()
    assert other.start() is None and "press Resume" in errors[-1]
    other.run_folder.setText(str(pairs))   # a data folder as the run folder
    assert other.start() is None and errors[-1].endswith("run folder is not empty: choose a new or empty folder")
    other.run_folder.setText(str(tmp / "run"))
    assert other.resume() is not None
    assert other.task.currentText() == "segmentation" and other.epochs.value() == 50
    qtbot.waitUntil(lambda: other.logic.last_event is not None and other.logic.last_event.kind == "step",
                    timeout=60_000)
    assert other.logic.last_event.step == steps_at_pause + 1 and other.logic.last_event.total_steps == 100
    other.cancel()
    qtbot.waitUntil(lambda: not other.running, timeout=60_000)
    other.run_folder.setText(str(tmp / "elsewhere"))
    assert other.resume() is None and "nothing to resume" in errors[-1]


def test_two_runs_in_folders_of_one_name_register_two_models(setup, qtbot, errors):
    viewer, widget, tmp = setup
    for parent in ("a", "b"):
        widget.run_folder.setText(str(tmp / parent / "run"))
        widget.start()
        qtbot.waitUntil(lambda: not widget.running, timeout=90_000)
    assert errors == []
    assert widget.logic.registered == tmp / "user-models" / "run-2"
    assert (tmp / "user-models" / "run" / "model.safetensors").is_file()


def test_closing_napari_twice_while_the_run_stops_asks_once(setup, qtbot, errors):
    viewer, widget, tmp = setup
    start_a_long_run(widget, qtbot)
    asked, closed = [], []

    class Window:   # stands in for napari's window, which the test fixture closes itself
        def close(self):
            closed.append(True)

    window = Window()
    widget._window = weakref.ref(window)
    widget.ask_close = lambda: asked.append(True) or True
    widget.wait_stopped = lambda timeout_s: False   # the step in hand takes longer than napari waits
    assert widget.close_requested() is False and widget.closing
    assert widget.close_requested() is False and asked == [True]
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert widget.logic.last_event.kind == "stopped" and (tmp / "run" / "last.pt").is_file()
    assert closed == [True]   # napari's close, asked for once more when the run had stopped


def test_synthesis_runs_plot_ssim_and_report_psnr():
    from napari_lvseg.engine.events import Event

    logic = TrainLogic()
    logic.start("synthesis")
    event = Event("validation", epoch=2, epochs=5, step=40, total_steps=100,
                  metrics={"l1": 0.25, "psnr": 15.84, "ssim": 0.095})
    logic.record(event)
    assert logic.dice == {"ssim": [(40, 0.095)]}
    assert TrainLogic.validation_text(event) == "epoch 2: validation PSNR 15.84 dB, SSIM 0.095, L1 0.250"
    logic.dice.clear()
    logic.start("segmentation")
    logic.record(Event("validation", epoch=1, epochs=5, step=20, total_steps=100,
                       metrics={"cavity": 0.9, "myocardium": 0.8, "mean": 0.85, "ssim": 0.5}))
    assert set(logic.dice) == {"cavity", "myocardium"}


def test_panels_opened_from_the_plugins_menu_find_each_other_and_their_layers(make_napari_viewer, tmp_path,
                                                                             monkeypatch, models_dir, pairs, qtbot,
                                                                             errors):
    """napari hands a menu-opened panel a proxy of the viewer that wraps every layer anew: the panels work on the
    viewer itself, so a trained model reaches the other panels and a panel's new layer becomes its choice."""
    from napari_lvseg.widgets.panel_state import PanelState

    monkeypatch.setenv("LVSEG_DATA_DIR", str(tmp_path / "data"))
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget("napari-lvseg", "Train")
    _, segment = viewer.window.add_plugin_dock_widget("napari-lvseg", "Segment LV")
    _, synthesize = viewer.window.add_plugin_dock_widget("napari-lvseg", "Synthesize")
    assert {train, segment, synthesize} <= set(PanelState.of(viewer).panels)

    viewer.add_labels(np.zeros((64, 64), np.uint8), name="case labels")
    ring = synthesize.new_mask()
    assert synthesize.mask_picker.current_layer() is ring and ring.name == "LV mask"

    bundled = segment.model_picker.names()
    train.extra_options = dict(TINY)
    train.add_source(pairs)
    train.batch_size.setValue(2)
    train.epochs.setValue(1)
    train.run_folder.setText(str(tmp_path / "menu-run"))
    train.start()
    qtbot.waitUntil(lambda: not train.running, timeout=90_000)
    assert segment.model_picker.names() == bundled + ["menu-run"] and errors == []
