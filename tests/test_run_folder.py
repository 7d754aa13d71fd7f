"""A run folder under stress: one writer at a time, a full disk, temp files of killed runs, refused options."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.engine import TrainOptions, train
from napari_lvseg.io import atomic
from napari_lvseg.io.lock import FolderLock
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.widgets._testing import save_tiny_segmentation_model

QUICK = ["--samples-per-epoch", "2", "--batch-size", "2", "--val-fraction", "0.4", "--threads", "1", "--quiet",
         "--checkpoint-every", "1000"]
TINY = QUICK + ["--width", "2", "--depth", "3"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    folder = PairFolder(root)
    for seed in range(5):   # 5 cases: 2 validate, so that runs save a best model
        folder.add(*make_phantom(n_slices=2, size=64, seed=seed), origin="real", source=f"p{seed}", name=f"p{seed}")
    return root


def one_line_error(err: str, *words) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert str(word) in lines[0], (word, err)


def test_a_second_writer_of_a_run_folder_is_refused_in_one_line(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    first = train(TrainOptions(data=[str(pairs)], out=str(run), epochs=1, samples_per_epoch=2, batch_size=2,
                               width=2, depth=3, threads=1, size=64))
    next(first)   # the first run has started (past its checks of the folder) and holds the folder
    capsys.readouterr()
    assert main(["train", "--data", str(pairs), "--out", str(run), "--epochs", "1", *TINY]) == 2
    one_line_error(capsys.readouterr().err, run, "in use: another lvseg process", f"(pid {os.getpid()})")
    assert main(["train", "--resume", "--out", str(run), *TINY]) == 2   # a resume too
    list(first)   # the first run finishes alone, its folder its own
    assert not (run / ".lock").exists()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *TINY]) == 0   # then the folder is free


def test_a_killed_writer_leaves_no_lock_behind(tmp_path):
    folder = tmp_path / "annotations"
    code = ("import os, signal, sys; from napari_lvseg.io.lock import FolderLock; "
            "FolderLock(sys.argv[1]).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    child = subprocess.run([sys.executable, "-c", code, str(folder)])
    assert child.returncode == -signal.SIGKILL and (folder / ".lock").exists()
    with FolderLock(folder, "annotation folder"):   # the OS let go with the process
        assert FolderLock(folder).try_acquire() is False
    assert not (folder / ".lock").exists() and folder.is_dir()


def test_a_refused_run_leaves_no_folder(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(run), *TINY]) == 2
    assert not run.exists()


def _full_disk_for_weights(monkeypatch):
    """The disk fills up at the next checkpoint or weights file: their temp files write into /dev/full."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    real = atomic.tempfile.mkstemp

    def mkstemp(prefix="", suffix="", dir=None):
        fd, tmp = real(prefix=prefix, suffix=suffix, dir=dir)
        if prefix.endswith((".pt.", ".safetensors.")):
            os.close(fd)
            os.unlink(tmp)
            os.symlink("/dev/full", tmp)
            fd = os.open(tmp, os.O_WRONLY)
        return fd, tmp

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


def test_a_full_disk_stops_training_in_one_line_naming_the_run_and_keeps_its_files(pairs, tmp_path, capsys,
                                                                                   monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "--data", str(pairs), "--out", str(run), "--epochs", "1", *TINY]) == 0
    saved = {p.name: p.read_bytes() for p in run.iterdir() if p.name not in ("events.jsonl", "options.json")}
    assert {"last.pt", "best.pt", "model.safetensors", "card.json"} <= set(saved)
    capsys.readouterr()
    _full_disk_for_weights(monkeypatch)
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *TINY]) == 2
    one_line_error(capsys.readouterr().err, run, "cannot write the run folder (No space left on device")
    # checkpoints and model as they were (the resume's options.json says --epochs 2), no temp file beside them
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name not in ("events.jsonl", "options.json")} == saved


def test_resume_removes_the_temp_files_a_killed_run_left_and_nothing_else(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(pairs), "--out", str(run), "--epochs", "1", *TINY]) == 0
    stale = [".best.pt.k2j3h4g5.tmp", ".card-0a1b2c3d.json.x1y2z3w4.tmp", ".model.safetensors.ab_cd123.tmp.safetensors"]
    kept = ["notes.tmp", ".hidden", "my.best.pt.tmp"]
    for name in stale + kept:
        (run / name).write_text("x")
    assert main(["train", "--resume", "--out", str(run), *TINY]) == 0   # finished: nothing to train, still tidied
    assert sorted(p.name for p in run.iterdir() if p.name in stale + kept) == sorted(kept)


def test_an_atomic_write_flushes_its_folder(tmp_path, monkeypatch):
    import stat

    flushed = []
    real = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (flushed.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real(fd)))
    atomic.write_text_atomic(tmp_path / "a.json", "{}")
    assert flushed == [False, True]   # the file, then the folder holding the rename


def test_a_batch_larger_than_an_epoch_is_refused(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(pairs), "--out", str(run), *TINY, "--batch-size", "8"]) == 2
    one_line_error(capsys.readouterr().err, "--batch-size: 8 is larger than --samples-per-epoch 2")
    assert not run.exists()


def test_init_refuses_network_shape_options_it_would_ignore(pairs, tmp_path, models_dir, capsys):
    model = save_tiny_segmentation_model(models_dir, name="tiny-seg")   # width 4, depth 4
    for option, value, has in (("--width", "8", "4"), ("--depth", "3", "4")):
        assert main(["train", "--data", str(pairs), "--out", str(tmp_path / "run"), "--init", str(model),
                     "--epochs", "1", *QUICK, option, value]) == 2
        one_line_error(capsys.readouterr().err, model,
                       f"{option}: {value} asked for, but the model fine-tuned from has {has}")
        assert not (tmp_path / "run").exists()


def test_resuming_a_finished_run_says_it_is_done_not_a_next_epoch(pairs, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(pairs), "--out", str(run), "--epochs", "2", *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run), *TINY]) == 0
    out = capsys.readouterr().out
    assert "all 2 epoch(s) done" in out and "epoch 3" not in out


def test_a_full_disk_while_saving_a_model_keeps_the_old_one(tmp_path, monkeypatch):
    from napari_lvseg.models.attention_res_unet import AttentionResUNet
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.models.weights import save_model

    folder = save_tiny_segmentation_model(tmp_path, name="m")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _full_disk_for_weights(monkeypatch)
    card = ModelCard(name="m", task="segmentation", architecture="AttentionResUNet", input_size=128)
    with pytest.raises(OSError) as raised:
        save_model(folder, AttentionResUNet(base_width=4), card)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(folder / "model.safetensors")
    load_model(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.startswith("card-")} == before
