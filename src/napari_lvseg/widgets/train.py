"""Train: run the training engine in a child process followed by a napari generator worker, with live progress,
pause/resume and cancel."""

from __future__ import annotations

import math
import time
from pathlib import Path

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_lvseg import labels as lb
from napari_lvseg.engine.options import TASKS
from napari_lvseg.errors import LvsegError
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    ModelPicker,
    ask_before_window_closes,
    choose_folder,
    closed_from_dock,
    guarded,
    notify_error,
    notify_info,
    notify_warning,
    register_widget,
    start_worker,
)
from napari_lvseg.widgets.option_fields import field_value, make_field, train_schema
from napari_lvseg.widgets.panel_state import PanelState, plain_viewer, user_data_dir

DICE_KEYS = {lb.SHORT_NAMES[c]: c for c in lb.FOREGROUND}
# what the plot's lower half shows per task: its title and {metric key: colour (r, g, b, a in 0..1)}
CURVES = {"segmentation": ("validation Dice", {key: lb.COLORS[c] for key, c in DICE_KEYS.items()}),
          "synthesis": ("validation SSIM", {"ssim": (0.9, 0.9, 0.9, 1.0)})}
MAX_PLOT_POINTS = 1000   # a long run's loss curve is drawn from at most this many points
CLOSE_WAIT_S = 120.0


def default_run_dir(task: str) -> Path:
    return user_data_dir() / "runs" / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"


