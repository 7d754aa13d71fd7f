"""Shared pieces of the dock widgets: layer and model pickers, notifications, workers, docking the panels."""

from __future__ import annotations

import functools
import weakref

from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QComboBox, QScrollArea

from napari_lvseg import layer_meta
from napari_lvseg.errors import LvsegError
from napari_lvseg.widgets.panel_state import PanelState

# ------------------------------------------------------------------------------------ notifications

def error_text(exc: BaseException) -> str:
    """One line for the user: an LvsegError as is (a training option named as the panels name it: its label),
    anything else with its type."""
    if isinstance(exc, StepRuntimeError):
        exc = exc.__cause__
    from napari_lvseg.engine.schema import OptionError

    if isinstance(exc, OptionError):
        from napari_lvseg.widgets.option_fields import panel_name

        return exc.worded(panel_name)
    if isinstance(exc, LvsegError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class StepRuntimeError(Exception):
    """A RuntimeError from a worker's generator, raised again as this: superqt reads a RuntimeError out of a
    generator as "the worker was deleted" and drops it, with neither ``errored`` nor ``finished``, which would leave
    the widget's button stuck on Stop. torch raises RuntimeError for most model failures (out of memory, shapes)."""


def notify_error(exc) -> None:
    from napari.utils.notifications import show_error

    show_error(exc if isinstance(exc, str) else error_text(exc))


def notify_info(text: str) -> None:
    from napari.utils.notifications import show_info

    show_info(text)


def notify_warning(text: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(text)


def guarded(method):
    """Slot decorator: an exception becomes a notification, and the panel's status line says it too (a toast
    fades; a status line left on the last success would say that all went well); it never escapes into Qt's
    event loop."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a slot must not raise
            notify_error(exc)
            status = getattr(self, "status", None)
            if hasattr(status, "setText"):
                status.setText(f"failed: {error_text(exc)}")
            return None
    return wrapper


def closed_from_dock(widget, event) -> bool:
    """Whether ``event`` says that napari took ``widget`` out of its window: a dock's close button leaves the widget
    without a parent (and maybe without a later event), so a widget stops or saves what it has in hand here."""
    from qtpy.QtCore import QEvent

    return event.type() == QEvent.ParentChange and widget.parent() is None


def ask_before_window_closes(panel):
    """Let napari's main window (the QMainWindow ``panel`` is docked in, floating or not) ask
    ``panel.close_requested()`` before it closes: False keeps it open. Found through Qt's parents, not napari's
    private ``Window._qt_window``; calling this again only moves the panel's filter to the front. Returns a weak
    reference to the window (None when the panel is not docked), so no cycle keeps napari alive."""
    from qtpy.QtCore import QEvent, QObject
    from qtpy.QtWidgets import QMainWindow

    class CloseFilter(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt name
            if event.type() == QEvent.Close and not panel.close_requested():
                event.ignore()
                return True
            return False

    window = panel.parentWidget()
    while window is not None and not isinstance(window, QMainWindow):
        window = window.parentWidget()
    if window is None:
        return None
    close_filter = getattr(panel, "_lvseg_close_filter", None)
    if close_filter is None:
        close_filter = panel._lvseg_close_filter = CloseFilter(panel)
    window.installEventFilter(close_filter)
    return weakref.ref(window)


def spin_box(low: int, high: int, value: int, tip: str):
    """An integer spin box with its range, value and tooltip."""
    from qtpy.QtWidgets import QSpinBox

    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


# ----------------------------------------------------------------------------------------- workers

def start_worker(function, *args, description: str = "", total: int | None = None, on_returned=None,
                 on_yielded=None, on_finished=None, on_errored=None, **kwargs):
    """Run ``function(*args, **kwargs)`` in napari's thread pool with a progress bar; errors are notified.

    A generator function gives a generator worker: its values arrive through ``on_yielded`` (each one advances a
    progress bar of ``total`` steps), ``worker.quit()`` stops it at the next yield (``worker.abort_requested``
    then tells ``on_finished`` so; ``on_returned`` is not called) and its return value reaches ``on_returned``.
    """
    import inspect

    from napari.qt.threading import create_worker

    if inspect.isgeneratorfunction(function):
        function = _runtime_errors_kept(function)
    progress = {"desc": description, **({"total": total} if total else {})} if description else False
    # _ignore_errors: errors reach ``errored`` only; create_worker would also raise them again in the event loop,
    # where napari shows them a second time with a traceback
    worker = create_worker(function, *args, _progress=progress, _ignore_errors=True, **kwargs)
    if on_returned is not None:
        worker.returned.connect(on_returned)
    if on_yielded is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yielded)
    worker.errored.connect(on_errored or notify_error)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    _keep_pool_threads_free()
    worker.start()
    return worker


def _keep_pool_threads_free(spare: int = 2) -> None:
    """Grow Qt's global thread pool so that ``spare`` threads stay free beside the workers.

    napari runs workers in that pool, and Qt uses it for short jobs of its own: scaling the frames of napari's
    activity animation. When the workers fill the pool, the main thread waits there for a free thread while
    holding the GIL that the workers need to finish: napari freezes for good (seen on a 1-core machine, and on 2
    cores with two panels started at once)."""
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    wanted = pool.activeThreadCount() + 1 + spare
    if pool.maxThreadCount() < wanted:
        pool.setMaxThreadCount(wanted)


def _runtime_errors_kept(steps_function):
    """``steps_function`` with its RuntimeErrors raised as `StepRuntimeError` (see there)."""
    @functools.wraps(steps_function)
    def steps(*args, **kwargs):
        try:
            return (yield from steps_function(*args, **kwargs))
        except RuntimeError as exc:
            raise StepRuntimeError(str(exc)) from exc
    return steps


# ------------------------------------------------------------------------------------ folders

def choose_folder(parent, title: str, start: str = "") -> str:
    """A folder chosen in a dialog ('' when cancelled)."""
    from qtpy.QtWidgets import QFileDialog

    return QFileDialog.getExistingDirectory(parent, title, start) or ""


def folder_of(edit, default=None, what: str = "folder"):
    """The folder a line edit names. Empty means ``default`` (written back into the field), or an error where there
    is none: ``Path("")`` would silently be the folder napari was started from."""
    from pathlib import Path

    text = edit.text().strip()
    if not text:
        if default is None:
            raise LvsegError(f"choose a {what} first")
        edit.setText(str(default))
        return Path(default)
    return Path(text).expanduser()


def edited_pixels(labels, prediction) -> int | None:
    """Pixels that differ from the model's prediction (None when no prediction was kept)."""
    import numpy as np

    if prediction is None or np.shape(prediction) != np.shape(labels):
        return None
    return int(np.count_nonzero(np.asarray(labels) != np.asarray(prediction)))


def set_labels_undoably(layer, new) -> int:
    """Write ``new`` into a Labels layer as one undo step (Ctrl+Z brings the old labels back); returns the number
    of voxels changed. Assigning ``layer.data`` would leave napari's undo history pointing into the old labels."""
    import numpy as np

    new = np.asarray(new).astype(layer.data.dtype, copy=False)
    changed = np.nonzero(np.asarray(layer.data) != new)
    if changed[0].size:
        with layer.block_history():
            layer.data_setitem(changed, new[changed])
    return int(changed[0].size)


# ------------------------------------------------------------------------------------ pickers

class EditWatcher:
    """Calls ``on_edit`` after every edit of one Labels layer: paint strokes and fills, new data, and undo / redo.

    napari reports an undo or redo only as "set_data", which every move of the z slider and every brush step
    fires too; a change of the data's checksum, taken once the layer is quiet for ``QUIET_MS``, tells them apart
    (1 ms for a 20 x 256 x 256 stack)."""

    EVENTS = ("paint", "data")
    QUIET_MS = 150

    def __init__(self, on_edit):
        self.on_edit = on_edit
        self.layer = None
        self._checksum = None
        self._quiet = QTimer()
        self._quiet.setSingleShot(True)
        self._quiet.setInterval(self.QUIET_MS)
        self._quiet.timeout.connect(self._maybe_undone)

    def watch(self, layer) -> None:
        """Follow ``layer`` (None: none) instead of the layer followed so far."""
        if layer is self.layer:
            return
        self._quiet.stop()
        if self.layer is not None:
            for name in self.EVENTS:
                getattr(self.layer.events, name).disconnect(self._edited)
            self.layer.events.set_data.disconnect(self._set_data)
        self.layer = layer
        self._checksum = None if layer is None else self.checksum(layer.data)
        if layer is not None:
            for name in self.EVENTS:
                getattr(layer.events, name).connect(self._edited)
            layer.events.set_data.connect(self._set_data)

    @staticmethod
    def checksum(data):
        """CRC of an in-memory array; None for lazy data (dask, zarr), which is never read for this."""
        import zlib

        import numpy as np

        return zlib.crc32(np.ascontiguousarray(data).view(np.uint8)) if isinstance(data, np.ndarray) else None

    def _edited(self, event=None) -> None:
        self.on_edit()
        # napari tells "paint" before its last write lands: the checksum is taken once this event is handled
        QTimer.singleShot(0, self._resync)

    def _resync(self) -> None:
        if self.layer is not None:
            self._checksum = self.checksum(self.layer.data)

    def _set_data(self, event=None) -> None:
        self._quiet.start()   # checked once the layer is quiet: not on every brush step or slider move

    def _maybe_undone(self) -> None:
        if self.layer is None:
            return
        checksum = self.checksum(self.layer.data)
        if checksum != self._checksum:
            self._checksum = checksum
            self.on_edit()


def is_new_case_image(layer) -> bool:
    """An image layer opened by the user and shown (a dataset folder opens its cases hidden but the first), not
    one a panel derived from another."""
    return layer.visible and not layer_meta.is_derived(layer)


def replaceable_labels(viewer, names, shape):
    """The Labels layer called one of ``names`` (or napari's "``name`` [k]" for it) that new labels of ``shape``
    replace as one undo step; None: add a new layer. Only labels a panel made (a prediction, a loaded correction)
    are replaced: labels opened from a file (an expert's contours) or drawn by hand are never overwritten, nor is
    a layer of that name that cannot take them (an image, labels of another shape)."""
    import re

    from napari.layers import Labels

    names = [names] if isinstance(names, str) else list(names)
    pattern = re.compile("(" + "|".join(map(re.escape, names)) + r")( \[\d+\])?")
    return next((layer for layer in viewer.layers if pattern.fullmatch(layer.name) and isinstance(layer, Labels)
                 and layer.data.shape == tuple(shape) and layer_meta.is_owned(layer)),
                None)


def free_name(viewer, name: str, fallback: str) -> str:
    """``name`` when no layer has it, else ``fallback``: new labels beside an expert's "X labels" are called
    "X prediction", not napari's "X labels [1]", which reads like a copy of the expert's."""
    return fallback if name in viewer.layers else name


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers of some types, kept current as layers come, go and are renamed."""

    def __init__(self, viewer, layer_types, none_text: str | None = None, follow=None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.layer_types = tuple(layer_types)
        self.none_text = none_text
        self.follow = follow   # a new layer for which follow(layer) is true becomes the chosen one (a new case)
        self._items = []   # the layer (or None for none_text) behind each entry, as listed by the last refresh
        events = viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(events, name).connect(self._on_layers_changed)
        for layer in self.layers():   # layers opened before the widget are renamed too
            layer.events.name.connect(self._on_layers_changed)
        self.refresh()

    def _on_layers_changed(self, event=None):
        if event is not None and getattr(event, "type", "") == "inserted":
            layer = event.value
            if isinstance(layer, self.layer_types):
                layer.events.name.connect(self._on_layers_changed)
                if self.follow is not None and self.follow(layer):
                    self.select(layer)
                    return
        self.refresh()

    def layers(self) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, self.layer_types)]

    def refresh(self) -> None:
        """Re-list the layers, keeping the chosen layer chosen (by identity: a renamed layer stays chosen); emits
        ``currentIndexChanged`` only when the chosen layer itself changed."""
        index = self.currentIndex()
        chosen = self._items[index] if 0 <= index < len(self._items) else None   # it may have just left
        self.blockSignals(True)
        self.clear()
        self._items = ([None] if self.none_text is not None else []) + self.layers()
        self.addItems([self.none_text if layer is None else layer.name for layer in self._items])
        index = next((i for i, layer in enumerate(self._items) if layer is not None and layer is chosen), 0)
        if self._items:
            self.setCurrentIndex(index)
        self.blockSignals(False)
        if self.current_layer() is not chosen:
            self.currentIndexChanged.emit(self.currentIndex())

    def current_layer(self):
        """The chosen layer (None when none is, or it has left the viewer)."""
        index = self.currentIndex()
        layer = self._items[index] if 0 <= index < len(self._items) else None
        return layer if layer is not None and any(layer is other for other in self.viewer.layers) else None

    def select(self, layer) -> None:
        self.refresh()
        index = next((i for i, item in enumerate(self._items) if item is layer), -1)
        if index >= 0:
            self.setCurrentIndex(index)


_WARNED_MODELS: set = set()   # each unreadable model folder is said once per session, not by every picker


def _warn_unreadable_models(problems) -> None:
    """A model folder the pickers leave out (its card cannot be read) is said, not silently missing."""
    for problem in problems:
        if str(problem) not in _WARNED_MODELS:
            _WARNED_MODELS.add(str(problem))
            notify_warning(f"model left out of the lists: {problem}")


class ModelPicker(QComboBox):
    """The registered models of one task (bundled first, then the user's); ``refresh()`` re-reads them and keeps
    the choice, or picks the task's default model (the bundled model whose card says so)."""

    def __init__(self, task: str, parent=None):
        super().__init__(parent)
        self.task = task
        self.refresh()

    def refresh(self) -> None:
        from napari_lvseg.models.registry import scan_models

        current = self.current_model()
        self.blockSignals(True)
        self.clear()
        try:
            entries, problems = scan_models(self.task)
            _warn_unreadable_models(problems)
        except Exception as exc:  # noqa: BLE001 - a broken registry must not break the panel
            notify_error(exc)
            entries = []
        names = [entry.name for entry in entries]
        for entry in entries:
            # a user model of the same name shadows a bundled one by name: the bundled one goes by its path
            shadowed = entry.source == "bundled" and names.count(entry.name) > 1
            self.addItem(f"{entry.name} ({entry.source})", str(entry.path) if shadowed else entry.name)
        index = self.findData(current) if current is not None else -1
        if index < 0 and entries:   # what `lvseg` uses without --model (a user model may shadow it by name)
            from napari_lvseg.models.registry import default_model_name

            index = max(self.findData(default_model_name(self.task, entries)), 0)
        if entries:
            self.setCurrentIndex(index)
        self.blockSignals(False)

    def names(self) -> list[str]:
        return [self.itemData(i) for i in range(self.count())]

    def current_model(self) -> str | None:
        return self.currentData() if self.count() else None

    def select(self, name: str) -> bool:
        index = self.findData(name)
        if index >= 0:
            self.setCurrentIndex(index)
        return index >= 0


# ------------------------------------------------------------------------------- docking the panels

def register_widget(viewer, widget) -> None:
    """Count ``widget`` among this viewer's lvseg panels (`PanelState.panels`: weakly, closing it forgets it), and
    make it fit a laptop screen: its content scrolls (`make_scrollable`) and, once docked, it joins the other lvseg
    panels of its dock area as a tab (`tabify_when_docked`), so four panels never stack past the screen's height."""
    PanelState.of(viewer).panels.add(widget)
    make_scrollable(widget)
    tabify_when_docked(widget)


SCROLLED = "_lvseg_scroll"   # attribute of a panel whose content was moved into a scroll area


class PanelScrollArea(QScrollArea):
    """A scroll area as wide as its content at least (napari's style sheet, applied once docked, widens it), and
    only a little high: the panel scrolls up and down, never sideways."""

    MIN_HEIGHT = 120

    def minimumSizeHint(self):  # noqa: N802 - Qt name
        hint = super().minimumSizeHint()
        content = self.widget()
        if content is not None:
            hint.setWidth(content.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                          + 2 * self.frameWidth())
        hint.setHeight(self.MIN_HEIGHT)
        return hint

    def eventFilter(self, obj, event):  # noqa: N802 - Qt name
        # the content's minimum width changes when napari's style sheet reaches it: tell the dock
        if obj is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(obj, event)


def make_scrollable(widget) -> None:
    """Move ``widget``'s layout (and the widgets in it) into a frameless scroll area that fills ``widget``: the
    panel then asks the dock for little height and scrolls instead of growing the window. Its width stays that of
    its content, so nothing is cut at the side. A widget without a layout, or done before, is left as it is."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QSizePolicy, QVBoxLayout, QWidget

    content_layout = widget.layout()
    if content_layout is None or getattr(widget, SCROLLED, None) is not None:
        return
    grows = (QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding, QSizePolicy.Policy.Ignored)
    items = (content_layout.itemAt(i) for i in range(content_layout.count()))
    if not any(item.widget() is not None and item.widget().sizePolicy().verticalPolicy() in grows
               or item.layout() is None and item.widget() is None for item in items) \
            and hasattr(content_layout, "addStretch"):
        content_layout.addStretch(1)   # short panels stay at the top of the scroll area, as napari docks them
    content = QWidget()
    content.setLayout(content_layout)   # Qt moves the layout and reparents its widgets
    scroll = PanelScrollArea(widget)
    scroll.setObjectName("lvseg-scroll")
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    setattr(widget, SCROLLED, scroll)


def tabify_when_docked(widget) -> None:
    """When napari docks ``widget`` (the dock becomes its parent), put its dock as a tab beside the other lvseg
    panels docked in the same area of the window, and bring it to the front. napari docks a Plugins-menu panel
    beside the others, stacked; the tab group keeps the window's minimum height that of one panel."""
    from qtpy.QtCore import QEvent, QObject, QTimer
    from qtpy.QtWidgets import QDockWidget

    class DockedFilter(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt name
            if event.type() == QEvent.Type.ParentChange and isinstance(obj.parentWidget(), QDockWidget):
                dock = weakref.ref(obj.parentWidget())
                # napari adds the dock to its window right after making it: tabify once that is done
                QTimer.singleShot(0, lambda: dock() is not None and tabify_with_panels(dock()))
            return False

    if getattr(widget, "_lvseg_dock_filter", None) is None:
        widget._lvseg_dock_filter = DockedFilter(widget)
        widget.installEventFilter(widget._lvseg_dock_filter)


def tabify_with_panels(dock) -> bool:
    """Put every docked, non-floating lvseg panel in the area of ``dock`` into one tab group, and bring ``dock`` to
    the front; True if it has company there."""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    try:
        window = dock.parentWidget()
    except RuntimeError:   # deleted meanwhile
        return False
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return False
    area = window.dockWidgetArea(dock)
    panels = {id(w) for w in PanelState.every_panel()}
    docks = [d for d in window.findChildren(QDockWidget) if not d.isFloating() and id(d.widget()) in panels
             and window.dockWidgetArea(d) == area and (d is dock or not d.isHidden())]
    if len(docks) < 2:
        return False
    # the biggest tab group there takes the others in (several panels docked in one go would otherwise pair up)
    anchor = max(docks, key=lambda d: len(window.tabifiedDockWidgets(d)))
    for other in docks:
        if other is not anchor and other not in window.tabifiedDockWidgets(anchor):
            window.tabifyDockWidget(anchor, other)
    dock.show()
    dock.raise_()
    return True


def labels_spacing(layer):
    """(z, y, x) spacing of a 3-D layer, (y, x) of a 2-D one, when its scale says anything, else None (pixels)."""
    scale = tuple(float(s) for s in getattr(layer, "scale", ()))
    if len(scale) in (2, 3) and any(s != 1.0 for s in scale):
        return scale
    return None
