"""The one run/stop button helper (`widgets.runner.Runner`) that the Segment, Correct, Synthesize and AHA panels use."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QLabel, QPushButton, QWidget  # noqa: E402

from napari_lvseg.widgets._testing import StepGate  # noqa: E402
from napari_lvseg.widgets.runner import Runner  # noqa: E402


def counting(n):
    for k in range(1, n + 1):
        yield k
    return n


def steps_of(gate):
    """A generator function over a `StepGate` (a worker is a generator worker only for one)."""
    def steps(*args):
        return (yield from gate(*args))
    return steps


def test_the_button_stops_the_job_after_the_step_in_hand_and_comes_back(qtbot, errors):
    button, status = QPushButton("Go"), QLabel("")
    runner = Runner(button, status, stopped="stopped; nothing changed")
    gate, returned = StepGate(counting), []
    worker = runner.start(steps_of(gate), 50, status="going…", step_status=lambda k: f"step {k}",
                          on_returned=returned.append)
    assert runner.running and button.text() == "Stop" and button.isEnabled() and status.text() == "going…"
    worker.yielded.connect(lambda _: (runner.stop(), gate.pressed.set()))
    gate.connected.set()
    qtbot.waitUntil(lambda: not runner.running, timeout=20_000)
    assert gate.steps in (1, 2) and returned == [] and errors == []
    assert status.text() == "stopped; nothing changed" and button.text() == "Go" and button.isEnabled()
    assert runner.stop() is False   # nothing left to stop


def test_a_job_runs_to_its_end_and_an_error_is_said_and_frees_the_button(qtbot, errors):
    button, status = QPushButton("Go"), QLabel("")
    runner, returned, finished = Runner(button, status, failed="failed: {error}"), [], []
    runner.start(counting, 3, step_status=lambda k: f"step {k} of 3", on_returned=returned.append,
                 on_finished=lambda: finished.append(button.isEnabled()))
    qtbot.waitUntil(lambda: not runner.running, timeout=20_000)
    assert returned == [3] and status.text() == "step 3 of 3" and finished == [True] and errors == []

    def broken():
        yield 1
        raise RuntimeError("out of memory")   # what torch raises; superqt alone would drop it

    runner.start(broken)
    qtbot.waitUntil(lambda: not runner.running, timeout=20_000)
    assert errors == ["RuntimeError: out of memory"] and status.text() == "failed: RuntimeError: out of memory"
    assert button.text() == "Go" and button.isEnabled()


def test_a_job_that_cannot_stop_disables_its_button_and_closing_the_panel_stops_a_job(make_napari_viewer, qtbot,
                                                                                       errors):
    import threading

    button, release = QPushButton("Apply"), threading.Event()
    runner = Runner(button, None, stop_text=None)
    runner.start(lambda: release.wait(10))
    assert button.text() == "Apply" and not button.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: button.isEnabled(), timeout=20_000)

    viewer = make_napari_viewer()
    panel = QWidget()
    stopping = Runner(QPushButton("Run"), QLabel(""), stopped="stopped", panel=panel)
    viewer.window.add_dock_widget(panel)
    gate = StepGate(counting)
    stopping.start(steps_of(gate), 50)
    gate.connected.set()
    viewer.window.remove_dock_widget(panel)   # what the dock's close button does
    gate.pressed.set()
    qtbot.waitUntil(lambda: not stopping.running, timeout=20_000)
    assert gate.steps <= 2 and stopping.status.text() == "stopped" and errors == []
