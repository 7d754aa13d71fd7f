"""Segment LV: run a segmentation model on an image layer; edit, show/hide and quantify the classes."""

from __future__ import annotations

import math

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_lvseg import labels as lb, layer_meta
from napari_lvseg.errors import LvsegError
from napari_lvseg.steps import result_of
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    EditWatcher,
    LayerPicker,
    ModelPicker,
    edited_pixels,
    free_name,
    guarded,
    is_new_case_image,
    labels_spacing,
    notify_info,
    register_widget,
    replaceable_labels,
    set_labels_undoably,
)
from napari_lvseg.widgets.aha_section import AhaSection
from napari_lvseg.widgets.panel_state import PanelState, plain_viewer
from napari_lvseg.widgets.runner import Runner

AUTOMATIC = "automatic"
TABLE_COLUMNS = ("slice", "myocardium_px", "myocardium_mm2", "myocardium_mm3", "myocardium_g", "infarct_pct",
                 "no_reflow_pct", "transmurality_pct", "infarct_mm3", "no_reflow_mm3")
PIXEL_ONLY_COLUMNS = ("slice", "myocardium_px", "infarct_pct", "no_reflow_pct", "transmurality_pct")
# The table's headers (the CSV keeps the keys): short enough that the pixel-only table fits a dock's width.
HEADERS = {"slice": "slice", "myocardium_px": "myo px", "myocardium_mm2": "myo mm²", "myocardium_mm3": "myo mm³",
           "myocardium_g": "mass g", "infarct_pct": "infarct %", "no_reflow_pct": "no-reflow %",
           "transmurality_pct": "transmural %", "infarct_mm3": "infarct mm³", "no_reflow_mm3": "no-reflow mm³"}
REFRESH_DELAY_MS = 300


class SegmentLogic:
    """What the Segment LV panel does, without Qt: checks, inference, layer contents, quantification."""

    @staticmethod
    def image_data(layer) -> np.ndarray:
        """The grey-level data of an Image layer, or LvsegError (no layer, RGB, wrong rank)."""
        from napari.layers import Image

        if layer is None:
            raise LvsegError("no image layer chosen: open an image first")
        if not isinstance(layer, Image):
            raise LvsegError(f"'{layer.name}' is not an image layer")
        if getattr(layer, "rgb", False):
            raise LvsegError(f"'{layer.name}' is an RGB image; a grey-level slice or stack is needed")
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            raise LvsegError(f"'{layer.name}' has {data.ndim} dimensions {data.shape}; a slice (Y, X) or "
                             "a stack (Z, Y, X) is needed")
        return data

    @staticmethod
    def center_from_points(points_layer, image_layer=None):
        """(y, x) of the last point of a Points layer, in the image's pixel coordinates; None without points."""
        if points_layer is None or len(points_layer.data) == 0:
            return None
        point = np.asarray(points_layer.data[-1], float)
        if image_layer is not None:
            try:
                world = np.asarray(points_layer.data_to_world(point), float)
                point = np.asarray(image_layer.world_to_data(world[-image_layer.ndim:]), float)
            except Exception:  # noqa: BLE001 - mismatched dims: fall back to the raw coordinates
                pass
        return float(point[-2]), float(point[-1])

    @staticmethod
    def run_steps(image, model, tta=False, uncertainty=False, center=None, name="image", spacing=None,
                  shading=True):
        """Segmentation one forward pass per step (`inference.segment_steps`): yields (done, steps), returns the
        `SegmentationResult`. ``spacing``: the image layer's scale (its file's pixel size, as the reader sets it);
        ``shading``: divide out a receive coil's shading where it is found (`lvseg segment` does by default)."""
        from napari_lvseg.inference import segment_steps
        from napari_lvseg.locate import pixel_size_mm

        return (yield from segment_steps(image, model, tta=tta, uncertainty=uncertainty, center=center, name=name,
                                         pixel_size=None if spacing is None else pixel_size_mm(spacing),
                                         shading_correction=shading))

    @staticmethod
    def run(image, model, tta=False, uncertainty=False, center=None, name="image", spacing=None, shading=True):
        """`run_steps` run to its end."""
        return result_of(SegmentLogic.run_steps(image, model, tta, uncertainty, center, name, spacing, shading))

    @staticmethod
    def steps(image, tta=False, center=None, model=None, shading=True) -> int:
        """How many steps `run_steps` makes at most for an image with ``model`` (`inference.model_step_count`)."""
        from napari_lvseg.inference import model_step_count

        return model_step_count(image, model, tta, center, shading)

    @staticmethod
    def labels_name(image_name: str) -> str:
        return f"{image_name} labels"

    @staticmethod
    def labels_layer_kwargs(result, image_name: str, source: str, source_meta: dict | None = None) -> dict:
        """Layer kwargs for the prediction: fixed colours, class names, and the prediction kept for later diffs.
        ``source_meta`` (the image file's header, from the reader) lets File > Save write the labels in its space."""
        from napari_lvseg._reader import labels_layer_kwargs

        metadata = layer_meta.prediction_metadata(result.labels, result.model, source, image_name, result.center,
                                                  source_meta)
        features = {"index": list(range(lb.N_CLASSES)), "class": [lb.NAMES[v] for v in range(lb.N_CLASSES)]}
        return {"name": SegmentLogic.labels_name(image_name), "metadata": metadata, "features": features,
                **labels_layer_kwargs()}

    @staticmethod
    def colormap(hidden=()):
        """The class colours with the ``hidden`` classes fully transparent."""
        from napari.utils.colormaps import DirectLabelColormap

        colors = lb.napari_colormap()
        for value in hidden:
            colors[value] = (0.0, 0.0, 0.0, 0.0)
        return DirectLabelColormap(color_dict=colors)

    @staticmethod
    def quantification_rows(labels, spacing=None) -> list[dict]:
        from napari_lvseg.metrics import quantification_rows, quantify

        return quantification_rows(quantify(np.asarray(labels), spacing))

    @staticmethod
    def table_columns(rows) -> list:
        """The table's columns: the sizes in mm and grams only where the labels have a voxel size."""
        present = {key for row in rows for key in row}
        return [key for key in TABLE_COLUMNS if key in PIXEL_ONLY_COLUMNS or key in present]

    @staticmethod
    def export_csv(rows, path):
        from napari_lvseg.metrics import write_csv

        if not rows:
            raise LvsegError("nothing to export: segment an image first")
        return write_csv(rows, path)


