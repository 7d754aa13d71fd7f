"""The widgets reach Qt only through qtpy, so PyQt6 (the "gui" extra, napari's default) and PyQt5 both serve.
Each installed binding builds every panel in a child process (QT_API picks the binding there); a binding that is
not installed is skipped. The main test run exercises whichever binding qtpy picks."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

BUILD_PANELS = """
import qtpy, napari
assert qtpy.API_NAME.lower() == {api!r}, qtpy.API_NAME
from napari_lvseg.widgets.correct import CorrectWidget
from napari_lvseg.widgets.segment import SegmentWidget
from napari_lvseg.widgets.synthesize import SynthesizeWidget
from napari_lvseg.widgets.train import TrainWidget
viewer = napari.Viewer(show=False)
panels = [cls(viewer) for cls in (SegmentWidget, CorrectWidget, SynthesizeWidget, TrainWidget)]
for panel in panels:
    panel.grab()   # lays out and paints
viewer.close()
print("built", len(panels), "panels with", qtpy.API_NAME)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("api, module", [("pyqt6", "PyQt6"), ("pyqt5", "PyQt5")])
def test_the_panels_build_with_each_installed_qt_binding(api, module, tmp_path):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    env = dict(os.environ, QT_API=api, QT_QPA_PLATFORM="offscreen", LVSEG_MODELS_DIR=str(tmp_path / "models"),
               XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               LVSEG_DATA_DIR=str(tmp_path / "lvseg-data"))
    run = subprocess.run([sys.executable, "-c", BUILD_PANELS.format(api=api)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=280)
    assert run.returncode == 0, run.stdout + run.stderr[-4000:]
    assert f"built 4 panels with {module}" in run.stdout
