"""Correct and save: keep corrected (image, labels) pairs in an annotation folder, autosaved, case by case."""

from __future__ import annotations

import re
import weakref
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_lvseg import layer_meta
from napari_lvseg.errors import LvsegError
from napari_lvseg.steps import result_of
from napari_lvseg.widgets import tooltips as tips
from napari_lvseg.widgets._common import (
    EditWatcher,
    LayerPicker,
    ModelPicker,
    ask_before_window_closes,
    choose_folder,
    closed_from_dock,
    edited_pixels,
    folder_of,
    free_name,
    guarded,
    is_new_case_image,
    notify_info,
    notify_warning,
    register_widget,
    replaceable_labels,
    set_labels_undoably,
)
from napari_lvseg.widgets.panel_state import PanelState, default_annotation_dir, plain_viewer
from napari_lvseg.widgets.runner import Runner

AUTOSAVE_DELAY_MS = 3000


class CorrectLogic:
    """Saving corrections and walking a folder of cases, without Qt."""

    def __init__(self, folder=None):
        self.folder = Path(folder) if folder else default_annotation_dir()
        self.queue: list[dict] = []   # ranked cases not yet opened
        self.ranked_folder: Path | None = None

    def pairs(self):
        from napari_lvseg.io.pairs import PairFolder

        return PairFolder(self.folder)

    # -- saving
    @staticmethod
    def pair_name(source) -> str:
        """The one pair name a source is saved under, so that every (auto)save replaces the last one."""
        import hashlib

        from napari_lvseg.io import full_suffix

        name = Path(str(source)).name
        suffix = full_suffix(name)
        stem = name[: len(name) - len(suffix)] if suffix else name
        # a short hash of the full path: a/img.tif and b/img.tif must not overwrite each other
        tag = hashlib.sha1(str(source).encode()).hexdigest()[:6]
        return (re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "image") + f"_{tag}_corrected"

    edited_pixels = staticmethod(edited_pixels)

    @staticmethod
    def unedited_prediction(labels, metadata) -> bool:
        """Whether labels are still the prediction kept in their layer metadata (False when none was kept)."""
        return CorrectLogic.edited_pixels(labels, layer_meta.prediction(metadata or {})) == 0

    def save(self, image, labels, source, model=None, prediction=None, labels_name: str = "labels",
             spacing=None) -> str:
        """Store the pair (origin 'corrected'); returns the pair name. ``labels_name`` names the labels in errors;
        ``spacing`` (the image layer's scale) keeps the image's pixel size, which fine-tuning reads it at."""
        from napari_lvseg.io.volume import check_labels

        if image is None or labels is None:
            raise LvsegError("choose an image layer and its labels layer first")
        image, labels = np.asarray(image), np.asarray(labels)
        if image.shape != labels.shape:
            raise LvsegError(f"image shape {image.shape} and labels shape {labels.shape} differ")
        check_labels(labels, labels_name)
        from napari_lvseg.io.lock import FolderLock

        pairs = self.pairs()
        pairs.check_writable()   # a file in the way said as for any pair folder, before the lock
        with FolderLock(self.folder, "annotation folder"):   # another process writing it: refused, nothing mixed
            return pairs.add(image, labels, origin="corrected", source=str(source), model=model or None,
                             name=self.pair_name(source), edited_pixels=self.edited_pixels(labels, prediction),
                             spacing=spacing)

    def saved_record(self, source) -> dict | None:
        if not self.folder.is_dir():
            return None
        try:
            return self.pairs().find(str(source))
        except LvsegError:
            return None

    def load_saved(self, source) -> np.ndarray:
        record = self.saved_record(source)
        if record is None:
            raise LvsegError(f"no saved correction of {source}", self.folder)
        return self.pairs().read(record["name"])[1]

    # -- cases
    @staticmethod
    def list_cases(folder) -> list[Path]:
        """EMIDEC case folders under ``folder``, else the NIfTI/TIFF images in it."""
        from napari_lvseg.io import folder_sources

        folder = Path(folder)
        if not folder.is_dir():
            raise LvsegError("not a folder", folder)
        cases = folder_sources(folder, dicom_series=False)
        if not cases:
            raise LvsegError("no EMIDEC cases or NIfTI/TIFF images found", folder)
        return cases

    @staticmethod
    def read_case(path) -> tuple:
        """(image Volume, name, source path) of a case folder or image file."""
        from napari_lvseg.io import image_kind, read_image
        from napari_lvseg.io.emidec import case_from_path

        path = Path(path)
        if image_kind(path) == "emidec-case":
            case = case_from_path(path)
            return read_image(case.image_path), case.name, str(case.image_path)
        name = CorrectLogic.pair_name(path)[: -len("_corrected")]
        return read_image(path), name, str(path)

    @staticmethod
    def rank_cases_steps(cases, model):
        """Read and segment every case with uncertainty, one case per step: yields (cases done, cases) and returns
        (cases least certain first, one line per case that could not be read or segmented). A bad case is left out
        rather than ending the ranking of the others."""
        from napari_lvseg.inference import check_segmentable, uncertainty_scores

        read, skipped = {}, []

        def readable():
            for path in map(Path, cases):
                try:
                    read[path] = CorrectLogic.read_case(path)
                    check_segmentable(read[path][0].data, path)   # a NaN image must not end the ranking
                except LvsegError as exc:
                    read.pop(path, None)
                    skipped.append(str(exc))
                    continue
                yield path, read[path][0].data

        scored = []
        for item in uncertainty_scores(readable(), model):
            scored.append(item)
            yield len(scored) + len(skipped), len(cases)
        if not read:
            raise LvsegError(f"no case could be read ({skipped[0]})" if skipped else "no cases to rank")
        scored.sort(key=lambda item: -item[2])
        return [{"path": path, "name": read[path][1], "source": read[path][2], "image": read[path][0].data,
                 "meta": read[path][0].meta, "result": result, "score": score}
                for path, result, score in scored], skipped

    @staticmethod
    def rank_cases(cases, model) -> tuple[list[dict], list[str]]:
        """`rank_cases_steps` run to its end."""
        return result_of(CorrectLogic.rank_cases_steps(cases, model))

    def next_case(self) -> dict | None:
        return self.queue.pop(0) if self.queue else None


