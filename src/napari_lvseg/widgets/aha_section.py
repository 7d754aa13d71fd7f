"""The "AHA segments" section of the Segment LV panel: slice levels, a draggable RV insertion point, the bullseye,
the intensity-threshold reference methods and the one-page report, all from `napari_lvseg.analysis`.

The section only wires layers to the core: `aha.analyse`, `aha.insertion_points` / `aha.insertion_from_point`,
`bullseye.bullseye_figure` / `save_bullseye`, `thresholds.reference_methods` and `report.build` / `report.write`.
It computes only while it is open, in a worker, once the labels have been quiet for `DEBOUNCE_MS`.
"""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from napari_lvseg import layer_meta
from napari_lvseg.errors import LvsegError
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    EditWatcher,
    LayerPicker,
    guarded,
    labels_spacing,
    notify_info,
)
from napari_lvseg.widgets.runner import Runner

DEBOUNCE_MS = 400
BULLSEYE_VALUES = {"infarct %": "infarct_pct", "transmurality": "transmurality"}
LEVEL_LETTER = {"basal": "b", "mid": "m", "apical": "a", "apex": "x", None: "-"}
REMOTE_LABEL_2 = "label 2 (normal myocardium)"
BULLSEYE_DPI = 96                 # the core's figure, its margins cut: about 380 px, a dock's width


def levels_text(levels) -> str:
    """Levels per slice as the letters `aha.parse_levels` reads (stack order)."""
    return "".join(LEVEL_LETTER[level] for level in levels)


def analyse(labels, image, levels, insertion, value, remote):
    """The worker's job: (AhaResult, reference-method rows or [], the bullseye as PNG bytes)."""
    import io

    from napari_lvseg import labels as lb
    from napari_lvseg.analysis import aha, bullseye, thresholds

    result = aha.analyse(labels, image, levels=levels, insertion=insertion)
    has_remote = remote is not None or (np.asarray(labels) == lb.MYOCARDIUM).sum() >= 2
    methods = thresholds.reference_methods(image, labels, remote=remote) if image is not None and has_remote else []
    buffer = io.BytesIO()
    bullseye.bullseye_figure(result, value).savefig(buffer, format="png", dpi=BULLSEYE_DPI, bbox_inches="tight")
    return result, methods, buffer.getvalue()


def write_report(image, labels, case, model, spacing, levels, insertion, path):
    """The worker's job for "Report…": `report.build` + `report.write`; returns (page, csv) paths."""
    from napari_lvseg.analysis import report

    built = report.build(image, labels, case, model, spacing, levels=levels, insertion=insertion)
    return report.write(built, path)


