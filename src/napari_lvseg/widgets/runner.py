"""One run/stop button for a panel's background job, written once for every panel that runs one in a worker."""

from __future__ import annotations

from qtpy.QtCore import QObject

from napari_lvseg.widgets import _common


class Runner:
    """A panel's background job behind its button.

    `start` runs a function in a napari worker (`_common.start_worker`: napari's progress bar, RuntimeErrors kept)
    and turns the button into ``stop_text``; a press while it runs calls `stop`, which asks the worker to stop after
    the step in hand (the button is disabled and the status line says ``stopping``). Each yielded value may set the
    status line; an error is notified (looked up at the time: tests collect it) and, where ``failed`` is given, said
    in the status line too (``{error}``: the error's text). When the worker ends, the status line says ``stopped``
    if it was stopped, and the button comes back, enabled, under its own text.

    ``stop_text=None``: a job that cannot be stopped; its button is disabled while it runs. ``button=None``: a job
    with no button. ``panel``: closing that panel's dock stops the job (what it would make has no panel to go to).
    """

    def __init__(self, button=None, status=None, *, stop_text: str | None = "Stop",
                 stopping: str = "stopping after the step in hand…", stopped: str = "", failed: str | None = None,
                 panel=None):
        self.button, self.status = button, status
        self.idle_text = button.text() if button is not None else ""
        self.stop_text, self.stopping, self.stopped, self.failed = stop_text, stopping, stopped, failed
        self.worker = None
        self._on_finished = None
        if panel is not None:
            self._close_filter = _StopWhenClosed(self, panel)
            panel.installEventFilter(self._close_filter)

    @property
    def running(self) -> bool:
        return self.worker is not None

    def start(self, function, *args, status: str = "", step_status=None, on_returned=None, on_finished=None,
              **kwargs):
        """Run ``function(*args, **kwargs)`` in a worker (``description`` and ``total``: `_common.start_worker`'s
        progress bar); returns the worker. ``status``: the status line now; ``step_status(value)``: the status line
        for each value the function yields; ``on_finished``: called after the button is restored."""
        if self.button is not None:
            if self.stop_text is None:
                self.button.setEnabled(False)
            else:
                self.button.setText(self.stop_text)
        self._say(status)
        self._on_finished = on_finished
        on_yielded = None if step_status is None else (lambda value: self._say(step_status(value)))
        self.worker = _common.start_worker(function, *args, on_yielded=on_yielded, on_returned=on_returned,
                                           on_errored=self._errored, on_finished=self._finished, **kwargs)
        return self.worker

    def stop(self) -> bool:
        """Ask the running job to stop after the step in hand; False when none runs."""
        if self.worker is None:
            return False
        self.worker.quit()
        if self.button is not None:
            self.button.setEnabled(False)
        self._say(self.stopping)
        return True

    def _say(self, text: str) -> None:
        if self.status is not None and text:
            _unless_deleted(self.status.setText, text)

    def _errored(self, exc) -> None:
        if self.failed is not None:
            self._say(self.failed.format(error=_common.error_text(exc)))
        _common.notify_error(exc)

    def _finished(self) -> None:
        if self.worker is not None and self.worker.abort_requested:
            self._say(self.stopped)
        self.worker = None
        if self.button is not None:
            _unless_deleted(self.button.setText, self.idle_text)
            _unless_deleted(self.button.setEnabled, True)
        if self._on_finished is not None:
            self._on_finished()


def _unless_deleted(method, *args) -> None:
    """Call a widget's Qt method, unless the widget is gone (its panel was closed while the job ran)."""
    try:
        method(*args)
    except RuntimeError:   # "wrapped C/C++ object ... has been deleted"
        pass


class _StopWhenClosed(QObject):
    """Stops a runner's job when napari takes its panel out of the window (the dock's close button)."""

    def __init__(self, runner: Runner, panel):
        super().__init__(panel)
        self.runner = runner

    def eventFilter(self, obj, event):  # noqa: N802 - Qt name
        if _common.closed_from_dock(obj, event):
            self.runner.stop()
        return False


__all__ = ["Runner"]
