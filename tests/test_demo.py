"""`lvseg demo`: the phantom, every widget docked, the default model's segmentation; headless screenshot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from napari_lvseg.widgets._testing import save_tiny_segmentation_model


def test_demo_window_has_all_widgets_and_a_segmentation(models_dir, qtbot):
    from napari_lvseg.demo import build_demo_viewer, widget_names

    save_tiny_segmentation_model(models_dir, name="tiny-seg")
    viewer, docked = build_demo_viewer(segment=True, show=False)
    try:
        assert list(docked) == widget_names() == ["Segment LV", "Correct and save", "Synthesize", "Train"]
        names = [layer.name for layer in viewer.layers]
        assert names[:2] == ["LGE phantom", "LGE phantom truth"]
        labels = viewer.layers["LGE phantom labels"]
        assert labels.data.shape == viewer.layers["LGE phantom"].data.shape and labels.data.max() <= 4
    finally:
        viewer.close()


def test_demo_screenshot_writes_a_png(models_dir, tmp_path):
    save_tiny_segmentation_model(models_dir, name="tiny-seg")
    out = tmp_path / "demo.png"
    run = subprocess.run([sys.executable, "-m", "napari_lvseg.cli", "demo", "--screenshot", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    from PIL import Image

    image = np.asarray(Image.open(out))
    assert image.shape[0] >= 600 and image.shape[1] >= 1000 and image.std() > 10  # a real window, not blank