class AhaSection(QWidget):
    """Collapsible "AHA segments" section. ``image_hint()`` gives the panel's chosen image layer (or None)."""

    def __init__(self, viewer, image_hint=None, parent=None):
        super().__init__(parent)
        from napari.layers import Labels

        self.viewer = viewer
        self.image_hint = image_hint
        self.result = None            # the last AhaResult shown
        self.methods: list = []       # the last reference-method rows (thresholds.reference_methods)
        self.levels = None            # None: automatic; else the user's list of levels
        self.insertion = None         # None: estimate from the image; else the aha.Insertion in use
        self.points_layer = None
        self._points_set = None       # the points this section last wrote (to tell the user's move from ours)
        self._writing_points = False
        self._labels_for = None       # the labels layer the levels and insertion belong to
        self._again = False
        self._generation = 0

        self.toggle = QToolButton()
        self.toggle.setText("AHA segments")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setToolTip(tips.AHA_SECTION)
        self.toggle.toggled.connect(self.set_expanded)
        self.body = QWidget()
        self.body.setVisible(False)

        self.labels_picker = LayerPicker(viewer, (Labels,), follow=lambda layer: False)
        self.labels_picker.setToolTip(tips.AHA_LABELS)
        self.labels_picker.currentIndexChanged.connect(lambda *_: self._labels_changed())
        self.levels_edit = QLineEdit()
        self.levels_edit.setToolTip(tips.AHA_LEVELS)
        self.levels_edit.editingFinished.connect(lambda: self.set_levels(self.levels_edit.text()))
        auto_levels = QPushButton("auto")
        auto_levels.setToolTip(tips.AHA_LEVELS_AUTO)
        auto_levels.clicked.connect(lambda *_: self.set_levels(None))
        levels_row = QHBoxLayout()
        levels_row.addWidget(self.levels_edit, 1)
        levels_row.addWidget(auto_levels)
        self.insertion_label = QLabel("")
        self.insertion_label.setWordWrap(True)
        self.insertion_label.setToolTip(tips.AHA_INSERTION)
        estimate = QPushButton("estimate")
        estimate.setToolTip(tips.AHA_ESTIMATE)
        estimate.clicked.connect(lambda *_: self.estimate_insertion())
        insertion_row = QHBoxLayout()
        insertion_row.addWidget(self.insertion_label, 1)
        insertion_row.addWidget(estimate)
        self.value_picker = QComboBox()
        self.value_picker.addItems(list(BULLSEYE_VALUES))
        self.value_picker.setToolTip(tips.AHA_VALUE)
        self.value_picker.currentIndexChanged.connect(lambda *_: self.schedule())

        self.bullseye = QLabel("")
        self.bullseye.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.bullseye.setToolTip(tips.AHA_BULLSEYE)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)

        self.methods_table = QTableWidget(0, 3)
        self.methods_table.setHorizontalHeaderLabels(["method", "infarct %", "infarct px"])
        self.methods_table.verticalHeader().setVisible(False)
        self.methods_table.horizontalHeader().setStretchLastSection(True)
        self.methods_table.setToolTip(tips.AHA_METHODS)
        self.method_picker = QComboBox()
        self.method_picker.addItems(["2-SD", "3-SD", "5-SD", "FWHM"])
        self.method_picker.setToolTip(tips.AHA_METHOD)
        self.remote_picker = LayerPicker(viewer, (Labels,), none_text=REMOTE_LABEL_2)
        self.remote_picker.setToolTip(tips.AHA_REMOTE)
        self.remote_picker.currentIndexChanged.connect(lambda *_: self.schedule())
        show_method = QPushButton("Show as layer")
        show_method.setToolTip(tips.AHA_SHOW_METHOD)
        show_method.clicked.connect(lambda *_: self.show_method())
        method_row = QHBoxLayout()
        method_row.addWidget(self.method_picker, 1)
        method_row.addWidget(show_method)

        self.export_button = QPushButton("Export PNG…")
        self.export_button.setToolTip(tips.AHA_EXPORT)
        self.export_button.clicked.connect(lambda *_: self.export_png())
        self.report_button = QPushButton("Report…")
        self.report_button.setToolTip(tips.AHA_REPORT)
        self.report_button.clicked.connect(lambda *_: self.write_report())
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addWidget(self.report_button)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.runner = Runner(status=self.status, failed="failed: {error}")   # the analysis: no button
        self.report_runner = Runner(self.report_button, self.status, stop_text=None, failed="failed: {error}")

        form = QFormLayout()
        form.addRow("labels", self.labels_picker)
        form.addRow("levels", levels_row)
        form.addRow("RV insertion", insertion_row)
        form.addRow("bullseye", self.value_picker)
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.addLayout(form)
        body.addWidget(self.bullseye)
        body.addWidget(self.summary)
        body.addWidget(QLabel("threshold methods in the same myocardium"))
        body.addWidget(self.methods_table)
        threshold_form = QFormLayout()
        threshold_form.addRow("remote", self.remote_picker)
        threshold_form.addRow("method", method_row)
        body.addLayout(threshold_form)
        body.addLayout(buttons)
        body.addWidget(self.status)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)

        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DEBOUNCE_MS)
        self.timer.timeout.connect(self.recompute)
        self.point_timer = QTimer(self)   # a dragged point is read once it rests
        self.point_timer.setSingleShot(True)
        self.point_timer.setInterval(DEBOUNCE_MS)
        self.point_timer.timeout.connect(self.point_moved)
        self.edits = EditWatcher(self.schedule)
        viewer.layers.events.removed.connect(self._layer_removed)

    # -- opening, the labels followed
    @property
    def worker(self):
        """The analysis's worker while it runs, else None."""
        return self.runner.worker

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def set_expanded(self, on: bool) -> None:
        """Open (compute and show) or close the section."""
        if self.toggle.isChecked() != bool(on):
            self.toggle.setChecked(bool(on))   # comes back here through ``toggled``
            return
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.body.setVisible(bool(on))
        if on:
            self._labels_changed()
        else:
            self.edits.watch(None)

    def follow(self, layer) -> None:
        """Work on ``layer`` (the Segment panel's new labels) from now on."""
        self.labels_picker.select(layer)
        self._labels_changed()

    def labels_layer(self):
        return self.labels_picker.current_layer()

    def _labels_changed(self) -> None:
        layer = self.labels_layer()
        if layer is not self._labels_for:   # levels and insertion belong to one labels layer
            self._labels_for = layer
            self.levels, self.insertion, self.result, self.methods = None, None, None, []
            self._remove_points()
            self._show_nothing()
        if self.expanded:
            self.edits.watch(layer)
            self.schedule(now=True)

    def _layer_removed(self, event) -> None:
        if event.value is self.points_layer:
            self.points_layer, self._points_set = None, None
        elif event.value is self._labels_for:
            self._labels_changed()

    def image_layer(self, labels_layer):
        """The grey-level image of ``labels_layer``: the one it was segmented from, else the panel's image, else any
        image layer of its shape (a panel's own derived images, such as the uncertainty map, never)."""
        from napari.layers import Image

        if labels_layer is None:
            return None
        named = layer_meta.image_name(labels_layer)
        candidates = [self.viewer.layers[named]] if named and named in self.viewer.layers else []
        candidates.append(self.image_hint() if self.image_hint is not None else None)
        candidates += list(self.viewer.layers)
        return next((layer for layer in candidates if isinstance(layer, Image) and not getattr(layer, "rgb", False)
                     and not layer_meta.is_derived(layer)
                     and np.shape(layer.data) == np.shape(labels_layer.data)), None)

    # -- computing
    def schedule(self, event=None, now: bool = False) -> None:
        """Recompute once the labels have been quiet for `DEBOUNCE_MS` (``now``: at the next event-loop turn)."""
        if self.expanded:
            self.timer.start(0 if now else DEBOUNCE_MS)

    def _inputs(self):
        layer = self.labels_layer()
        if layer is None:
            return None
        labels = np.array(layer.data, copy=True)
        image_layer = self.image_layer(layer)
        image = None if image_layer is None else np.asarray(image_layer.data, dtype=np.float32).copy()
        remote_layer = self.remote_picker.current_layer()
        remote = None
        if remote_layer is not None:
            if np.shape(remote_layer.data) != labels.shape:
                raise LvsegError(f"remote region '{remote_layer.name}' has shape {np.shape(remote_layer.data)}, the "
                                 f"labels {labels.shape}")
            remote = np.asarray(remote_layer.data) > 0
        value = BULLSEYE_VALUES[self.value_picker.currentText()]
        return layer, labels, image, remote, value

    @guarded
    def recompute(self):
        """Start the analysis of the chosen labels in a worker (a second call while it runs: once more after it)."""
        if not self.expanded:
            return None
        if self.runner.running:
            self._again = True
            return None
        inputs = self._inputs()
        if inputs is None:
            self._show_nothing("choose a labels layer (segment an image first)")
            return None
        layer, labels, image, remote, value = inputs
        from napari_lvseg import labels as lb

        if not lb.region(labels, "myocardium").any():
            self._show_nothing(f"'{layer.name}' holds no myocardium yet")
            return None
        self._generation += 1
        generation = self._generation
        return self.runner.start(analyse, labels, image, self.levels, self.insertion, value, remote,
                                 status="computing the AHA segments…",
                                 on_returned=lambda out: self._show(out, layer, generation),
                                 on_finished=self._on_finished)

    def _on_finished(self) -> None:
        if self._again:
            self._again = False
            self.schedule(now=True)

    @guarded
    def _show(self, out, layer, generation) -> None:
        if generation != self._generation or layer is not self.labels_layer():
            return   # the labels changed meanwhile: a newer run follows
        result, methods, png = out
        self.result, self.methods = result, methods
        if self.insertion is None:
            self.insertion = result.insertion   # estimated once; kept until the user moves it or asks again
        if self.levels is None:
            self.levels_edit.setText(levels_text(result.levels))
        self.insertion_label.setText(f"{result.insertion.angle_deg:.0f}° ({result.insertion.source})")
        self.insertion_label.setToolTip(f"{result.insertion.describe()}\n\n{tips.AHA_INSERTION}")
        self._place_points(layer, result.insertion.angle_deg)
        pixmap = QPixmap()
        pixmap.loadFromData(png, "PNG")
        self.bullseye.setPixmap(pixmap)
        rows = [r for r in result.rows if r["imaged"]]
        myo = sum(r["myocardium_px"] for r in rows)
        infarct = sum(r["infarct_px"] for r in rows)
        no_reflow = sum(r["no_reflow_px"] for r in rows)
        pct = (lambda part: f"{100.0 * part / myo:.1f}") if myo else (lambda part: "-")
        classes = [r for r in rows if r["transmurality_class"] not in ("", "0")]
        self.summary.setText(f"{len(rows)} of 17 segments imaged; infarct {pct(infarct)} % and no-reflow "
                             f"{pct(no_reflow)} % of their myocardium; {len(classes)} segments with infarct "
                             f"({sum(r['transmurality_class'] in ('51-75', '76-100') for r in classes)} over 50 % "
                             "transmural)")
        self.methods_table.setRowCount(len(methods))
        for r, method in enumerate(methods):
            name = "labels (this layer)" if method["method"] == "labels" else method["method"]
            cells = (name, "-" if math.isnan(method["infarct_pct"]) else f"{method['infarct_pct']:.1f}",
                     str(method["infarct_px"]))
            for c, text in enumerate(cells):
                self.methods_table.setItem(r, c, QTableWidgetItem(text))
        self.methods_table.resizeColumnsToContents()
        self.methods_table.setFixedHeight(self.methods_table.horizontalHeader().height()
                                          + sum(self.methods_table.rowHeight(r) for r in range(len(methods))) + 4)
        self.status.setText("" if methods else "threshold methods need the labels' image and some remote myocardium")

    def _show_nothing(self, text: str = "") -> None:
        self.bullseye.clear()
        self.summary.setText("")
        self.methods_table.setRowCount(0)
        self.status.setText(text)

    # -- levels and insertion
    @guarded
    def set_levels(self, value) -> None:
        """The slice levels: letters in stack order (b basal, m mid, a apical, x apex cap, - none), a list of level
        names, or None for the automatic thirds."""
        from napari_lvseg.analysis import aha

        if value is None or (isinstance(value, str) and not value.strip()):
            self.levels = None
        else:
            layer = self.labels_layer()
            if layer is None:
                raise LvsegError("no labels layer to give levels to")
            n = 1 if np.ndim(layer.data) == 2 else len(layer.data)
            self.levels = aha.parse_levels(value, n)
            self.levels_edit.setText(levels_text(self.levels))
        self.schedule(now=True)

    def estimate_insertion(self) -> None:
        """Estimate the RV insertion from the image again (after the user moved it)."""
        self.insertion = None
        self.schedule(now=True)

    def _remove_points(self) -> None:
        layer, self.points_layer, self._points_set = self.points_layer, None, None
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)

    def _place_points(self, labels_layer, angle_deg: float) -> None:
        """The insertion marker: one point per slice on the epicardium along the angle, in a Points layer of the
        labels' scale (made once, then moved)."""
        from napari_lvseg.analysis import aha

        points = np.asarray(aha.insertion_points(labels_layer.data, angle_deg), float).reshape(-1, 3)
        if np.ndim(labels_layer.data) == 2:
            points = points[:, 1:]
        if self.points_layer is not None and self.points_layer not in self.viewer.layers:
            self.points_layer = None
        self._writing_points = True
        try:
            if self.points_layer is None:
                self.points_layer = self.viewer.add_points(
                    points, ndim=np.ndim(labels_layer.data), name=f"{labels_layer.name} RV insertion", size=5,
                    face_color="magenta", border_color="white", scale=labels_layer.scale,
                    translate=labels_layer.translate,
                    metadata=layer_meta.derived_metadata(layer_meta.RV_INSERTION))
                self.points_layer.events.data.connect(self._points_edited)
                self.viewer.layers.selection.active = labels_layer   # painting goes on where it was
            elif self._points_set is None or not np.array_equal(points, self._points_set):
                self.points_layer.data = points
        finally:
            self._writing_points = False
        self._points_set = points.copy()

    def _points_edited(self, event=None) -> None:
        if not self._writing_points:
            self.point_timer.start()

    @guarded
    def point_moved(self) -> None:
        """The user moved (or added) an insertion point: its angle from its slice's LV centre becomes the insertion
        of every slice."""
        from napari_lvseg.analysis import aha

        layer, labels_layer = self.points_layer, self.labels_layer()
        if layer is None or labels_layer is None or not len(layer.data):
            return
        data = np.asarray(layer.data, float)
        old = self._points_set
        if old is not None and old.shape == data.shape:
            moved = np.flatnonzero(np.abs(data - old).max(axis=1) > 1e-6)
            if not len(moved):
                return
            point = data[moved[-1]]
        else:
            point = data[-1]   # a point added (or some deleted): the last one
        self._points_set = data.copy()
        self.insertion = aha.insertion_from_point(labels_layer.data, point)
        self.schedule(now=True)

    # -- outputs
    @guarded
    def show_method(self, method: str | None = None):
        """Add (or update) the chosen threshold method's result as a Labels layer "<labels> <method>" (3 where the
        method finds infarct, 0 elsewhere); returns it."""
        from napari_lvseg._reader import labels_layer_kwargs

        method = method or self.method_picker.currentText()
        labels_layer = self.labels_layer()
        if labels_layer is None:
            raise LvsegError("no labels layer: segment an image first")
        if not self.methods:
            raise LvsegError("no threshold results: they need the labels' image and some remote myocardium "
                             "(label 2 or a remote region)")
        row = next((m for m in self.methods if m["method"] == method), None)
        if row is None:
            raise LvsegError(f"unknown threshold method {method!r}")
        name = f"{labels_layer.name} {method}"
        layer = next((other for other in self.viewer.layers if other.name == name
                      and layer_meta.derived(other) == layer_meta.THRESHOLD), None)
        if layer is not None and layer.data.shape == row["labels"].shape:
            layer.data = row["labels"]
        else:
            layer = self.viewer.add_labels(row["labels"], name=name, scale=labels_layer.scale,
                                           translate=labels_layer.translate, opacity=0.6,
                                           metadata=layer_meta.derived_metadata(layer_meta.THRESHOLD),
                                           **labels_layer_kwargs())
        self.viewer.layers.selection.active = labels_layer
        self.status.setText(f"'{name}': {method} finds {row['infarct_pct']:.1f} % of the myocardium infarcted")
        return layer

    @guarded
    def export_png(self, path=None):
        """The bullseye shown, as a PNG; returns its path."""
        from napari_lvseg.analysis import bullseye

        if self.result is None:
            raise LvsegError("no AHA figures yet: open the section on a labels layer with myocardium")
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export bullseye", "bullseye.png", "PNG (*.png)")
            if not path:
                return None
        value = BULLSEYE_VALUES[self.value_picker.currentText()]
        written = bullseye.save_bullseye(self.result, path, value)
        notify_info(f"bullseye written to {written}")
        self.status.setText(f"bullseye written to {written}")
        return written

    @guarded
    def write_report(self, path=None):
        """The one-page report (PDF or PNG, CSV beside it) of the labels with the levels and insertion shown, in a
        worker; returns the worker."""
        layer = self.labels_layer()
        if layer is None or self.result is None:
            raise LvsegError("no AHA figures yet: open the section on a labels layer with myocardium")
        image_layer = self.image_layer(layer)
        if image_layer is None:
            raise LvsegError(f"no image layer of the shape of '{layer.name}' for the report's slices")
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Write report", "report.pdf", "PDF (*.pdf);;PNG (*.png)")
            if not path:
                return None
        made_by = layer_meta.model(layer)
        model = f"model {made_by}" if made_by else f"labels layer '{layer.name}'"
        spacing = labels_spacing(layer) if np.ndim(layer.data) == 3 else None
        return self.report_runner.start(write_report, np.asarray(image_layer.data), np.array(layer.data, copy=True),
                                        image_layer.name, model, spacing, self.levels,
                                        self.insertion or self.result.insertion, path,
                                        status=f"writing the report to {path}…", description="Writing the report",
                                        on_returned=lambda written: self._report_written(written))

    def _report_written(self, written) -> None:
        page, table = written
        self.status.setText(f"report written to {page} (figures in {table.name})")
        notify_info(f"report written to {page} and {table}")


__all__ = ["AhaSection", "analyse", "levels_text"]
