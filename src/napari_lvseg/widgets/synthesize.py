"""Synthesize: draw or edit an LV mask and render synthetic LGE images from it with a Pix2Pix model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from napari_lvseg import labels as lb
from napari_lvseg.errors import LvsegError
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    DERIVED,
    LayerPicker,
    ModelPicker,
    choose_folder,
    closed_from_dock,
    folder_of,
    guarded,
    notify_info,
    plain_viewer,
    register_widget,
    set_labels_undoably,
    spin_box,
    start_worker,
    user_data_dir,
)

ACTIONS = ("grow infarct", "shrink infarct", "add no-reflow", "remove no-reflow", "random variant")
SCOPES = ("current slice", "whole stack")
# what an edit works on: (its name, the labels that hold it); no-reflow is added inside an infarct
_INFARCT = ("infarct", (lb.INFARCT, lb.NO_REFLOW))
NEEDS = {"grow infarct": _INFARCT, "shrink infarct": _INFARCT, "add no-reflow": _INFARCT,
         "remove no-reflow": ("no-reflow", (lb.NO_REFLOW,))}


def default_synthetic_dir() -> Path:
    return user_data_dir() / "synthetic"


class SynthesizeLogic:
    """Mask drawing and editing, synthesis and export, without Qt."""

    @staticmethod
    def mask_data(layer) -> np.ndarray:
        """A Labels layer's data as a uint8 class mask, or LvsegError."""
        from napari.layers import Labels

        if layer is None:
            raise LvsegError("no labels layer chosen: draw a new LV mask or open one")
        if not isinstance(layer, Labels):
            raise LvsegError(f"'{layer.name}' is not a labels layer")
        data = np.asarray(layer.data)
        if data.ndim not in (2, 3):
            raise LvsegError(f"'{layer.name}' has shape {data.shape}; a slice or a (Z, Y, X) stack is needed")
        bad = lb.invalid_values(data)
        if bad:
            raise LvsegError(f"'{layer.name}' holds values {bad[:5]} that are not classes 0..4")
        return data.astype(np.uint8)

    @staticmethod
    def check_trainable(mask, name: str) -> None:
        from napari_lvseg.data.simulator import check_training_mask

        check_training_mask(mask, name)

    @staticmethod
    def new_ring(shape, center=None, radius: float = 20.0, thickness: float = 8.0) -> np.ndarray:
        from napari_lvseg.data.simulator import draw_lv_ring

        shape = tuple(int(s) for s in shape)
        if center is None:
            center = ((shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0)
        return draw_lv_ring(shape, center, radius, thickness)

    @staticmethod
    def apply_action(labels, action: str, z: int | None = None, pixels: int = 1, seed: int = 0) -> np.ndarray:
        """The edited mask; ``z`` edits only that slice of a stack (None: every slice)."""
        from napari_lvseg.data import simulator as sim

        labels = np.asarray(labels, np.uint8)
        rng = np.random.default_rng(seed)
        ops = {
            "grow infarct": lambda s: sim.grow_infarct(s, pixels),
            "shrink infarct": lambda s: sim.shrink_infarct(s, pixels),
            "add no-reflow": lambda s: sim.add_no_reflow(s, rng),
            "remove no-reflow": sim.remove_no_reflow,
            "random variant": lambda s: sim.random_variant(s, rng),
        }
        if action not in ops:
            raise LvsegError(f"unknown mask edit {action!r} (choose {', '.join(ACTIONS)})")
        op = ops[action]
        if labels.ndim == 2 or z is None:   # every op takes a stack; a stack's random variant keeps its slices aligned
            return op(labels)
        out = labels.copy()
        out[z] = op(labels[z])
        return out

    @staticmethod
    def run_steps(mask, n: int, model=None, seed: int = 0):
        """``n`` variants, seeds ``seed``, ``seed + 1``, ..., one image per step: yields the number done and
        returns [(seed, image)]."""
        from napari_lvseg import synthesis

        results = []
        for image in synthesis.iter_variants(mask, n, model=model, seed=seed):
            results.append((seed + len(results), np.asarray(image, np.float32)))
            yield len(results)
        return results

    @staticmethod
    def add_to_dataset(folder, mask, results, source: str = "", model=None) -> list[str]:
        """Write each (seed, image) with ``mask`` as an origin 'synthetic' pair; returns the pair names."""
        from napari_lvseg.io.pairs import PairFolder

        if not results:
            raise LvsegError("nothing to add: run the synthesis first")
        SynthesizeLogic.check_trainable(mask, source or "the mask")
        from napari_lvseg.io.lock import FolderLock

        pairs = PairFolder(folder)
        pairs.check_writable()   # a file in the way said as for any pair folder, before the lock
        with FolderLock(folder, "synthetic pair folder"):   # e.g. `lvseg synthesize-dataset` writing it: refused
            return [pairs.add(image, mask, origin="synthetic", source=source or None, model=model, seed=int(s))
                    for s, image in results]


class SynthesizeWidget(QWidget):
    """Dock widget "Synthesize"."""

    def __init__(self, napari_viewer, folder=None):
        super().__init__()
        from napari.layers import Labels

        self.viewer = napari_viewer = plain_viewer(napari_viewer)
        self.logic = SynthesizeLogic()
        self.worker = None
        self.edit_worker = None   # a whole-stack edit in progress
        self.results: list[tuple[int, np.ndarray]] = []
        self.results_mask = None
        self.results_source = ""
        self.results_model = None

        self.mask_picker = LayerPicker(napari_viewer, (Labels,))
        self.mask_picker.setToolTip(tips.LABELS_LAYER)

        self.center_y, self.center_x = QLineEdit(), QLineEdit()
        for edit, axis in ((self.center_y, "y"), (self.center_x, "x")):
            edit.setPlaceholderText(f"{axis}: middle")
            edit.setToolTip(tips.RING_CENTER)
        center_row = QHBoxLayout()
        center_row.addWidget(self.center_y)
        center_row.addWidget(self.center_x)
        self.radius = spin_box(4, 200, 20, tips.RING_RADIUS)
        self.thickness = spin_box(1, 100, 8, tips.RING_THICKNESS)
        self.size = spin_box(32, 1024, 128, tips.RING_SHAPE)
        self.new_button = QPushButton("New LV mask")
        self.new_button.setToolTip(tips.NEW_MASK)
        self.new_button.clicked.connect(lambda *_: self.new_mask())

        self.action = QComboBox()
        self.action.addItems(ACTIONS)
        self.action.setToolTip(tips.SIM_ACTION)
        self.pixels = spin_box(1, 20, 2, tips.SIM_PIXELS)
        self.scope = QComboBox()
        self.scope.addItems(SCOPES)
        self.scope.setToolTip(tips.SIM_SCOPE)
        self.apply_button = QPushButton("Apply edit")
        self.apply_button.setToolTip(tips.APPLY_SIM)
        self.apply_button.clicked.connect(lambda *_: self.apply_edit())

        self.model_picker = ModelPicker("synthesis")
        self.model_picker.setToolTip(tips.SYNTH_MODEL)
        self.n_variants = spin_box(1, 64, 1, tips.N_VARIANTS)
        self.seed = spin_box(0, 2**31 - 1, 0, tips.SEED)
        self.run_button = QPushButton("Synthesize")
        self.run_button.setToolTip(tips.RUN_SYNTH)
        self.run_button.clicked.connect(lambda *_: self.run())

        self.folder_edit = QLineEdit(str(folder or default_synthetic_dir()))
        self.folder_edit.setToolTip(tips.SYNTH_FOLDER)
        choose = QPushButton("…")
        choose.setToolTip(tips.CHOOSE_FOLDER)
        choose.clicked.connect(lambda *_: self._choose())
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(choose)
        self.add_button = QPushButton("Add to synthetic dataset")
        self.add_button.setToolTip(tips.ADD_SYNTH)
        self.add_button.clicked.connect(lambda *_: self.add_to_dataset())
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("mask", self.mask_picker)
        form.addRow("centre (y, x)", center_row)
        form.addRow("cavity radius", self.radius)
        form.addRow("wall thickness", self.thickness)
        form.addRow("slice size", self.size)
        form.addRow(self.new_button)
        form.addRow("edit", self.action)
        form.addRow("pixels", self.pixels)
        form.addRow("apply to", self.scope)
        form.addRow(self.apply_button)
        form.addRow("model", self.model_picker)
        form.addRow("variants", self.n_variants)
        form.addRow("seed", self.seed)
        form.addRow(self.run_button)
        form.addRow("synthetic folder", folder_row)
        form.addRow(self.add_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addStretch(1)
        register_widget(napari_viewer, self)

    def event(self, event):
        """Closing the dock stops a synthesis: its images would have no panel to add them to a dataset."""
        if closed_from_dock(self, event) and self.worker is not None:
            self.worker.quit()
        return super().event(event)

    def refresh_models(self) -> None:
        self.model_picker.refresh()

    @guarded
    def _choose(self):
        folder = choose_folder(self, "Synthetic pair folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    def _center(self, shape):
        texts = (self.center_y.text().strip(), self.center_x.text().strip())
        if not any(texts):
            return None
        try:
            return tuple(float(t) if t else (s - 1) / 2.0 for t, s in zip(texts, shape))
        except ValueError:
            raise LvsegError(f"LV centre must be numbers, got {texts}") from None

    # -- actions
    @guarded
    def new_mask(self):
        from napari_lvseg._reader import labels_layer_kwargs

        shape = (self.size.value(), self.size.value())
        ring = self.logic.new_ring(shape, self._center(shape), self.radius.value(), self.thickness.value())
        layer = self.viewer.add_labels(ring, name="LV mask", metadata={"lvseg_classes": dict(lb.NAMES)},
                                       **labels_layer_kwargs())
        self.mask_picker.select(layer)
        return layer

    def _current_slice(self, layer) -> int | None:
        if layer.ndim != 3 or self.scope.currentText() == SCOPES[1]:
            return None
        z = int(round(float(layer.world_to_data(self.viewer.dims.point[-3:])[0])))
        return min(max(z, 0), layer.data.shape[0] - 1)

    @guarded
    def apply_edit(self):
        """Edit the chosen mask; a whole stack is edited in a worker (seconds for a large one), a slice at once."""
        layer = self.mask_picker.current_layer()
        mask = self.logic.mask_data(layer)
        action, z = self.action.currentText(), self._current_slice(layer)
        args = (mask, action, z, self.pixels.value(), self.seed.value())
        if mask.ndim == 2 or z is not None:
            return self._edited(layer, mask, action, self.logic.apply_action(*args))
        self.apply_button.setEnabled(False)
        self.status.setText(f"{action}: editing {mask.shape[0]} slices…")
        self.edit_worker = start_worker(self.logic.apply_action, *args, description=f"{action} ({layer.name})",
                                        on_returned=lambda edited: self._edited(layer, mask, action, edited),
                                        on_finished=lambda: self.apply_button.setEnabled(True))
        return self.edit_worker

    @guarded
    def _edited(self, layer, mask, action: str, edited):
        if layer not in self.viewer.layers or not np.array_equal(layer.data, mask):
            raise LvsegError(f"'{layer.name}' changed while '{action}' ran: nothing applied, edit again")
        set_labels_undoably(layer, edited)
        changed = int(np.count_nonzero(edited != mask))
        needed = NEEDS.get(action)
        why = ""
        if not changed and needed and not np.isin(mask, needed[1]).any():
            why = f": the mask has no {needed[0]} to edit (paint some with label {needed[1][0]} first)"
        self.status.setText(f"{action}: {changed} pixels changed{why}")
        return edited

    @guarded
    def run(self):
        """Synthesize in a worker; a press while it runs stops it after the image in hand (nothing is added)."""
        if self.worker is not None:
            self.worker.quit()
            self.run_button.setEnabled(False)
            self.status.setText("stopping after the image in hand…")
            return None
        layer = self.mask_picker.current_layer()
        mask = self.logic.mask_data(layer)
        self.logic.check_trainable(mask, layer.name)
        model = self.model_picker.current_model()
        name, n = layer.name, self.n_variants.value()
        self.results = []   # a stopped or failed run must not leave the previous images to be added
        self.run_button.setText("Stop")
        self.status.setText(f"synthesizing {n} image(s) from {name}…")
        self.worker = start_worker(self.logic.run_steps, mask, n, model, self.seed.value(),
                                   description=f"Synthesizing from {name}", total=n,
                                   on_yielded=lambda done: self.status.setText(
                                       f"synthesizing from {name}: {done} of {n} done…"),
                                   on_returned=lambda results: self.show_results(results, mask, name, model, layer),
                                   on_finished=self._finished)
        return self.worker

    def _finished(self):
        if self.worker is not None and self.worker.abort_requested:
            self.status.setText("synthesis stopped; no image added")
        self.worker = None
        self.run_button.setText("Synthesize")
        self.run_button.setEnabled(True)

    @guarded
    def show_results(self, results, mask, mask_name: str, model=None, mask_layer=None) -> list:
        """Add the synthetic images over their mask layer (the one given, renamed meanwhile or not, else the layer
        of that name)."""
        self.results, self.results_mask, self.results_source, self.results_model = results, mask, mask_name, model
        layers = []
        if mask_layer is None or mask_layer not in self.viewer.layers:
            mask_layer = self.viewer.layers[mask_name] if mask_name in self.viewer.layers else None
        place = {}   # the images lie over their mask, in its units
        if mask_layer is not None and mask_layer.ndim == np.ndim(mask):
            place = {"scale": mask_layer.scale, "translate": mask_layer.translate}
        for seed, image in results:
            name = f"{mask_name} synthetic s{seed}"
            if name in self.viewer.layers and self.viewer.layers[name].metadata.get(DERIVED):   # ours only
                self.viewer.layers.remove(name)
            layers.append(self.viewer.add_image(image, name=name, colormap="gray", **place,
                                                metadata={"lvseg_seed": seed, "lvseg_model": model,
                                                          "lvseg_mask_layer": mask_name, DERIVED: "synthetic"}))
        self.status.setText(f"{len(results)} synthetic image(s) from {mask_name}")
        return layers

    @guarded
    def add_to_dataset(self) -> list:
        folder = folder_of(self.folder_edit, default_synthetic_dir())
        names = self.logic.add_to_dataset(folder, self.results_mask, self.results, self.results_source,
                                          self.results_model)
        self.results = []   # added once: a second press must not store the same images again
        notify_info(f"{len(names)} synthetic pair(s) added to {folder}")
        self.status.setText(f"added {', '.join(names)}")
        return names
