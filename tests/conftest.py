"""Shared fixtures. Real EMIDEC data is used where present and skipped cleanly where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests must not fight each other (or a user's desktop) for the two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def emidec_root() -> Path | None:
    """``LVSEG_EMIDEC_DIR`` or ``../shared/data/emidec-lge-128`` beside the checkout, if it exists."""
    env = os.environ.get("LVSEG_EMIDEC_DIR")
    candidates = [Path(env)] if env else [Path(__file__).resolve().parents[2] / "shared/data/emidec-lge-128"]
    for path in candidates:
        if path.is_dir() and any(path.glob("Case_*")):
            return path
    return None


@pytest.fixture(scope="session")
def emidec_dir() -> Path:
    root = emidec_root()
    if root is None:
        pytest.skip("EMIDEC data not found (set LVSEG_EMIDEC_DIR)")
    return root


@pytest.fixture(scope="session")
def emidec_cases(emidec_dir) -> list[Path]:
    return sorted(p for p in emidec_dir.glob("Case_*") if p.is_dir())


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """An empty user model directory, so tests never see (or write into) the user's real one."""
    path = tmp_path / "user-models"
    monkeypatch.setenv("LVSEG_MODELS_DIR", str(path))
    return path


@pytest.fixture
def errors(monkeypatch):
    """Error notifications of the widgets, collected instead of shown (widget tests assert on them)."""
    import importlib

    from napari_lvseg.widgets import _common

    shown = []

    def collect(exc):
        shown.append(exc if isinstance(exc, str) else _common.error_text(exc))

    monkeypatch.setattr(_common, "notify_error", collect)
    for name in ("correct", "segment", "synthesize", "train"):   # the panels' own imports of the name
        module = importlib.import_module(f"napari_lvseg.widgets.{name}")
        if hasattr(module, "notify_error"):
            monkeypatch.setattr(module, "notify_error", collect)
    return shown


@pytest.fixture(scope="module")
def phantom_pairs(tmp_path_factory):
    """Five 3-slice phantom cases of 64 pixels as a pair folder (origin real): the tiny training runs' data."""
    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.io.pairs import PairFolder

    root = tmp_path_factory.mktemp("pairs")
    folder = PairFolder(root)
    for seed in range(5):
        image, labels = make_phantom(n_slices=3, size=64, seed=seed)
        folder.add(image, labels, origin="real", source=f"phantom{seed}", name=f"phantom{seed}")
    return root
