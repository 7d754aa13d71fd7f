"""Synthesize: draw or edit an LV mask and render synthetic LGE images from it with a Pix2Pix model.

Mask edits (and "Clean islands") never change the layer they start from: they go to a copy, "<name> what-if", so a
what-if edit never lands in a correction the Correct-and-save panel autosaves. With a context generator the mask is
rendered into a real image (the "context": by default the image the mask belongs to), keeping everything outside
the LV region; a mask without one takes a donor slice from the open images with labels, nearest in LV size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_lvseg import labels as lb, layer_meta
from napari_lvseg.errors import LvsegError
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    LayerPicker,
    ModelPicker,
    choose_folder,
    folder_of,
    guarded,
    notify_info,
    register_widget,
    set_labels_undoably,
    spin_box,
)
from napari_lvseg.widgets.panel_state import PanelState, default_synthetic_dir, plain_viewer
from napari_lvseg.widgets.runner import Runner

ACTIONS = ("grow infarct", "shrink infarct", "add no-reflow", "remove no-reflow", "random variant")
SCOPES = ("current slice", "whole stack")
REDRAW = ("only what I changed", "the whole LV")   # synthesize's fill: "changes", "lv"
# what an edit works on: (its name, the labels that hold it); no-reflow is added inside an infarct
_INFARCT = ("infarct", (lb.INFARCT, lb.NO_REFLOW))
NEEDS = {"grow infarct": _INFARCT, "shrink infarct": _INFARCT, "add no-reflow": _INFARCT,
         "remove no-reflow": ("no-reflow", (lb.NO_REFLOW,))}


NO_CONTEXT = "none (donor from the open cases)"
CLEAN_TIP = ("Keep the largest piece of cavity and of wall (myocardium, infarct, no-reflow) in each slice, in the "
             "what-if copy; the status says where the islands were.")
CONTEXT_TIP = ("Real image the mask is rendered into by a context generator: only the LV region is generated, every "
               "pixel outside it stays this image's. Default: the image the mask belongs to. 'none': a donor slice "
               "of the open images with labels, the one nearest in LV size.")
DONOR_TIP = "Without a context image: which donor slice, by LV size (0: the nearest, 1: the next, ...)."


def what_if_name(name: str) -> str:
    return f"{name} {layer_meta.WHAT_IF}"


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
    def clean_islands(labels):
        """``(cleaned, islands)``: `synthesis.clean_islands`."""
        from napari_lvseg.synthesis import clean_islands

        return clean_islands(labels)

    @staticmethod
    def islands_text(islands, limit: int = 4) -> str:
        from napari_lvseg.synthesis import describe_islands

        return describe_islands(islands, limit)

    @staticmethod
    def image_of(viewer, layer):
        """The image layer a labels layer belongs to, of its shape, or None: the image it was segmented from
        (`layer_meta.image_name`), the image of the file it is tied to, that of the layer a what-if copy was made
        from, or the image named as the labels are ("X" for "X labels" / "X prediction")."""
        from napari.layers import Image

        if layer is None:
            return None
        images = [im for im in viewer.layers if isinstance(im, Image) and not layer_meta.is_derived(im)
                  and tuple(im.data.shape) == tuple(layer.data.shape)]
        by_name = {im.name: im for im in images}
        if layer_meta.image_name(layer) in by_name:
            return by_name[layer_meta.image_name(layer)]
        tied = layer_meta.source_path(layer)
        if tied:
            for im in images:
                if layer_meta.source_of(im) == tied:
                    return im
        origin = layer_meta.what_if_of(layer)
        if origin and origin in viewer.layers and viewer.layers[origin] is not layer:
            return SynthesizeLogic.image_of(viewer, viewer.layers[origin])
        for suffix in (" labels", " prediction"):
            if layer.name.endswith(suffix) and layer.name[:-len(suffix)] in by_name:
                return by_name[layer.name[:-len(suffix)]]
        return None

    @staticmethod
    def labels_of(viewer, image):
        """The labels layer (not a what-if copy) that belongs to an image layer, or None."""
        from napari.layers import Labels

        for layer in viewer.layers:
            if (isinstance(layer, Labels) and not layer_meta.is_derived(layer)
                    and SynthesizeLogic.image_of(viewer, layer) is image):
                return layer
        return None

    @staticmethod
    def donors(viewer) -> list:
        """Donor slices (`synthesis.Donor`) of the open image layers that have labels."""
        from napari.layers import Image

        from napari_lvseg.synthesis import donors_from_volumes

        volumes = []
        for image in viewer.layers:
            if isinstance(image, Image) and not layer_meta.is_derived(image):
                labels = SynthesizeLogic.labels_of(viewer, image)
                if labels is not None and not lb.invalid_values(np.asarray(labels.data)):
                    volumes.append((image.name, np.asarray(image.data), np.asarray(labels.data, np.uint8)))
        return donors_from_volumes(volumes)

    @staticmethod
    def run_steps(mask, n: int, model=None, seed: int = 0, **context):
        """``n`` variants, seeds ``seed``, ``seed + 1``, ..., one image per step: yields the number done and
        returns [(seed, image)]. ``context``: `synthesis.synthesize`'s context arguments (none: labels only)."""
        from napari_lvseg import synthesis

        results = []
        for image in synthesis.iter_variants(mask, n, model=model, seed=seed, **context):
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
        self.state = PanelState.of(napari_viewer)   # the synthetic folder is the viewer's (Train adds it)
        self.logic = SynthesizeLogic()
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
        self.apply_button.setToolTip(tips.APPLY_SIM + f" Edits go to a copy of the mask, '{what_if_name('<mask>')}'.")
        self.apply_button.clicked.connect(lambda *_: self.apply_edit())
        self.clean_button = QPushButton("Clean islands")
        self.clean_button.setToolTip(CLEAN_TIP)
        self.clean_button.clicked.connect(lambda *_: self.clean_islands())

        from napari.layers import Image

        self.context_picker = LayerPicker(napari_viewer, (Image,), none_text=NO_CONTEXT)
        self.context_picker.setToolTip(CONTEXT_TIP)
        self.donor_rank = spin_box(0, 10_000, 0, DONOR_TIP)
        self.grain = QCheckBox("the image's grain")
        self.grain.setChecked(True)
        self.grain.setToolTip(tips.SYNTH_GRAIN)
        self.fill = QComboBox()
        self.fill.addItems(REDRAW)
        self.fill.setToolTip(tips.SYNTH_REDRAW)
        self.mask_picker.currentIndexChanged.connect(lambda *_: self._mask_changed())
        self.context_picker.currentIndexChanged.connect(lambda *_: self._context_changed())
        for event in (napari_viewer.layers.events.inserted, napari_viewer.layers.events.removed):
            event.connect(lambda *_: self._context_changed())   # a case with labels opened or closed: donors or not

        self.model_picker = ModelPicker("synthesis")
        self.model_picker.setToolTip(tips.SYNTH_MODEL)
        self.n_variants = spin_box(1, 64, 1, tips.N_VARIANTS)
        self.seed = spin_box(0, 2**31 - 1, 0, tips.SEED)
        self.run_button = QPushButton("Synthesize")
        self.run_button.setToolTip(tips.RUN_SYNTH)
        self.run_button.clicked.connect(lambda *_: self.run())

        self.folder_edit = QLineEdit(str(folder or self.state.synthetic_folder))
        self.folder_edit.setToolTip(tips.SYNTH_FOLDER)
        self.folder_edit.textChanged.connect(self._folder_changed)
        self._folder_changed(self.folder_edit.text())
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
        # closing the dock stops a synthesis too: its images would have no panel to add them to a dataset
        self.runner = Runner(self.run_button, self.status, stopping="stopping after the image in hand…",
                             stopped="synthesis stopped; no image added", panel=self)
        self.edit_runner = Runner(self.apply_button, self.status, stop_text=None)   # a whole-stack edit

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
        form.addRow(self.clean_button)
        form.addRow("context image", self.context_picker)
        form.addRow("donor", self.donor_rank)
        form.addRow("redraw", self.fill)
        form.addRow("fill-in", self.grain)
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
        self._mask_changed()
        self.state.models_changed.connect(self.refresh_models)   # a model was trained
        register_widget(napari_viewer, self)

    @property
    def worker(self):
        """The synthesis's worker while it runs, else None."""
        return self.runner.worker

    def refresh_models(self) -> None:
        self.model_picker.refresh()
        self._context_changed()

    # -- context and model
    def _mask_changed(self):
        """A newly chosen mask brings its own image as the context, where it has one (else none: a donor)."""
        image = self.logic.image_of(self.viewer, self.mask_picker.current_layer())
        if image is not None:
            self.context_picker.select(image)
        else:
            self.context_picker.setCurrentIndex(0)
        self._context_changed()

    def _context_changed(self):
        """Where a context is available (an image, or donors to take one from), the default generator is the context
        one; otherwise the labels-only one. A model the user chose stays chosen."""
        from napari_lvseg.synthesis import default_generator

        try:
            defaults = {default_generator(False), default_generator(True)} - {None}
        except Exception:  # noqa: BLE001 - a broken registry must not break the panel
            return
        if self.model_picker.current_model() in defaults:
            has = self.context_picker.current_layer() is not None or bool(self._donor_sources())
            self.model_picker.select(default_generator(has))

    def _donor_sources(self) -> bool:
        from napari.layers import Image

        return any(isinstance(im, Image) and not layer_meta.is_derived(im)
                   and self.logic.labels_of(self.viewer, im) is not None for im in self.viewer.layers)

    def context_arguments(self, layer, mask, model) -> tuple[dict, str]:
        """``(synthesize's context arguments, what they are in words)`` for the chosen mask and model: the chosen
        context image with its own labels, else donors of the open cases; none for a labels-only model."""
        from napari_lvseg.models.registry import model_card_only
        from napari_lvseg.synthesis import conditioning, fill_for

        if model is None or conditioning(model_card_only(model, "synthesis")) != "context":
            return {}, ""
        image = self.context_picker.current_layer()
        if image is not None:
            context = np.asarray(image.data)
            if context.shape != mask.shape:
                raise LvsegError(f"context image '{image.name}' has shape {context.shape}; the mask '{layer.name}' has "
                                 f"{mask.shape}: choose the mask's own image, or none for a donor")
            own = self._context_labels(layer, image)
            fill = fill_for("changes" if self.fill.currentText() == REDRAW[0] else "lv", mask, own)
            where = f" in '{image.name}'" + (", only what changed redrawn" if fill == "changes" else "")
            return ({"context": context, "context_labels": own, "context_name": image.name, **self._grain(),
                     "fill": fill}, where)
        donors = self.logic.donors(self.viewer)
        if not donors:
            raise LvsegError(f"{model} fills in the LV region of a real image: choose a context image, or open a case "
                             "with labels to take a donor slice from")
        from napari_lvseg.synthesis import donor_contexts

        context, own, names = donor_contexts(mask, donors, self.donor_rank.value(), layer.name)
        shown = sorted(set(names))
        return ({"context": context, "context_labels": own, "context_name": "donor", **self._grain()},
                f" in donor {', '.join(shown[:3])}{' ...' if len(shown) > 3 else ''}")

    def _grain(self) -> dict:
        return {"grain": self.grain.isChecked()}

    def _context_labels(self, layer, image):
        """The context image's own labels (its LV is blanked out too): the layer a what-if copy was made from, the
        mask itself when it belongs to that image, else the image's labels layer."""
        origin = layer_meta.what_if_of(layer)
        if origin and origin in self.viewer.layers and self.logic.image_of(self.viewer, layer) is image:
            data = np.asarray(self.viewer.layers[origin].data)
        elif self.logic.image_of(self.viewer, layer) is image and not layer_meta.is_what_if(layer):
            data = np.asarray(layer.data)
        else:
            other = self.logic.labels_of(self.viewer, image)
            data = None if other is None else np.asarray(other.data)
        ok = data is not None and data.shape == tuple(image.data.shape) and not lb.invalid_values(data)
        return data.astype(np.uint8) if ok else None

    def _folder_changed(self, text: str) -> None:
        """The folder field is the viewer's synthetic folder as it is typed (empty: the default)."""
        self.state.synthetic_folder = Path(text.strip()).expanduser() if text.strip() else None

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
        layer = self.viewer.add_labels(ring, name="LV mask", **labels_layer_kwargs(),
                                       metadata=layer_meta.derived_metadata(layer_meta.DRAWN, labels=True))
        self.mask_picker.select(layer)
        return layer

    def _current_slice(self, layer) -> int | None:
        if layer.ndim != 3 or self.scope.currentText() == SCOPES[1]:
            return None
        z = int(round(float(layer.world_to_data(self.viewer.dims.point[-3:])[0])))
        return min(max(z, 0), layer.data.shape[0] - 1)

    def what_if_layer(self, layer):
        """The layer edits of ``layer`` go to: the layer itself when it is a what-if copy or a mask this panel drew,
        else its copy '<name> what-if' (made now, or the one made before, reset to ``layer``'s labels as one undo
        step). The copy carries no file or correction tie, so Correct and save never sees it."""
        from napari_lvseg._reader import labels_layer_kwargs

        if layer_meta.derived(layer) in (layer_meta.WHAT_IF, layer_meta.DRAWN):
            return layer
        name = what_if_name(layer.name)
        data = np.asarray(layer.data, np.uint8).copy()
        if name in self.viewer.layers and layer_meta.is_what_if(self.viewer.layers[name]) \
                and self.viewer.layers[name].data.shape == data.shape:
            copy = self.viewer.layers[name]
            if not np.array_equal(copy.data, data):
                set_labels_undoably(copy, data)
        else:
            image = self.logic.image_of(self.viewer, layer)
            copy = self.viewer.add_labels(data, name=name, scale=layer.scale, translate=layer.translate,
                                          metadata=layer_meta.what_if_metadata(
                                              layer.name, image.name if image is not None else None),
                                          **labels_layer_kwargs())
        self.mask_picker.select(copy)
        return copy

    @guarded
    def clean_islands(self):
        """Keep the largest piece of cavity and of wall per slice, in the what-if copy; say where the islands were."""
        layer = self.mask_picker.current_layer()
        mask = self.logic.mask_data(layer)
        cleaned, islands = self.logic.clean_islands(mask)
        if not islands:
            self.status.setText(f"'{layer.name}' has no islands: one piece of cavity and of wall per slice")
            return []
        target = self.what_if_layer(layer)
        set_labels_undoably(target, cleaned)
        self.status.setText(f"{len(islands)} island(s) removed in '{target.name}': {self.logic.islands_text(islands)}")
        return islands

    @guarded
    def apply_edit(self):
        """Edit the chosen mask's what-if copy; a whole stack is edited in a worker (seconds for a large one), a slice
        at once."""
        layer = self.mask_picker.current_layer()
        self.logic.mask_data(layer)   # a bad layer is refused before any copy is made
        layer = self.what_if_layer(layer)
        mask = self.logic.mask_data(layer)
        action, z = self.action.currentText(), self._current_slice(layer)
        args = (mask, action, z, self.pixels.value(), self.seed.value())
        if mask.ndim == 2 or z is not None:
            return self._edited(layer, mask, action, self.logic.apply_action(*args))
        return self.edit_runner.start(self.logic.apply_action, *args,
                                      status=f"{action}: editing {mask.shape[0]} slices…",
                                      description=f"{action} ({layer.name})",
                                      on_returned=lambda edited: self._edited(layer, mask, action, edited))

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
        if self.runner.stop():
            return None
        layer = self.mask_picker.current_layer()
        mask = self.logic.mask_data(layer)
        try:
            self.logic.check_trainable(mask, layer.name)
        except LvsegError as exc:
            _, islands = self.logic.clean_islands(mask)
            if islands:   # say where, and offer the fix
                raise LvsegError(f"{exc.message.removesuffix(': fix it and synthesize again')}; islands: "
                                 f"{self.logic.islands_text(islands)}: press 'Clean islands' (largest piece of "
                                 "cavity and of wall kept, in a what-if copy)") from None
            raise
        model = self.model_picker.current_model()
        context, where = self.context_arguments(layer, mask, model)
        name, n = layer.name, self.n_variants.value()
        self.results = []   # a stopped or failed run must not leave the previous images to be added
        return self.runner.start(self.logic.run_steps, mask, n, model, self.seed.value(), **context,
                                 status=f"synthesizing {n} image(s) from {name}{where}…",
                                 step_status=lambda done: f"synthesizing from {name}: {done} of {n} done…",
                                 description=f"Synthesizing from {name}", total=n,
                                 on_returned=lambda results: self.show_results(results, mask, name, model, layer))

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
            if name in self.viewer.layers and layer_meta.is_derived(self.viewer.layers[name]):   # ours only
                self.viewer.layers.remove(name)
            layers.append(self.viewer.add_image(image, name=name, colormap="gray", **place,
                                                metadata=layer_meta.synthetic_metadata(seed, model, mask_name)))
            self._below_labels(layers[-1])
        self.status.setText(f"{len(results)} synthetic image(s) from {mask_name}")
        return layers

    def _below_labels(self, image) -> None:
        """An image layer of its own, just above the topmost other image layer, so below every labels layer that was
        visible over the images: the labels stay visible over it, and it over the images it came from."""
        from napari.layers import Image

        layers = self.viewer.layers
        here = layers.index(image)
        top = max((i for i, layer in enumerate(layers) if isinstance(layer, Image) and layer is not image), default=-1)
        if top + 1 < here:
            layers.move(here, top + 1)

    @guarded
    def add_to_dataset(self) -> list:
        folder = folder_of(self.folder_edit, default_synthetic_dir())
        names = self.logic.add_to_dataset(folder, self.results_mask, self.results, self.results_source,
                                          self.results_model)
        self.results = []   # added once: a second press must not store the same images again
        notify_info(f"{len(names)} synthetic pair(s) added to {folder}")
        self.status.setText(f"added {', '.join(names)}")
        return names
