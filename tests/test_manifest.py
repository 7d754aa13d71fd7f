"""The napari manifest: valid, the packaged copy the same as the top-level file, every python_name importable."""

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


def test_packaged_manifest_is_a_copy_of_the_top_level_one():
    """napari.yaml (top level) is the one people edit; the package ships a real file (no symlink: sdists, wheels
    and Windows checkouts do not keep one) that must say the same."""
    import napari_lvseg

    packaged = Path(napari_lvseg.__file__).parent / "napari.yaml"
    assert packaged == ROOT / "src" / "napari_lvseg" / "napari.yaml"   # the editable install: this checkout
    assert not packaged.is_symlink()
    assert packaged.read_bytes() == (ROOT / "napari.yaml").read_bytes(), (
        "src/napari_lvseg/napari.yaml differs from napari.yaml: cp napari.yaml src/napari_lvseg/napari.yaml")


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
            "napari_lvseg.engine, napari_lvseg.data.datasets, napari_lvseg.models.card, napari_lvseg.models.weights, "
            "napari_lvseg.models.registry, napari_lvseg.postprocess, napari_lvseg.cli; "
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


def test_no_qt_binding_is_a_hard_requirement():
    """napari's plugin guidance: the user's environment chooses the Qt binding; ours comes with the "gui" extra."""
    from importlib.metadata import requires

    hard = [r for r in requires("napari-lvseg") or [] if "extra ==" not in r]
    assert not [r for r in hard if r.lower().startswith(("pyqt", "pyside"))], hard
    assert any(r.startswith("PyQt6") and 'extra == "gui"' in r for r in requires("napari-lvseg"))
