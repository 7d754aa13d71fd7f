"""The napari manifest: valid, the one top-level file, every python_name importable."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import npe2
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def manifest():
    return npe2.PluginManifest.from_distribution("napari-lvseg")


def test_installed_plugin_uses_the_top_level_manifest():
    import napari_lvseg

    packaged = Path(napari_lvseg.__file__).parent / "napari.yaml"
    assert packaged.resolve() == (ROOT / "napari.yaml").resolve()


def test_manifest_is_valid(manifest):
    assert manifest.name == "napari-lvseg"
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Segment LV", "Correct and save", "Synthesize", "Train"}
    assert manifest.contributions.readers and manifest.contributions.writers and manifest.contributions.sample_data


@pytest.mark.parametrize("command", npe2.PluginManifest.from_file(ROOT / "napari.yaml").contributions.commands,
                         ids=lambda c: c.id)
def test_every_python_name_imports(command):
    module, _, attr = command.python_name.partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_core_imports_without_qt_or_napari():
    code = ("import sys; import napari_lvseg.inference, napari_lvseg.synthesis, napari_lvseg.metrics, "
            "napari_lvseg.engine, napari_lvseg.data.datasets, napari_lvseg.models.store, napari_lvseg.cli; "
            "bad = [m for m in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'vispy') if m in sys.modules]; "
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_cli_help_is_fast_and_lists_commands():
    run = subprocess.run([sys.executable, "-m", "napari_lvseg.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    for sub in ("demo", "segment", "train", "evaluate", "models", "synthesize", "synthesize-dataset",
                "evaluate-synthesis"):
        assert sub in run.stdout
