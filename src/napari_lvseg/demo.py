"""``lvseg demo``: napari with the phantom, every lvseg widget docked and the default model's result."""

from __future__ import annotations

import os

PLUGIN = "napari-lvseg"


def _rerun_under_xvfb(screenshot: str, segment: bool) -> int:
    """Headless without a screen: run the same demo in a child under xvfb-run (it owns the X server's life)."""
    import shutil
    import subprocess
    import sys

    if shutil.which("xvfb-run") is None:
        from .errors import LvsegError

        raise LvsegError("no display and no xvfb-run: install xvfb (apt-get install xvfb) for --screenshot")
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", sys.executable, "-m", "napari_lvseg.cli",
           "demo", "--screenshot", screenshot] + ([] if segment else ["--no-segment"])
    return subprocess.call(cmd)


def widget_names() -> list[str]:
    """Display names of every dock widget the manifest contributes, in manifest order."""
    import npe2

    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    return [w.display_name for w in manifest.contributions.widgets or []]


def build_demo_viewer(segment: bool = True, show: bool = True):
    """The demo window: phantom image + truth, all widgets docked, the phantom segmented (if a model exists)."""
    import napari

    from ._sample_data import make_phantom_sample

    viewer = napari.Viewer(title="napari-lvseg demo", show=show)
    for data, kwargs, kind in make_phantom_sample():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    docked = {}
    for name in widget_names():
        _, docked[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)
    viewer.dims.set_point(0, 4)
    if segment:
        widget = next((w for w in docked.values() if hasattr(w, "run_blocking")), None)
        if widget is not None:
            try:
                widget.run_blocking()
            except Exception as exc:  # the demo still opens without a usable model
                from napari.utils.notifications import show_warning

                show_warning(f"demo segmentation skipped: {exc}")
    return viewer, docked


def _close_toasts(viewer) -> None:
    """Close napari's pop-up notifications (e.g. its own PyQt5 deprecation notice) before a screenshot."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # private module moved: the screenshot just keeps the pop-up
        return
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()


def _show_first_tab(viewer) -> None:
    """The tabbed docks open on the last one added; bring "Segment LV" to the front."""
    from qtpy.QtWidgets import QApplication, QDockWidget

    first = widget_names()[0]
    for dock in viewer.window._qt_window.findChildren(QDockWidget):
        if dock.windowTitle().startswith(first):
            dock.raise_()
    QApplication.processEvents()


def run_demo(screenshot: str | None = None, segment: bool = True) -> int:
    import warnings

    # napari 0.9 warns (as a pop-up) that PyQt5 support is deprecated, where an environment still has PyQt5
    # (qtpy prefers it to PyQt6); the demo is no place for it.
    warnings.filterwarnings("ignore", message=".*PyQt5.*deprecated.*")
    if screenshot and not os.environ.get("DISPLAY"):
        return _rerun_under_xvfb(screenshot, segment)
    import napari

    viewer, _ = build_demo_viewer(segment=segment, show=True)
    _show_first_tab(viewer)
    if screenshot:
        from qtpy.QtWidgets import QApplication

        viewer.window._qt_window.resize(1600, 1000)
        for _ in range(10):
            QApplication.processEvents()
        _close_toasts(viewer)
        _show_first_tab(viewer)
        viewer.screenshot(screenshot, canvas_only=False)
        viewer.close()
        print(screenshot)
        return 0
    napari.run()
    return 0
