"""Fault injection: `lvseg train` and `register_model` killed (SIGKILL) before each of their write steps.

Every folder a kill leaves is readable (options, checkpoints, model: card and weights of one save), the registry
still lists the model, and the next run finishes with no temp file or registration leftover in sight.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.widgets._testing import save_tiny_segmentation_model

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="kills forked children")

# One process imports torch and MONAI once, then forks a child per kill point: the child counts the write steps
# (every rename, copy and tree removal) and kills itself with SIGKILL before step n. Prints the n that were killed.
DRIVER = r"""
import json, os, shutil, signal, sys
import monai.losses, monai.transforms, torch   # imported before the forks: each child starts at once
from napari_lvseg import cli
from napari_lvseg.models import registry

mode, root, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def kill_before_step(n):
    count = [0]
    def wrap(write):
        def step(*args, **kwargs):
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return write(*args, **kwargs)
        return step
    os.replace, shutil.copy2, shutil.rmtree = wrap(os.replace), wrap(shutil.copy2), wrap(shutil.rmtree)

def child(n):
    folder = os.path.join(root, f"k{n}")
    torch.set_num_threads(1)
    if mode == "train":
        kill_before_step(n)
        return cli.main([a.replace("{out}", folder) for a in argv])
    shutil.copytree(os.path.join(root, "template"), folder)   # a registry with an older model of the name
    os.environ["LVSEG_MODELS_DIR"] = folder
    kill_before_step(n)
    registry.register_model(argv[0], name="m")
    return 0

killed = []
for n in range(1, 60):
    pid = os.fork()
    if pid == 0:
        os._exit(child(n))
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"step {n}: status {status}"
        break
    killed.append(n)
print(json.dumps(killed))
"""

TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp.*")   # atomic_path's temp files


def drive(mode: str, root, argv) -> list:
    run = subprocess.run([sys.executable, "-c", DRIVER, mode, str(root), json.dumps(argv)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


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
    killed = drive("train", tmp_path, new_run[:3] + ["--out", "{out}"] + new_run[3:])
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