class CorrectWidget(QWidget):
    """Dock widget "Correct and save"."""

    def __init__(self, napari_viewer, folder=None):
        super().__init__()
        from napari.layers import Image, Labels

        self.viewer = napari_viewer = plain_viewer(napari_viewer)
        self.state = PanelState.of(napari_viewer)   # the annotation folder is the viewer's (Train adds it)
        self.logic = CorrectLogic(folder or self.state.annotation_folder)
        self.state.annotation_folder = self.logic.folder
        self.edits = EditWatcher(self._edited)
        self.pending = None  # (image layer, labels layer) edited since the last autosave
        self.unsaved = None   # (image layer, labels layer) edited with autosave off and not saved since
        # labels layer -> the prediction its saved edits were made on: undoing them back to it is saved too
        self.saved_from = weakref.WeakKeyDictionary()
        self.on_disk = weakref.WeakKeyDictionary()   # labels layer -> checksum of what was last saved or loaded
        self.ask_save = self._ask_save   # injectable: tests answer without a modal dialog

        self.image_picker = LayerPicker(napari_viewer, (Image,), follow=is_new_case_image)
        self.image_picker.setToolTip(tips.IMAGE_LAYER)
        self.labels_picker = LayerPicker(napari_viewer, (Labels,), follow=layer_meta.is_tied_to_file)
        self.labels_picker.setToolTip(tips.LABELS_LAYER)
        self.folder_edit = QLineEdit(str(self.logic.folder))
        self.folder_edit.setToolTip(tips.ANNOTATION_FOLDER)
        self.folder_edit.editingFinished.connect(self._folder_changed)
        folder_row = self._folder_row(self.folder_edit, "Annotation folder")
        self.save_button = QPushButton("Save correction")
        self.save_button.setToolTip(tips.SAVE)
        self.save_button.clicked.connect(lambda *_: self.save())
        self.autosave = QCheckBox("autosave")
        self.autosave.setChecked(True)
        self.autosave.setToolTip(tips.AUTOSAVE)
        self.load_button = QPushButton("Load saved correction")
        self.load_button.setToolTip(tips.LOAD_SAVED)
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(lambda *_: self.load_saved())

        self.model_picker = ModelPicker("segmentation")
        self.model_picker.setToolTip(tips.MODEL)
        self.cases_edit = QLineEdit("")
        self.cases_edit.setToolTip(tips.CASES_FOLDER)
        cases_row = self._folder_row(self.cases_edit, "Folder of cases")
        self.next_button = QPushButton("Next case")
        self.next_button.setToolTip(tips.NEXT_CASE)
        self.next_button.clicked.connect(lambda *_: self.next_case())
        self.status = QLabel("")
        self.status.setWordWrap(True)
        # closing the dock stops a ranking too: its cases would open in a viewer the user has moved on from
        self.runner = Runner(self.next_button, self.status, stop_text="Stop ranking",
                             stopping="stopping after the case in hand…", stopped="ranking stopped; no case queued",
                             panel=self)

        form = QFormLayout()
        form.addRow("image", self.image_picker)
        form.addRow("labels", self.labels_picker)
        form.addRow("annotations", folder_row)
        form.addRow(self.autosave)
        form.addRow(self.save_button)
        form.addRow(self.load_button)
        form.addRow("cases", cases_row)
        form.addRow("model", self.model_picker)
        form.addRow(self.next_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self._autosave)
        self.image_picker.currentIndexChanged.connect(lambda *_: (self.flush_autosave(), self.check_saved()))
        self.labels_picker.currentIndexChanged.connect(lambda *_: self._watch())
        self._watch()
        self.check_saved()
        self.state.models_changed.connect(self.refresh_models)   # a model was trained
        register_widget(napari_viewer, self)

    def event(self, event):
        """Closing the dock saves pending edits at once. Hiding it (napari's window closing, another dock tab on top)
        saves them too: the autosave timer would not outlive the window."""
        from qtpy.QtCore import QEvent

        if closed_from_dock(self, event):
            self.flush_autosave()
            self._offer_unsaved(can_cancel=False)
        elif event.type() == QEvent.Hide:
            self.flush_autosave()
        return super().event(event)

    @property
    def worker(self):
        """The ranking's worker while it runs, else None."""
        return self.runner.worker

    # -- helpers
    def refresh_models(self) -> None:
        self.model_picker.refresh()

    def _folder_row(self, edit, title) -> QHBoxLayout:
        """A folder field with its "…" chooser button."""
        choose = QPushButton("…")
        choose.setToolTip(tips.CHOOSE_FOLDER)
        choose.clicked.connect(lambda *_: self._choose(edit, title))
        row = QHBoxLayout()
        row.addWidget(edit, 1)
        row.addWidget(choose)
        return row

    @guarded
    def _choose(self, edit, title):
        folder = choose_folder(self, title, edit.text())
        if folder:
            edit.setText(folder)
            edit.editingFinished.emit()

    @guarded
    def _folder_changed(self):
        from napari_lvseg.io.pairs import PairFolder

        folder = folder_of(self.folder_edit, default_annotation_dir())
        try:   # said when the folder is chosen, not at the first save after an hour of edits
            PairFolder(folder).check_writable()
        except LvsegError:
            self.folder_edit.setText(str(self.logic.folder))   # the folder in use stays in use, and shown
            raise
        self.logic.folder = self.state.annotation_folder = folder
        self.status.setText(f"corrections are saved in {folder}")   # no word left about the folder before
        self.check_saved()

    def _image_and_labels(self):
        image_layer, labels_layer = self.image_picker.current_layer(), self.labels_picker.current_layer()
        if image_layer is None or labels_layer is None:
            raise LvsegError("choose an image layer and its labels layer first")
        return image_layer, labels_layer

    # -- autosave
    @property
    def watched(self):
        """The labels layer whose edits trigger autosave."""
        return self.edits.layer

    @guarded
    def _watch(self):
        layer = self.labels_picker.current_layer()
        if layer is self.watched:
            return
        self.flush_autosave()
        self.edits.watch(layer)

    def _edited(self, event=None):
        # the layers edited now are the ones saved, whatever the pickers show when the timer fires
        layers = (self.image_picker.current_layer(), self.watched)
        if self.autosave.isChecked():
            self.pending = layers
            self.autosave_timer.start()
        elif None not in layers:
            if self._differs_from_disk(layers[1]):
                self.unsaved = layers   # napari's window asks before it closes on them
                ask_before_window_closes(self)
            elif self.unsaved is not None and self.unsaved[1] is layers[1]:   # undone back to what is saved
                self.unsaved = None

    def _differs_from_disk(self, labels) -> bool:
        """Labels with edits that neither the model made nor a save or load put there."""
        if CorrectLogic.unedited_prediction(labels.data, labels.metadata):
            return False
        return EditWatcher.checksum(labels.data) != self.on_disk.get(labels)

    def _ask_save(self, name: str, can_cancel: bool):
        """'save', 'discard' or 'cancel' (only where ``can_cancel``) for the unsaved edits of labels ``name``."""
        buttons = QMessageBox.Save | QMessageBox.Discard | (QMessageBox.Cancel if can_cancel else 0)
        answer = QMessageBox.question(self, "Unsaved corrections",
                                      f"'{name}' has corrections that are not saved (autosave is off). Save them?",
                                      buttons, QMessageBox.Save)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def _offer_unsaved(self, can_cancel: bool) -> bool:
        """Ask about edits made with autosave off; False when the user cancels (the window stays open)."""
        layers, self.unsaved = self.unsaved, None
        if layers is None or any(layer not in self.viewer.layers for layer in layers):
            return True
        if not self._differs_from_disk(layers[1]):   # segmented again, or undone back to what is saved
            return True
        answer = self.ask_save(layers[1].name, can_cancel)
        if answer == "cancel":
            self.unsaved = layers
            return False
        if answer == "save" and self.save(quiet=True, layers=layers) is None:   # the save failed: said, kept open
            self.unsaved = layers
            return not can_cancel
        return True

    def close_requested(self) -> bool:
        """napari's window is closing: pending autosaves are written; unsaved edits are offered first. The window's
        close button, the menu and Ctrl+Q come here; ``viewer.close()`` in a script does not ask (napari removes the
        layers before the window's close event)."""
        self.flush_autosave()
        return self._offer_unsaved(can_cancel=True)

    def flush_autosave(self) -> None:
        """Save pending edits at once: before the pickers move on or another case opens."""
        if self.autosave_timer.isActive():
            self.autosave_timer.stop()
            self._autosave()

    @guarded
    def _autosave(self):
        layers, self.pending = self.pending, None
        if layers is None or any(layer is None for layer in layers):
            return
        labels = layers[1]
        prediction = layer_meta.prediction(labels)
        undone = prediction is not None and self.saved_from.get(labels) is prediction
        if CorrectLogic.unedited_prediction(labels.data, labels.metadata) and not undone:
            # the model's own output (segmenting again also counts as a paint): a saved correction must not be
            # replaced by it behind the user's back; Save does it when asked. Saved edits undone back to the
            # prediction they were made on are another matter: the saved pair follows the undo.
            self.status.setText(f"'{layers[1].name}' is the model's prediction, unedited: not autosaved")
            return
        self.save(quiet=True, layers=layers)

    # -- actions
    @guarded
    def save(self, quiet: bool = False, layers=None) -> str:
        image_layer, labels_layer = layers or self._image_and_labels()
        tied = layer_meta.source_path(labels_layer)
        if tied and tied != layer_meta.source_of(image_layer):
            raise LvsegError(f"labels '{labels_layer.name}' belong to {tied}, "
                             f"not to image '{image_layer.name}': pick the matching image")
        source = tied or layer_meta.source_of(image_layer)
        prediction = layer_meta.prediction(labels_layer)
        name = self.logic.save(image_layer.data, labels_layer.data, source, layer_meta.model(labels_layer),
                               prediction, labels_name=f"labels '{labels_layer.name}'",
                               spacing=tuple(image_layer.scale))
        self.saved_from[labels_layer] = prediction
        self.on_disk[labels_layer] = EditWatcher.checksum(labels_layer.data)
        if self.unsaved is not None and self.unsaved[1] is labels_layer:
            self.unsaved = None
        self.status.setText(f"saved {name} in {self.logic.folder}")
        if not quiet:
            notify_info(f"correction saved as {name}")
        if image_layer is self.image_picker.current_layer():   # not a pending save of the image left behind
            self.load_button.setEnabled(True)   # it now has a saved correction to load
        return name

    @guarded
    def check_saved(self) -> bool:
        """Enable 'Load saved correction' when the chosen image already has one."""
        layer = self.image_picker.current_layer()
        found = layer is not None and self.logic.saved_record(layer_meta.source_of(layer)) is not None
        self.load_button.setEnabled(found)
        if found:
            self.status.setText(f"{layer.name} has a saved correction in {self.logic.folder}")
        return found

    @guarded
    def load_saved(self):
        from napari_lvseg._reader import labels_layer_kwargs

        image_layer = self.image_picker.current_layer()
        if image_layer is None:
            raise LvsegError("choose an image layer first")
        source = layer_meta.source_of(image_layer)
        mask = self.logic.load_saved(source)
        name, fallback = f"{image_layer.name} labels", f"{image_layer.name} correction"
        layer = replaceable_labels(self.viewer, (name, fallback), mask.shape)
        if layer is not None:
            set_labels_undoably(layer, mask)   # Ctrl+Z returns to the labels shown before loading
        else:
            name = free_name(self.viewer, name, fallback)
            # File > Save keeps the image's header
            metadata = layer_meta.correction_metadata(source, layer_meta.source(image_layer))
            layer = self.viewer.add_labels(mask, name=name, metadata=metadata, scale=image_layer.scale,
                                           translate=image_layer.translate, **labels_layer_kwargs())
        self.on_disk[layer] = EditWatcher.checksum(layer.data)   # what the folder holds: nothing unsaved
        self.labels_picker.select(layer)
        return layer

    @guarded
    def next_case(self):
        """Open the next case of the ranked queue; the first call ranks the folder in a worker, and a call
        while it ranks stops it (after the case in hand; nothing is queued)."""
        if self.runner.stop():
            return None
        folder = folder_of(self.cases_edit, what="folder of cases")
        if self.logic.ranked_folder != folder:
            self.logic.queue.clear()
        if self.logic.queue:
            return self.open_case(self.logic.next_case())
        if self.logic.ranked_folder == folder:
            notify_info("no more cases in this folder")
            self.logic.ranked_folder = None
            return None
        cases = self.logic.list_cases(folder)
        model = self.model_picker.current_model()
        if model is None:
            raise LvsegError("no segmentation model installed to rank the cases")
        return self.runner.start(self.logic.rank_cases_steps, cases, model,
                                 status=f"ranking {len(cases)} cases by uncertainty…",
                                 step_status=lambda step: f"ranking cases by uncertainty: {step[0]} of {step[1]} done…",
                                 description="Ranking cases", total=len(cases),
                                 on_returned=lambda ranked: self._ranked(folder, ranked))

    @guarded
    def _ranked(self, folder, ranked_and_skipped):
        ranked, skipped = ranked_and_skipped
        if skipped:
            notify_warning(f"{len(skipped)} case(s) left out: " + "; ".join(skipped))
        self.logic.queue = list(ranked)
        self.logic.ranked_folder = folder
        self.open_case(self.logic.next_case())

    @guarded
    def open_case(self, case):
        """Add a ranked case's image and prediction to the viewer and select them."""
        from napari_lvseg._reader import layer_scale
        from napari_lvseg.widgets.segment import SegmentLogic

        if case is None:
            return None
        self.flush_autosave()   # the edits of the case on screen are saved before it is replaced
        labels_name = SegmentLogic.labels_name(case["name"])
        old = self.viewer.layers[labels_name] if labels_name in self.viewer.layers else None
        if old is not None and not CorrectLogic.unedited_prediction(old.data, old.metadata):
            # hand edits that may be unsaved (autosave off, or its save failed): kept under another name
            old.name = f"{labels_name} (edited earlier)"
            notify_warning(f"'{labels_name}' had edits: kept as '{old.name}'")
        for name in (case["name"], labels_name):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        scale = layer_scale(case["meta"], case["image"].ndim)
        metadata = layer_meta.file_metadata(case["meta"], case["source"])
        image_layer = self.viewer.add_image(case["image"], name=case["name"], metadata=metadata, **scale)
        labels_layer = self.viewer.add_labels(case["result"].labels, **scale,
                                              **SegmentLogic.labels_layer_kwargs(case["result"], case["name"],
                                                                                 case["source"], case["meta"]))
        self.image_picker.select(image_layer)
        self.labels_picker.select(labels_layer)
        self.status.setText(f"{case['name']}: mean uncertainty {case['score']:.3f}; "
                            f"{len(self.logic.queue)} case(s) left")
        self.check_saved()
        return labels_layer
