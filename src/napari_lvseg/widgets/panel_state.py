"""What the lvseg panels of one napari viewer share, held per viewer, so that no panel reads or writes another's
attributes: the annotation folder (Correct and save writes it, Train's "+ annotations" adds it), the synthetic pair
folder (Synthesize writes it, Train's "+ synthetic" adds it), a signal that the model registry changed (Train
registers a model: every model picker re-reads the registry) and the panels themselves (docked as one tab group).
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

from qtpy.QtCore import QObject, Signal

DATA_DIR_ENV = "LVSEG_DATA_DIR"


def user_data_dir() -> Path:
    """``$LVSEG_DATA_DIR``, else ``<user data dir>/napari-lvseg``."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_data_dir as platform_dir
    except ImportError:
        return Path.home() / ".local" / "share" / "napari-lvseg"
    return Path(platform_dir("napari-lvseg"))


def default_annotation_dir() -> Path:
    return user_data_dir() / "annotations"


def default_synthetic_dir() -> Path:
    return user_data_dir() / "synthetic"


def plain_viewer(viewer):
    """The viewer itself, not napari's ``PublicOnlyProxy`` of it that a panel opened from the Plugins menu gets.

    The proxy wraps every layer it hands out anew, so ``layer is other`` fails between two panels, or between a
    panel and a layer event, and each panel's proxy has an ``id`` of its own: the panels would not find each
    other's layers or share one state (a trained model would not reach the other pickers)."""
    return getattr(viewer, "__wrapped__", viewer)


class _Folder:
    """A folder the panels share: the one a panel set (None: back to the default), else ``default()``."""

    def __init__(self, default):
        self.default = default

    def __set_name__(self, owner, name):
        self.attribute = f"_{name}"

    def __get__(self, state, owner=None) -> Path:
        return self if state is None else getattr(state, self.attribute, None) or self.default()

    def __set__(self, state, folder) -> None:
        setattr(state, self.attribute, None if folder is None else Path(folder))


_STATES: dict[int, PanelState] = {}   # by id of the viewer, dropped when the viewer goes (viewers compare equal)


class PanelState(QObject):
    """The shared state of one viewer's panels; `PanelState.of(viewer)` gives it (made at the first call)."""

    models_changed = Signal()   # the model registry changed: model pickers re-read it
    annotation_folder = _Folder(default_annotation_dir)   # where Correct and save saves corrected pairs
    synthetic_folder = _Folder(default_synthetic_dir)     # where Synthesize adds synthetic pairs

    def __init__(self):
        super().__init__()
        self.panels = weakref.WeakSet()   # the viewer's lvseg panels (weakly: a closed panel leaves)

    @classmethod
    def of(cls, viewer) -> PanelState:
        viewer = plain_viewer(viewer)
        state = _STATES.get(id(viewer))
        if state is None:
            state = _STATES[id(viewer)] = cls()
            weakref.finalize(viewer, _STATES.pop, id(viewer), None)
        return state

    @staticmethod
    def every_panel() -> list:
        """The lvseg panels of every viewer."""
        return [panel for state in list(_STATES.values()) for panel in list(state.panels)]


__all__ = ["PanelState", "default_annotation_dir", "default_synthetic_dir", "plain_viewer", "user_data_dir"]
