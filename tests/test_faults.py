"""Fault injection: `lvseg train` and `register_model` killed (SIGKILL) before each of their write steps.

Every folder a kill leaves is readable (options, checkpoints, model: card and weights of one save), the registry
still lists the model, and the next run finishes with no temp file or registration leftover in sight.
"""

from __future__ import annotations

import json
import os

import pytest
from fault_injection import TEMP, drive

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.widgets._testing import save_tiny_segmentation_model

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked children")

def assert_readable_run(run):
    from napari_lvseg.engine import TrainOptions
    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.models.registry import load_model

    if (run / "options.json").exists():
        TrainOptions.load(run / "options.json")
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            load_checkpoint(run / name)
    if (run / "model.safetensors").exists():
        load_model(run)   # card and weights of one save: the weights fit the network the card describes
    for line in (run / "events.jsonl").read_text().splitlines() if (run / "events.jsonl").exists() else []:
        json.loads(line)


def test_train_killed_at_each_write_step_leaves_a_readable_run_that_the_next_run_finishes(tmp_path, models_dir):
    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.models.registry import load_model

    pairs = PairFolder(tmp_path / "pairs")
    for seed in range(5):   # 5 cases: 2 validate, so that the run saves a best model while it trains
        pairs.add(*make_phantom(n_slices=2, size=64, seed=seed), origin="real", source=f"p{seed}", name=f"p{seed}")
    common = ["--epochs", "2", "--samples-per-epoch", "2", "--batch-size", "2", "--width", "2", "--depth", "3",
              "--val-fraction", "0.4", "--threads", "1", "--quiet", "--checkpoint-every", "1000"]
    new_run = ["train", "--data", str(tmp_path / "pairs"), *common]
    killed = drive("cli", tmp_path, new_run[:3] + ["--out", "{out}"] + new_run[3:])
    # options; epoch 1: best.pt, the model's card, weights and card rename, last.pt; epoch 2: at least last.pt
    assert len(killed) >= 7, killed
    for n in killed:
        run = tmp_path / f"k{n}"
        assert_readable_run(run)
        resumable = (run / "options.json").exists()
        argv = ["train", "--resume", "--out", str(run), *common] if resumable else [*new_run, "--out", str(run)]
        assert main(argv) == 0, f"killed before write step {n}: the next run failed"
        left = [p.name for p in run.iterdir() if TEMP.fullmatch(p.name) or p.name == ".lock"]
        assert left == [], f"killed before write step {n}: {left} left after the next run"
        assert load_checkpoint(run / "last.pt")["epoch"] == 2
        load_model(run)


def test_register_killed_at_each_step_keeps_the_model_listed(tmp_path, models_dir, monkeypatch):
    from napari_lvseg.models.card import read_card
    from napari_lvseg.models.registry import list_models, load_model, register_model

    new = save_tiny_segmentation_model(tmp_path / "src", name="new", seed=1)
    (tmp_path / "template").mkdir()
    old = save_tiny_segmentation_model(tmp_path / "template", name="m", seed=2)
    killed = drive("register", tmp_path, [str(new)])
    # the weights' copy, the card's write is no rename; the two renames of the swap; the old one's removal
    assert len(killed) >= 4, killed
    for n in killed:
        registry = tmp_path / f"k{n}"
        monkeypatch.setenv("LVSEG_MODELS_DIR", str(registry))
        names = [e.name for e in list_models() if e.source == "user"]
        assert names == ["m"], f"killed before step {n}: the registry lists {names}"
        load_model("m")
        assert read_card(registry / "m").name == "m"
        assert [p.name for p in registry.iterdir() if p.name.startswith(".")] == [], \
            f"killed before step {n}: leftovers of the registration after a scan"
        register_model(new, name="m")   # the next registration goes through
        assert read_card(registry / "m").name == "m" and not list(registry.glob(".*"))
    assert old.is_dir()