def format_eta(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "ETA --"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"ETA {hours:d}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"ETA {rest // 60:d}:{rest % 60:02d}"


class TrainLogic:
    """Options, the event stream and what to do at the end of a run, without Qt."""

    def __init__(self):
        from napari_lvseg.engine import StopToken

        self.stop = StopToken()
        self.task = TASKS[0]
        self.losses: list[tuple[int, float]] = []
        self.dice: dict[str, list[tuple[int, float]]] = {}   # validation curves (Dice per class, or SSIM)
        self.last_event = None
        self.registered: Path | None = None
        self.process = None   # the child process of the current or last run (subprocess.Popen)

    @staticmethod
    def build_options(task: str, sources, out, init=None, **values):
        """TrainOptions from the panel's fields; ``sources`` is [(path, ratio or None)], ``values`` the other
        options (the engine's defaults where not given)."""
        from napari_lvseg.engine.options import TrainOptions

        if not sources:
            raise LvsegError("add at least one data folder to train on")
        paths = [str(Path(p).expanduser()) for p, _ in sources]
        for path in paths:
            if not Path(path).exists():
                raise LvsegError("data folder does not exist", path)
        ratios = [r for _, r in sources]
        if all(r is None for r in ratios):
            mix = None
        elif any(r is None for r in ratios):
            raise LvsegError("give a mixing ratio for every data source, or for none (proportional to size)")
        else:
            mix = [float(r) for r in ratios]
            if any(r < 0 for r in mix) or not any(r > 0 for r in mix):
                raise LvsegError(f"mixing ratios must be >= 0 with at least one > 0, got {mix}")
        options = TrainOptions(task=task, data=paths, mix=mix, out=str(out), init=init or None, **values)
        options.validate()
        return options

    def start(self, task: str = TASKS[0]):
        """A fresh stop token for a new run (or a resumed one) of ``task``."""
        from napari_lvseg.engine import StopToken

        self.stop = StopToken()
        self.task = task
        self.registered = None

    @staticmethod
    def saved_options(run_dir):
        """The options of the run in ``run_dir``, to resume it (LvsegError when there is no run to resume)."""
        from napari_lvseg.engine import TrainOptions

        run_dir = Path(run_dir)
        if not (run_dir / "last.pt").is_file():
            raise LvsegError("nothing to resume here: no last.pt checkpoint", run_dir)
        options = TrainOptions.load(run_dir / "options.json")
        options.out = str(run_dir)
        return options

    @staticmethod
    def validation_text(event) -> str:
        """One status line for a validation event of either task."""
        m = event.metrics
        if "psnr" in m:
            return f"epoch {event.epoch}: validation PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, L1 {m['l1']:.3f}"
        dice = ", ".join(f"{k} {m[k]:.3f}" for k in DICE_KEYS if k in m)
        return f"epoch {event.epoch}: validation Dice {dice}" if dice else f"epoch {event.epoch} done"

    def events(self, options, resume: bool = False):
        """The engine's events from a child process running ``lvseg train`` (read in the worker thread): napari
        keeps no training in its own process (`napari_lvseg.engine.process`)."""
        from napari_lvseg.engine.process import process_events

        yield from process_events(options, stop=self.stop, resume=resume,
                                  on_child=lambda child: setattr(self, "process", child))

    def record(self, event) -> None:
        """Keep what the plot shows: the loss per step and the validation Dice per class."""
        self.last_event = event
        if event.kind == "step":
            values = [v for k, v in event.losses.items() if k != "lr" and isinstance(v, (int, float))]
            if values:
                self.losses.append((event.step, float(values[0])))
        elif event.kind == "validation":
            for key in CURVES[self.task][1]:
                value = event.metrics.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.dice.setdefault(key, []).append((event.step, float(value)))

    def register(self, run_dir, name: str | None = None) -> Path:
        from napari_lvseg.models.registry import register_model

        self.registered = register_model(run_dir, name, unique=True)
        return self.registered


class LivePlot(QWidget):
    """Training loss (top) and validation Dice per class, or SSIM (bottom), as polylines on one step axis."""

    def __init__(self, logic: TrainLogic, parent=None):
        super().__init__(parent)
        self.logic = logic
        self.setMinimumHeight(160)
        self.setToolTip(tips.PLOT[TASKS[0]])

    def paintEvent(self, event):  # noqa: N802 - Qt name
        painter = QPainter(self)
        try:
            painter.setRenderHint(QPainter.Antialiasing)
            w, h = self.width(), self.height()
            half = h // 2
            painter.fillRect(0, 0, w, h, QColor(30, 30, 30))
            title, colours = CURVES[self.logic.task]
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(4, 12, "loss")
            painter.drawText(4, half + 12, title)
            painter.setPen(QColor(90, 90, 90))
            painter.drawLine(0, half, w, half)
            # one x axis for both halves: the run's total steps (a validation point sits under its step)
            x_max = max([getattr(self.logic.last_event, "total_steps", 0) or 0, 1]
                        + [s for s, _ in self.logic.losses[-1:]])
            losses = self.logic.losses[::max(1, len(self.logic.losses) // MAX_PLOT_POINTS)]
            low = high = None
            if losses:
                low, high = min(v for _, v in losses), max(v for _, v in losses)
                self._polyline(painter, losses, QColor(230, 230, 230), (0, 16, w, half - 20), x_max, low, high)
            painter.setPen(QColor(160, 160, 160))
            for y, text in self.axis_texts(low, high, x_max, half, h):
                painter.drawText(w - 4 - painter.fontMetrics().horizontalAdvance(text), y, text)
            for key, series in self.logic.dice.items():
                if key not in colours:   # a curve of the other task (the panel's task changed)
                    continue
                r, g, b, _ = (int(255 * c) for c in colours[key])
                self._polyline(painter, series, QColor(r, g, b), (0, half + 16, w, half - 20), x_max, 0.0, 1.0)
        finally:
            painter.end()

    def axis_texts(self, low, high, x_max, half, h) -> list[tuple[int, str]]:
        """(baseline y, text) drawn at the right edge: each half's value range, the steps, and why the lower half
        is empty (validation comes at each epoch's end, and never without validation cases)."""
        texts = [] if low is None else [(12, f"{high:.3g}"), (half - 6, f"{low:.3g}")]
        texts += [(half + 12, "1"), (h - 18, "0")]
        if self.logic.losses:
            texts.append((h - 4, f"step {self.logic.losses[-1][0]} of {x_max}"))
            if not self.logic.dice:
                texts.append((half + half // 2, "no validation yet (at each epoch's end, with validation cases)"))
        return texts

    @staticmethod
    def _polyline(painter, points, color, box, x_max, low, high):
        x0, y0, width, height = box
        span = (high - low) or 1.0
        poly = QPolygonF([QPointF(x0 + 4 + (width - 8) * s / x_max, y0 + height * (1 - (v - low) / span))
                          for s, v in points])
        painter.setPen(QPen(color, 1.5))
        if len(points) == 1:
            painter.drawEllipse(poly[0], 2.0, 2.0)
        else:
            painter.drawPolyline(poly)


class TrainWidget(QWidget):
    """Dock widget "Train"."""

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer = plain_viewer(napari_viewer)
        self.state = PanelState.of(napari_viewer)   # the folders the other panels write; a trained model's news
        self.logic = TrainLogic()
        self.worker = None
        self.options = None
        self.paused = False
        self.failed = False     # the last run ended in an error (its checkpoint may still be resumable)
        self.closing = False    # napari asked to close and the run is stopping for it
        self._window = None     # weak reference to napari's main window, once a run started
        self.extra_options: dict = {}  # further TrainOptions fields (tests, benchmarks, advanced use)
        # Injectable so the close path can be tested without a modal dialog.
        self.ask_close = self._ask_close

        # a field for each option the schema shows in the panel (option_fields.py), each also an attribute of its
        # name; data, mix, init and out are the panel's own rows: the data table with its ratio column, the model
        # row and the run folder row
        schema = {opt.name: opt for opt in train_schema() if opt.panel}
        self.fields = {name: make_field(opt) for name, opt in schema.items()
                       if name not in ("data", "mix", "init", "out")}
        for name, widget in self.fields.items():
            setattr(self, name, widget)
        self.task.currentTextChanged.connect(self._task_changed)

        self.sources = QTableWidget(0, 2)
        self.sources.setHorizontalHeaderLabels(["data folder", "ratio"])
        self.sources.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.sources.horizontalHeader().setStretchLastSection(False)
        self.sources.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        self.sources.setTextElideMode(Qt.ElideMiddle)   # folders differ at their ends, not in /home/...
        self.sources.setToolTip(schema["data"].tip)
        self.sources.setMinimumHeight(90)
        add_cases = QPushButton("+ cases")
        add_cases.clicked.connect(lambda *_: self._choose_source("Folder of EMIDEC cases or pairs"))
        add_annotations = QPushButton("+ annotations")
        add_annotations.clicked.connect(lambda *_: self.add_source(self.state.annotation_folder))
        add_synthetic = QPushButton("+ synthetic")
        add_synthetic.clicked.connect(lambda *_: self.add_source(self.state.synthetic_folder))
        remove = QPushButton("−")
        remove.setToolTip(tips.REMOVE_SOURCE)
        remove.clicked.connect(lambda *_: self.remove_selected_source())
        for button in (add_cases, add_annotations, add_synthetic):
            button.setToolTip(tips.ADD_SOURCE)
        source_buttons = QHBoxLayout()
        for button in (add_cases, add_annotations, add_synthetic, remove):
            source_buttons.addWidget(button)

        self.init_mode = QComboBox()
        self.init_mode.addItems(["from scratch", "fine-tune"])
        self.init_mode.setToolTip(schema["init"].tip)
        self.model_picker = ModelPicker("segmentation")
        self.model_picker.setToolTip(tips.MODEL)
        self.model_picker.setEnabled(False)   # from scratch: no model to start from
        self.init_mode.currentIndexChanged.connect(lambda index: self.model_picker.setEnabled(index == 1))
        init_row = QHBoxLayout()
        init_row.addWidget(self.init_mode)
        init_row.addWidget(self.model_picker, 1)

        self.run_folder = QLineEdit("")
        self.run_folder.setPlaceholderText("new folder under the user data folder")
        self.run_folder.setToolTip(schema["out"].tip)
        self.run_folder.textChanged.connect(lambda *_: self._run_folder_changed())
        choose_run = QPushButton("…")
        choose_run.clicked.connect(lambda *_: self._choose_run_folder())
        run_row = QHBoxLayout()
        run_row.addWidget(self.run_folder, 1)
        run_row.addWidget(choose_run)

        self.start_button = QPushButton("Start")
        self.start_button.setToolTip(tips.START)
        self.start_button.clicked.connect(lambda *_: self.start())
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip(tips.PAUSE)
        self.pause_button.clicked.connect(lambda *_: self.pause())
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip(tips.RESUME)
        self.resume_button.clicked.connect(lambda *_: self.resume())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip(tips.CANCEL)
        self.cancel_button.clicked.connect(lambda *_: self.cancel())
        controls = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.resume_button, self.cancel_button):
            controls.addWidget(button)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.eta = QLabel(format_eta(None))
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.note = QLabel("")   # what stays true for the whole run (no validation case): not overwritten
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #e0b050")
        self.note.hide()
        self.plot = LivePlot(self.logic)

        form = QFormLayout()
        own_rows = {"data": [self.sources, source_buttons], "mix": [], "init": [init_row], "out": [run_row]}
        for name, opt in schema.items():   # in the schema's order
            for row in own_rows[name] if name in own_rows else [self.fields[name]]:
                if name == "data":
                    form.addRow(row)
                else:   # a check box says what it is itself
                    form.addRow("" if opt.check else opt.label, row)
        self.fields.update(data=self.sources, mix=self.sources, init=self.init_mode, out=self.run_folder)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(controls)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.status)
        layout.addWidget(self.note)
        layout.addWidget(self.plot, 1)
        self._update_buttons()
        self.state.models_changed.connect(self.refresh_models)   # another panel's run registered a model
        register_widget(napari_viewer, self)

    # -- state
    @property
    def running(self) -> bool:
        return self.worker is not None

    def _update_buttons(self) -> None:
        self.start_button.setEnabled(not self.running)
        self.pause_button.setEnabled(self.running)
        self.cancel_button.setEnabled(self.running)
        self.resume_button.setEnabled(not self.running and (self.paused or self.resumable_folder() is not None))
        self.task.setEnabled(not self.running)

    def _run_folder_changed(self) -> None:
        """A run folder to resume shows its total epochs in the epochs field, which Resume then uses (raise it to
        train a finished run further)."""
        self._update_buttons()
        folder = self.resumable_folder()
        if folder is None or self.running or (self.paused and self.options and str(folder) == self.options.out):
            return
        try:
            self.epochs.setValue(self.logic.saved_options(folder).epochs)
        except LvsegError:   # unreadable options: Resume reports it when pressed
            pass

    def resumable_folder(self) -> Path | None:
        """The run folder field's folder when it holds a checkpoint to resume."""
        text = self.run_folder.text().strip()
        folder = Path(text).expanduser() if text else None
        return folder if folder is not None and (folder / "last.pt").is_file() else None

    def refresh_models(self) -> None:
        self.model_picker.refresh()

    @guarded
    def _task_changed(self, task: str):
        self.model_picker.task = task
        self.model_picker.refresh()
        self.plot.setToolTip(tips.PLOT[task])

    # -- data sources
    @guarded
    def add_source(self, path, ratio=None) -> int:
        path = str(Path(str(path)).expanduser())
        row = self.sources.rowCount()
        self.sources.insertRow(row)
        item = QTableWidgetItem(path)
        item.setToolTip(path)
        self.sources.setItem(row, 0, item)
        self.sources.setItem(row, 1, QTableWidgetItem("" if ratio is None else f"{float(ratio):g}"))
        if not Path(path).exists():
            notify_warning(f"{path}: folder does not exist (yet)")
        return row

    @guarded
    def remove_selected_source(self):
        rows = sorted({index.row() for index in self.sources.selectedIndexes()}, reverse=True)
        for row in rows or [self.sources.rowCount() - 1]:
            if row >= 0:
                self.sources.removeRow(row)

    def source_list(self) -> list[tuple[str, float | None]]:
        sources = []
        for row in range(self.sources.rowCount()):
            path = self.sources.item(row, 0).text().strip() if self.sources.item(row, 0) else ""
            text = self.sources.item(row, 1).text().strip() if self.sources.item(row, 1) else ""
            if not path:
                continue
            try:
                ratio = float(text) if text else None
            except ValueError:
                raise LvsegError(f"mixing ratio of {path} must be a number, got {text!r}") from None
            sources.append((path, ratio))
        return sources

    @guarded
    def _choose_source(self, title):
        folder = choose_folder(self, title)
        if folder:
            self.add_source(folder)

    @guarded
    def _choose_run_folder(self):
        folder = choose_folder(self, "Run folder", self.run_folder.text())
        if folder:
            self.run_folder.setText(folder)

    # -- running
    def current_options(self):
        task = self.task.currentText()
        out = self.run_folder.text().strip() or str(default_run_dir(task))
        init = self.model_picker.current_model() if self.init_mode.currentIndex() == 1 else None
        if self.init_mode.currentIndex() == 1 and init is None:
            raise LvsegError(f"no {task} model to fine-tune: choose 'from scratch'")
        schema = {opt.name: opt for opt in train_schema()}
        values = {name: field_value(schema[name], self.fields[name]) for name in self.fields
                  if name not in ("task", "data", "mix", "init", "out")}
        return self.logic.build_options(task, self.source_list(), out, init=init, **{**values, **self.extra_options})

    @guarded
    def start(self):
        if self.running:
            raise LvsegError("training is already running")
        options = self.current_options()
        if (Path(options.out) / "last.pt").exists():
            raise LvsegError("run folder already holds a training run: press Resume to continue it, or choose "
                             "another folder", options.out)
        from napari_lvseg.engine.core import prepare_run

        prepare_run(options, resume=False)   # the engine's checks, before the panel changes (a non-empty folder)
        self.run_folder.setText(options.out)
        self.logic.losses.clear()
        self.logic.dice.clear()
        return self._launch(options, resume=False)

    @guarded
    def resume(self):
        if self.running:
            raise LvsegError("training is already running")
        if self.paused and self.options is not None and self.run_folder.text().strip() in ("", self.options.out):
            # paused in this panel: the epochs field may extend the run
            options = self.options
            options.epochs = self.epochs.value()
        else:   # a run of an earlier session, or one that failed: as it was saved, for the epochs field's total
            folder = self.resumable_folder()
            if folder is None:
                raise LvsegError("nothing to resume: pause a run, or choose a run folder holding last.pt")
            options = self.logic.saved_options(folder)
            options.epochs = self.epochs.value()
            self.logic.losses.clear()
            self.logic.dice.clear()
        options.threads, options.device = self.threads.value(), self.device.currentText()
        return self._launch(options, resume=True)

    def _launch(self, options, resume: bool):
        self.options = options
        self.paused = self.failed = self.closing = False
        self.task.setCurrentText(options.task)   # a resumed run keeps its task, whatever the selector said
        self.logic.start(options.task)
        self.note.setText("")
        self.note.hide()
        self._window = ask_before_window_closes(self)
        self.status.setText(f"{'resuming' if resume else 'starting'} {options.task} training in {options.out}: "
                            "starting the training process")
        self.worker = start_worker(self.logic.events, options, resume, description=f"Training {options.task}",
                                   on_yielded=self.on_event, on_errored=self._on_error,
                                   on_finished=self._on_finished)
        self._update_buttons()
        return self.worker

    @guarded
    def pause(self):
        if not self.running:
            return
        self.paused = True
        self.logic.stop.stop("paused")
        self.status.setText("pausing at the next step…")

    @guarded
    def cancel(self):
        if not self.running:
            return
        self.paused = False
        self.logic.stop.stop("cancelled")
        self.status.setText("cancelling at the next step…")

    def _on_error(self, exc):
        self.paused, self.failed = False, True
        self.status.setText("training failed" + ("; Resume continues from its last checkpoint"
                                                 if self.resumable_folder() else ""))
        notify_error(exc)

    def _on_finished(self):
        self.worker = None
        event = self.logic.last_event
        if not self.paused and not self.failed:   # finished or cancelled: the next Start gets a new folder
            self.run_folder.setText("")
            if event is not None and event.kind == "stopped":   # cancelled: no progress or ETA left standing
                self.progress.setValue(0)
                self.eta.setText(f"cancelled at epoch {event.epoch}/{event.epochs}, step {event.step}")
                self.status.setText(f"{self.status.text()}; the run stays in {self.options.out}: choose it as the "
                                    "run folder and press Resume to continue it")
        self._update_buttons()

    @guarded
    def on_event(self, event):
        """One engine event (main thread): progress, ETA, plot; register the model when done."""
        self.logic.record(event)
        if event.total_steps:
            self.progress.setValue(int(round(1000 * event.progress)))
        if event.kind == "step":
            loss = next((v for k, v in event.losses.items() if k != "lr"), None)
            self.eta.setText(f"{format_eta(event.eta)} · epoch {event.epoch}/{event.epochs} · "
                             f"step {event.step}/{event.total_steps}" + (f" · loss {loss:.4f}" if loss else ""))
        elif event.kind == "validation":
            self.status.setText(self.logic.validation_text(event))
        elif event.kind == "warning":   # engine.core.NO_VALIDATION: the panel's own words for the remedy
            self.note.setText(event.message.replace("--hold-out 1", "tick 'validate on one held-out case'"))
            self.note.show()
        elif event.kind in ("start", "best", "stopped", "message"):
            self.status.setText(event.message)
            if event.kind == "stopped" and not self.paused and self.options is not None:
                self._register_best_so_far(Path(self.options.out))
        elif event.kind == "done":
            self.paused = False
            self.eta.setText(format_eta(0))
            if self.logic.losses:
                self._register(event.path, "finished")
            else:   # a resumed run that had already reached its epochs: no second copy of its model
                self.status.setText(f"{event.message}: nothing left to train (raise the epochs to train further; "
                                    "its model is usable from the run folder)")
        self.plot.update()

    def _register(self, model_dir, how: str) -> None:
        path = self.logic.register(model_dir)
        self.state.models_changed.emit()   # every model picker of the viewer, this panel's too
        self.status.setText(f"{how}; model registered as {path.name}")
        notify_info(f"training {how}; model '{path.name}' is now in the model lists")

    def _register_best_so_far(self, out: Path) -> None:
        """Cancelled: the best model the run exported so far (if any) goes into the pickers; it is all that
        remains usable of the run, which can no longer be resumed from this panel."""
        from napari_lvseg.models.card import WEIGHTS_FILE, card_path

        if (out / WEIGHTS_FILE).is_file() and card_path(out).is_file():
            self._register(out, "cancelled, best model so far kept")

    # -- closing the Train panel during training
    def event(self, event):
        """napari takes a closed dock's widget out of the window (its parent becomes None). Pause and Cancel go
        with the panel, so a run still going is paused: it stops at the next step and keeps its checkpoint."""
        if closed_from_dock(self, event) and self.running:
            self.pause()
            notify_warning(f"Train panel closed: training stops at the next step; resume it from "
                           f"{self.run_folder.text() or 'its run folder'} (Train panel or lvseg train --resume)")
        return super().event(event)

    # -- closing napari during training
    def _ask_close(self) -> bool:
        answer = QMessageBox.question(self, "Training is running",
                                      "A training run is in progress. Stop it (keeping a checkpoint) and close?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def close_requested(self) -> bool:
        """The window wants to close while training: ask; on yes stop the run (checkpoint kept) and wait for it."""
        if not self.running:
            return True
        if self.closing:   # asked and answered already: the window closes when the run has stopped
            return False
        if not self.ask_close():
            return False
        self.closing = self.paused = True  # the checkpoint stays resumable from the CLI or a later session
        self.logic.stop.stop("napari closing")
        if self.wait_stopped(CLOSE_WAIT_S):
            return True
        notify_info("training is still finishing its step and checkpoint; napari closes when it has")
        window = self._window() if self._window is not None else None
        if window is not None and self.worker is not None:
            self.worker.finished.connect(window.close)
        return False

    def wait_stopped(self, timeout_s: float) -> bool:
        """Process events until the worker is gone (True) or ``timeout_s`` passes (False)."""
        from qtpy.QtCore import QCoreApplication, QEventLoop

        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            QCoreApplication.processEvents(QEventLoop.AllEvents, 50)
            time.sleep(0.01)
        return not self.running


__all__ = ["TrainLogic", "TrainWidget", "LivePlot", "format_eta"]