def cell_text(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.1f}"
    return str(value)


class SegmentWidget(QWidget):
    """Dock widget "Segment LV"."""

    def __init__(self, napari_viewer):
        super().__init__()
        from napari.layers import Image, Points

        self.viewer = napari_viewer = plain_viewer(napari_viewer)
        self.logic = SegmentLogic()
        self.labels_layer = None
        self.rows: list[dict] = []
        self.hidden: set[int] = set()

        self.image_picker = LayerPicker(napari_viewer, (Image,), follow=is_new_case_image)
        self.image_picker.setToolTip(tips.IMAGE_LAYER)
        self.model_picker = ModelPicker("segmentation")
        self.model_picker.setToolTip(tips.MODEL)
        refresh = QPushButton("↻")
        refresh.setToolTip(tips.REFRESH_MODELS)
        refresh.clicked.connect(lambda *_: self.refresh_models())
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_picker, 1)
        model_row.addWidget(refresh)
        self.tta = QCheckBox("test-time augmentation")
        self.tta.setToolTip(tips.TTA)
        self.uncertainty = QCheckBox("uncertainty map")
        self.uncertainty.setToolTip(tips.UNCERTAINTY)
        self.shading = QCheckBox("correct a coil's shading")
        self.shading.setChecked(True)
        self.shading.setToolTip(tips.SHADING)
        self.center_picker = LayerPicker(napari_viewer, (Points,), none_text=AUTOMATIC)
        self.center_picker.setToolTip(tips.CENTER)
        self.run_button = QPushButton("Segment")
        self.run_button.setToolTip(tips.RUN_SEGMENT)
        self.run_button.clicked.connect(lambda *_: self.run())

        form = QFormLayout()
        form.addRow("image", self.image_picker)
        form.addRow("model", model_row)
        form.addRow(self.tta)
        form.addRow(self.uncertainty)
        form.addRow(self.shading)
        form.addRow("LV centre", self.center_picker)

        classes = QGridLayout()
        self.class_buttons, self.class_checks = {}, {}
        for row, value in enumerate(lb.FOREGROUND):
            name = lb.NAMES[value]
            button = QPushButton(f"{value} {name}")
            r, g, b, _ = (int(255 * c) for c in lb.COLORS[value])
            button.setStyleSheet(f"border-left: 8px solid rgb({r},{g},{b});")
            button.setToolTip(tips.CLASS_BUTTON.format(value=value, name=name))
            button.clicked.connect(lambda *_, v=value: self.pick_class(v))
            check = QCheckBox("show")
            check.setChecked(True)
            check.setToolTip(tips.CLASS_VISIBLE.format(name=name))
            check.toggled.connect(lambda on, v=value: self.set_class_visible(v, on))
            classes.addWidget(button, row, 0)
            classes.addWidget(check, row, 1)
            self.class_buttons[value], self.class_checks[value] = button, check

        self.table = QTableWidget(0, len(PIXEL_ONLY_COLUMNS))
        self.table.setHorizontalHeaderLabels([HEADERS[key] for key in PIXEL_ONLY_COLUMNS])
        self.table.verticalHeader().setVisible(False)   # row numbers from 1 beside slice numbers from 0 confuse
        self.table.setToolTip(tips.QUANT_TABLE)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip(tips.EXPORT_CSV)
        self.export_button.clicked.connect(lambda *_: self.export_csv())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # closing the dock stops a segmentation too: its labels would have no panel to show them
        self.runner = Runner(self.run_button, self.status, stopped="segmentation stopped; labels unchanged",
                             failed="segmentation failed", panel=self)
        self.table.setMinimumHeight(150)   # the panel scrolls: the table keeps a few rows in view
        self.aha = AhaSection(napari_viewer, image_hint=self.image_picker.current_layer)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.run_button)
        layout.addWidget(self.status)
        layout.addLayout(classes)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.export_button)
        layout.addWidget(self.aha)

        self.refresh_timer = QTimer(self)
        self.refresh_timer.setSingleShot(True)
        self.refresh_timer.setInterval(REFRESH_DELAY_MS)
        self.refresh_timer.timeout.connect(self.refresh_table)
        self.edits = EditWatcher(self._schedule_refresh)   # the labels layer's edits refresh the table
        napari_viewer.layers.events.removed.connect(self._layer_removed)
        PanelState.of(napari_viewer).models_changed.connect(self.refresh_models)   # a model was trained
        register_widget(napari_viewer, self)

    # -- models
    def refresh_models(self) -> None:
        self.model_picker.refresh()

    # -- running
    @property
    def worker(self):
        """The segmentation's worker while it runs, else None."""
        return self.runner.worker

    @guarded
    def run(self):
        """Check the inputs and start segmentation in a worker; returns the worker (None if refused). A press while
        it runs stops it after the forward pass in hand (the labels stay as they were)."""
        if self.runner.stop():
            return None
        self.status.setText("")   # a refused run leaves no earlier result's line
        layer = self.image_picker.current_layer()
        image = self.logic.image_data(layer)
        model = self.model_picker.current_model()
        if model is None:
            raise LvsegError("no segmentation model installed: train one or copy one into the model folder")
        center_layer = self.center_picker.current_layer()
        center = self.logic.center_from_points(center_layer, layer)
        if center_layer is not None and center is None:
            raise LvsegError(f"Points layer '{center_layer.name}' has no points: add one at the LV centre")
        name, source, tta = layer.name, layer_meta.source_of(layer), self.tta.isChecked()
        shading = self.shading.isChecked()
        return self.runner.start(self.logic.run_steps, np.asarray(image), model, tta, self.uncertainty.isChecked(),
                                 center, name, tuple(layer.scale), shading, status=f"segmenting {name} with {model}…",
                                 step_status=lambda step: f"segmenting {name} with {model}: step {step[0]} of "
                                                          f"{step[1]}…",
                                 description=f"Segmenting {name}",
                                 total=self.logic.steps(image, tta, center, model, shading),
                                 on_returned=lambda result: self.show_result(result, name, source, layer))

    def run_blocking(self):
        """Segment the picked image in this thread (the demo and scripts); returns the labels layer."""
        layer = self.image_picker.current_layer()
        model = self.model_picker.current_model()
        if model is None:
            raise LvsegError("no segmentation model installed")
        result = self.logic.run(np.asarray(self.logic.image_data(layer)), model, self.tta.isChecked(),
                                self.uncertainty.isChecked(), None, layer.name, tuple(layer.scale),
                                self.shading.isChecked())
        return self.show_result(result, layer.name, layer_meta.source_of(layer), layer)

    @guarded
    def show_result(self, result, image_name: str, source: str, image_layer=None):
        """Put a SegmentationResult into the viewer: one labels layer (replaced if present), optional uncertainty."""
        if image_layer is not None and image_layer not in self.viewer.layers:   # closed while the model ran
            self.status.setText(f"{image_name} was removed while it was segmented: no labels added")
            return None
        kwargs = self.logic.labels_layer_kwargs(result, image_name, source, layer_meta.source(image_layer))
        fallback = f"{image_name} prediction"
        layer = replaceable_labels(self.viewer, (kwargs["name"], fallback), result.labels.shape)
        replaced_edits = None
        if layer is not None:
            replaced_edits = edited_pixels(layer.data, layer_meta.prediction(layer))
            # the new prediction is recorded first: the paint event of the write must find the labels unedited
            layer.metadata.update(kwargs["metadata"])
            set_labels_undoably(layer, result.labels)   # hand edits it replaces come back with Ctrl+Z
        else:   # a layer of that name that is not ours, or cannot take these labels, stays as it is
            kwargs["name"] = free_name(self.viewer, kwargs["name"], fallback)
            extra = {}
            if image_layer is not None:
                extra = {"scale": image_layer.scale, "translate": image_layer.translate}
            layer = self.viewer.add_labels(result.labels, **kwargs, **extra)
        if result.uncertainty is not None:
            name = f"{image_name} uncertainty"
            for old in [other for other in self.viewer.layers if other.name.startswith(name)
                        and layer_meta.derived(other) == layer_meta.UNCERTAINTY]:   # ours, not the user's
                self.viewer.layers.remove(old)
            view, offset = result.uncertainty_in_view()
            scale = np.ones(view.ndim) if image_layer is None else np.asarray(image_layer.scale, float)
            translate = np.zeros(view.ndim) if image_layer is None else np.asarray(image_layer.translate, float)
            self.viewer.add_image(view, name=name, colormap="magma", opacity=0.5,
                                  blending="additive", contrast_limits=(0.0, 1.0),
                                  metadata=layer_meta.derived_metadata(layer_meta.UNCERTAINTY), scale=scale,
                                  translate=translate + offset * scale)
        self.attach(layer)
        self.status.setText(f"{image_name}: segmented with {result.model or 'the model'}"
                            + ("; uncertainty map added (bright = unsure)" if result.uncertainty is not None else ""))
        if result.search_note():   # said where the user looks, and how to help: a point at the LV
            self.status.setText(f"{self.status.text()}; {result.search_note()} (a point in a Points layer, picked "
                                "as the centre)")
            notify_info(f"{image_name}: {result.search_note()}")
        if replaced_edits:   # replaced as one undo step, but the user should know their edits went
            self.status.setText(f"{self.status.text()}; {replaced_edits} hand-edited pixels replaced (Ctrl+Z)")
            notify_info(f"'{layer.name}': the new segmentation replaced {replaced_edits} hand-edited pixels; "
                        "Ctrl+Z in the layer brings them back")
        return layer

    # -- the labels layer being edited
    def attach(self, layer) -> None:
        """Make ``layer`` the one the class buttons, keys and the table work on."""
        self.labels_layer = layer
        self.edits.watch(layer)
        for value in lb.FOREGROUND:
            layer.bind_key(str(value), self._key_callback(value), overwrite=True)
        layer.colormap = self.logic.colormap(self.hidden)
        self.refresh_table()
        self.aha.follow(layer)

    def _layer_removed(self, event) -> None:
        if event.value is self.labels_layer:   # no figures of labels that are gone
            self.refresh_table()

    def _key_callback(self, value):
        def select(layer):
            self.pick_class(value, layer)
        return select

    def _schedule_refresh(self, event=None) -> None:
        self.refresh_timer.start()

    def _current_labels(self):
        if self.labels_layer is not None and self.labels_layer in self.viewer.layers:
            return self.labels_layer
        self.labels_layer = None
        self.edits.watch(None)
        return None

    @guarded
    def pick_class(self, value: int, layer=None) -> None:
        layer = layer or self._current_labels()
        if layer is None:
            raise LvsegError("no labels layer yet: segment an image first")
        layer.selected_label = int(value)
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer

    @guarded
    def set_class_visible(self, value: int, visible: bool) -> None:
        (self.hidden.discard if visible else self.hidden.add)(int(value))
        layer = self._current_labels()
        if layer is not None:
            layer.colormap = self.logic.colormap(self.hidden)

    @guarded
    def refresh_table(self) -> None:
        layer = self._current_labels()
        if layer is None:
            self.rows = []
            self.table.setRowCount(0)
            return
        self.rows = []   # no stale figures for export when the labels cannot be quantified
        self.rows = self.logic.quantification_rows(layer.data, labels_spacing(layer))
        columns = self.logic.table_columns(self.rows)
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([HEADERS[key] for key in columns])
        self.table.setRowCount(len(self.rows))
        for r, row in enumerate(self.rows):
            for c, key in enumerate(columns):
                self.table.setItem(r, c, QTableWidgetItem(cell_text(row.get(key, ""))))
        self.table.resizeColumnsToContents()

    @guarded
    def export_csv(self, path=None):
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export quantification", "quantification.csv", "CSV (*.csv)")
            if not path:
                return None
        self.refresh_table()
        if not self.rows:
            raise LvsegError("nothing to export: the labels layer could not be quantified")
        written = self.logic.export_csv(self.rows, path)
        notify_info(f"quantification written to {written}")
        return written


__all__ = ["SegmentLogic", "SegmentWidget"]
