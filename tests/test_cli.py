"""The `lvseg` command: the exact contracts of segment, train, evaluate, models; one-line user errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.io.nifti import write_nifti
from napari_lvseg.widgets._testing import phantom_pair_folder, save_tiny_segmentation_model


@pytest.fixture
def tiny_model(models_dir):
    return save_tiny_segmentation_model(models_dir, name="tiny-seg")


def lvseg(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_lvseg.cli", *map(str, args)], capture_output=True, text=True)


def test_segment_nifti_keeps_shape_and_affine(tiny_model, tmp_path):
    image, _ = make_phantom(n_slices=3, seed=1)
    affine = np.diag([1.4, 1.4, 8.0, 1.0])
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), tmp_path / "img.nii.gz")
    assert main(["segment", str(tmp_path / "img.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"),
                 "--model", "tiny-seg", "--uncertainty", str(tmp_path / "unc.nii.gz")]) == 0
    out = nib.load(tmp_path / "seg.nii.gz")
    assert out.shape == (128, 128, 3) and np.allclose(out.affine, affine)
    assert out.get_data_dtype() == np.uint8 and np.asarray(out.dataobj).max() <= 4
    assert nib.load(tmp_path / "unc.nii.gz").shape == (128, 128, 3)


def test_segment_shows_its_progress_on_a_terminal_and_nothing_in_a_log(tiny_model, tmp_path, monkeypatch):
    """A large image takes minutes: on a terminal a bar counts the model's passes (search, view, second view); a
    log (stderr not a terminal) gets no bar."""
    import io

    image, _ = make_phantom(n_slices=3, size=300, seed=1)   # larger than the view: the LV search runs first
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), np.eye(4)), tmp_path / "img.nii.gz")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((Terminal(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        assert main(["segment", str(tmp_path / "img.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"),
                     "--model", "tiny-seg"]) == 0
        text = stream.getvalue()
        assert ("segmenting img.nii.gz:" in text and "pass" in text) == shown, text


def test_segment_says_when_the_search_found_no_lv(tmp_path, capsys, monkeypatch):
    """A search that finds no LV (here made to): labels are written, and the user hears that the centre was segmented
    and how to give the LV's; a phantom off-centre in a wide frame is found, and nothing is said. A stack of blank
    slices is refused: the network "finds" a heart in a blank view."""
    import tifffile

    from napari_lvseg import inference

    image, _ = make_phantom(n_slices=5, seed=1)
    wide = np.pad(image, ((0, 0), (40, 100), (120, 20)), mode="minimum")   # 268 x 268, the heart off-centre
    tifffile.imwrite(tmp_path / "wide.tif", wide)
    assert main(["segment", str(tmp_path / "wide.tif"), "-o", str(tmp_path / "wide-seg.tif")]) == 0
    assert "warning" not in capsys.readouterr().err
    labels = tifffile.imread(tmp_path / "wide-seg.tif")
    ys, xs = np.nonzero(labels.max(0))
    assert abs(ys.mean() - (40 + 64)) < 10 and abs(xs.mean() - (120 + 64)) < 10

    def finds_nothing(*args, **kwargs):
        yield 1, 1
        return None

    monkeypatch.setattr(inference, "locate_steps", finds_nothing)
    assert main(["segment", str(tmp_path / "wide.tif"), "-o", str(tmp_path / "none-seg.tif")]) == 0
    err = capsys.readouterr().err
    assert "wide.tif: the search found no left ventricle, so the image's centre was segmented" in err
    assert "--center Y X" in err and (tmp_path / "none-seg.tif").exists()

    flat = np.broadcast_to(np.arange(1, 6, dtype=np.float32)[:, None, None], (5, 300, 300))
    tifffile.imwrite(tmp_path / "flat.tif", flat)
    assert main(["segment", str(tmp_path / "flat.tif"), "-o", str(tmp_path / "flat-seg.tif")]) == 2
    assert "flat.tif: every slice is blank (one value each): nothing to segment" in capsys.readouterr().err


def test_segment_tiff_2d(tiny_model, tmp_path):
    import tifffile

    image, _ = make_phantom(n_slices=1, seed=2)
    tifffile.imwrite(tmp_path / "slice.tif", image[0])
    assert main(["segment", str(tmp_path / "slice.tif"), "-o", str(tmp_path / "seg.tif"), "--model",
                 str(tiny_model), "--tta"]) == 0
    labels = tifffile.imread(tmp_path / "seg.tif")
    assert labels.shape == (128, 128) and labels.dtype == np.uint8


def test_segment_case_folder_and_evaluate(tiny_model, emidec_cases, tmp_path, capsys):
    data = tmp_path / "cases"
    for case in emidec_cases[:2]:
        shutil.copytree(case, data / case.name)
    assert main(["segment", str(data), "-o", str(tmp_path / "pred"), "--model", "tiny-seg"]) == 0
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == sorted(f"{c.name}.nii.gz" for c in emidec_cases[:2])
    # truth against itself: every Dice is 1
    truth_flat = tmp_path / "truth_flat"
    truth_flat.mkdir()
    for case in emidec_cases[:2]:
        shutil.copy(case / "Contours" / f"{case.name}.nii.gz", truth_flat / f"{case.name}.nii.gz")
    assert main(["evaluate", "--pred", str(truth_flat), "--truth", str(data), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev.json").read_text())
    mean_row = report["study"][-1]
    assert mean_row["case"] == "mean" and mean_row["cavity"] == pytest.approx(1.0)
    assert report["emidec"][-1]["dice_myocardium"] == pytest.approx(1.0)
    assert report["pooled"]["cavity"] == pytest.approx(1.0) and report["pooled"]["mean"] == pytest.approx(1.0)
    assert report["bootstrap"]["per_case"]["mean"] == pytest.approx([1.0, 1.0])
    assert report["bootstrap"]["pooled"]["myocardium"] == pytest.approx([1.0, 1.0])
    # the tiny model's predictions: two cases, so the draws' extremes are each case alone, and the pooled figure of
    # both (a weighted mean of the two) lies between them
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(data), "--out", str(tmp_path / "m")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    for key, value in report["pooled"].items():
        low, high = report["bootstrap"]["pooled"][key]
        if key != "mean" and value is not None:
            assert low <= value <= high
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(data), "--out", str(tmp_path / "n"),
                 "--bootstrap", "0"]) == 0
    assert json.loads((tmp_path / "n.json").read_text())["bootstrap"] is None
    (tmp_path / "pred" / f"{emidec_cases[1].name}.nii.gz").unlink()   # one case left: no draws to speak of
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(data), "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["bootstrap"] is None
    assert "no intervals: one case" in capsys.readouterr().out
    assert (tmp_path / "ev.csv").read_text().count("\n") >= 6


def test_train_cli_then_models_lists_it(models_dir, tmp_path):
    phantom_pair_folder(tmp_path / "pairs", n_pairs=3, n_slices=2, size=64)
    code = main(["train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "run"), "--epochs", "1",
                 "--samples-per-epoch", "4", "--batch-size", "2", "--width", "4", "--depth", "3",
                 "--val-fraction", "0.34", "--threads", "1", "--quiet", "--register", "--name", "mine",
                 "--context", "1"])
    assert code == 0 and (tmp_path / "run" / "model.safetensors").exists()
    assert json.loads((tmp_path / "run" / "card.json").read_text())["params"]["in_channels"] == 3
    listing = lvseg("models")
    assert "mine" in listing.stdout and "user" in listing.stdout


def test_train_resume_keeps_the_runs_length_and_needs_no_data(models_dir, tmp_path, capsys):
    phantom_pair_folder(tmp_path / "pairs", n_pairs=3, n_slices=2, size=64)
    run = tmp_path / "run"
    common = ["--samples-per-epoch", "4", "--batch-size", "2", "--width", "4", "--depth", "3", "--val-fraction",
              "0.34", "--threads", "1", "--quiet"]
    assert main(["train", "--data", str(tmp_path / "pairs"), "--out", str(run), "--epochs", "1", *common]) == 0
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *common]) == 0
    capsys.readouterr()
    # a resume without --epochs keeps the run's 2 epochs (not the new-run default of 10) and trains nothing more;
    # --register registers the finished run's model, as it was trained without it
    assert main(["train", "--resume", "--out", str(run), "--register", *common]) == 0
    assert json.loads((run / "options.json").read_text())["epochs"] == 2
    out = capsys.readouterr().out
    assert "step 4 of 4" in out and "validation:" not in out
    assert "nothing left to train: the run's model registered as run" in out
    assert (models_dir / "run" / "model.safetensors").is_file()
    # again: the registry keeps one copy of it
    assert main(["train", "--resume", "--out", str(run), "--register", *common]) == 0
    assert "nothing left to train: the run's model is already registered as run" in capsys.readouterr().out
    assert sorted(p.name for p in models_dir.iterdir() if not p.name.startswith(".")) == ["run"]
    # fewer epochs than the run has done: refused, its options left as they were
    before = (run / "options.json").read_text()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "1", *common]) == 2
    assert "--epochs: the run has 2 epoch(s) done: 1 is fewer" in capsys.readouterr().err
    assert (run / "options.json").read_text() == before


def test_register_refuses_a_name_another_model_has_before_training(tiny_model, models_dir, tmp_path, capsys):
    from napari_lvseg.models.card import ModelCard, read_card
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.models.weights import save_model

    save_model(models_dir / "gen1", Pix2PixGenerator(base_width=2, depth=3),
               ModelCard(name="gen1", task="synthesis", architecture="Pix2PixGenerator"))
    phantom_pair_folder(tmp_path / "pairs", n_pairs=3, n_slices=2, size=64)
    for name, holder in (("gen1", "the user synthesis model gen1"), ("lvseg-seg", "the bundled segmentation model"),
                         ("tiny-seg", "the user segmentation model tiny-seg")):
        assert main(["train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "run"), "--register",
                     "--name", name, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"--name {name}: {holder}" in err and "choose another --name" in err
        assert not (tmp_path / "run").exists()
    assert read_card(models_dir / "gen1").task == "synthesis" and read_card(models_dir / "tiny-seg").name == "tiny-seg"
    assert sorted(p.name for p in models_dir.iterdir()) == ["gen1", "tiny-seg"]


@pytest.mark.parametrize("args, words", [
    (["train", "--out", "run"], "give the training data with --data DIR"),
    (["segment", "missing.nii.gz", "-o", "x.nii.gz"], "missing.nii.gz"),
    (["segment", "img.tif", "-o", "x.nii.gz", "--model", "nope"], "nope"),
    (["segment", "notes.txt", "-o", "x.nii.gz"], "unsupported file type"),
    (["train", "--data", "nowhere", "--out", "run"], "nowhere"),
    (["train", "--data", "x", "--out", "run", "--context", "9"], "--context: must be 0..3"),
    (["evaluate", "--pred", "a", "--truth", "b"], "not a folder"),
    (["segment", "img.tif", "-o", "img.tif"], "img.tif: is the input file"),
    (["segment", "img.tif", "-o", "seg.png"], "seg.png: cannot write this kind of file"),
    (["segment", "img.tif", "-o", "seg.tif", "--uncertainty", "seg.tif"], "seg.tif: is already the labels output"),
    (["segment", "img.tif", "-o", "seg.tif", "--center", "nan", "nan"], "centre (nan, nan) lies outside the 128x128"),
    (["segment", "img.tif", "-o", "seg.tif", "--center", "5", "400"], "lies outside"),
    (["synthesize", "mask.tif", "-o", "mask.tif"], "mask.tif: is the input file"),
    (["evaluate", "--pred", "pred", "--truth", "pred", "--out", "notes.txt/ev"], "notes.txt"),
    (["evaluate", "--pred", "pred", "--truth", "pred", "--bootstrap", "-5"], "--bootstrap must be 0 to 100000, not -5"),
    (["segment", "blank.tif", "-o", "seg.tif"], "blank.tif: image is blank"),
    (["segment", "two", "-o", "seg.nii.gz"], "names one file, but this folder holds 2 images: give an output folder"),
    (["segment", "empty", "-o", "seg.nii.gz"], "empty: folder holds no EMIDEC Case_* folders"),
    (["train", "--data", "pred", "--data", "pred", "--mix", "nan:1", "--out", "run"], "--mix: ratios must be finite"),
    (["train", "--data", "pred", "--out", "run", "--lr", "nan"], "--lr: must be a number, got nan"),
    (["train", "--data", "pred", "--out", "run", "--width", "0"], "--width: must be 1..256, got 0"),
    (["train", "--data", "pred", "--out", "run", "--name", "a/b"], "invalid model name 'a/b'"),
    (["train", "--data", "pairs", "--out", "run", "--split", "split.json"], "split file's 'val' must be a list"),
    (["synthesize-dataset", "--masks-from", "pairs", "--n", "1", "--out", "o", "--cases", "Nope"],
     "no case or pair named Nope"),
    (["train", "--task", "synthesis", "--data", "pairs", "--out", "run", "--seg-guide", "nope"], "nope"),
    (["train", "--task", "synthesis", "--data", "pairs", "--out", "run", "--seg-guide-lambda", "-1"],
     "--seg-guide-lambda: must be at least 0"),
    # outputs that would overwrite or mix into an input, or cannot be written where they are named
    (["segment", "cases/Case_A", "-o", "cases/Case_A/Images/Case_A.nii.gz"], "lies inside the input folder Case_A"),
    (["synthesize", "cases/Case_A", "-o", "cases/Case_A/Contours/Case_A.nii.gz"], "lies inside the input folder"),
    (["segment", "img.tif", "-o", "img.tif/seg.nii.gz"], "img.tif: is a file, not a folder"),
    (["segment", "img.tif", "-o", "taken.nii.gz"], "taken.nii.gz: is a folder: give a labels file"),
    (["evaluate-synthesis", "--data", "pairs", "--out", "pairs/images/p.tif"], "--out must name a .json file"),
    (["evaluate-synthesis", "--data", "pairs", "--out", "empty"], "empty: is a folder: give a .json file"),
    (["evaluate-synthesis", "--data", "pairs", "--out", "notes.txt/x.json"], "notes.txt: is a file, not a folder"),
    (["segment", "cases/Case_A/Images/Case_A.nii.gz", "-o", "cases/Case_A/Contours/Case_A.nii.gz"],
     "lies inside the input folder Case_A"),
    (["synthesize-dataset", "--masks-from", "cases", "--n", "1", "--out", "cases"],
     "cases: holds EMIDEC cases: pairs written here would hide them"),
    (["train", "--data", "pairs", "--out", "notes.txt/run"], "notes.txt: is a file: the run folder cannot be made"),
    (["train", "--data", "notes.txt", "--out", "run"], "notes.txt: is a file: give a folder of EMIDEC cases"),
    (["train", "--data", "cases", "--out", "run", "--split", "typo.json"],
     "typo.json: split file names 1 training or validation case(s) the data do not hold: Case_Z"),
    (["train", "--data", "cases", "--out", "run", "--split", "both.json"],
     "both.json: split file lists 1 case(s) in both 'train' and 'val': Case_A"),
    # a missing input is named as such, before the outputs are looked at
    (["segment", "nodir/", "-o", "y/"], "nodir: no such file or folder"),
    (["synthesize", "nomask.nii.gz", "-o", "syn/"], "nomask.nii.gz: no such file or folder"),
    (["synthesize", "mask.tif", "-o", "empty"], "empty: is a folder: give an image file"),
    (["evaluate", "--pred", "clash", "--truth", "pred"],
     "clash: Case_A.nii.gz and Case_A.tif both hold labels of Case_A"),
    (["evaluate-synthesis", "--data", "cases", "--cases", "Case_A", "--out", "cases/Case_A/Contours/x.json"],
     "x.json: lies inside the input folder cases"),
])
def test_user_errors_are_one_line_without_traceback(models_dir, tmp_path, args, words):
    import tifffile

    image, labels = make_phantom(n_slices=1, seed=0)
    tifffile.imwrite(tmp_path / "img.tif", image[0])
    tifffile.imwrite(tmp_path / "mask.tif", labels[0])
    (tmp_path / "pred").mkdir()
    (tmp_path / "empty").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "Case_A.tif", labels[0])
    (tmp_path / "two").mkdir()
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / "two" / name, image[0])
    (tmp_path / "notes.txt").write_text("not an image")
    tifffile.imwrite(tmp_path / "blank.tif", np.full((64, 64), 3.0, np.float32))
    (tmp_path / "split.json").write_text('{"train": ["a"], "val": 5}')
    phantom_pair_folder(tmp_path / "pairs", n_pairs=1, n_slices=1)
    for part in ("Images", "Contours"):   # an EMIDEC case folder
        write_nifti(tmp_path / "cases/Case_A" / part / "Case_A.nii.gz", image[:1] if part == "Images" else labels[:1])
    (tmp_path / "taken.nii.gz").mkdir()
    (tmp_path / "typo.json").write_text('{"train": ["Case_A"], "val": ["Case_Z"]}')
    (tmp_path / "both.json").write_text('{"train": ["Case_A"], "val": ["Case_A"]}')
    (tmp_path / "clash").mkdir()
    tifffile.imwrite(tmp_path / "clash" / "Case_A.tif", labels[0])
    write_nifti(tmp_path / "clash" / "Case_A.nii.gz", labels[:1])
    run = subprocess.run([sys.executable, "-m", "napari_lvseg.cli", *args], capture_output=True, text=True,
                         cwd=tmp_path)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr and run.stderr.count("\n") == 1 and words in run.stderr


def test_train_under_torchrun_with_two_gloo_processes(tmp_path):
    """DistributedDataParallel on 2 CPU processes: one run folder, written by rank 0, steps halved."""
    phantom_pair_folder(tmp_path / "pairs", n_pairs=3, n_slices=2, size=64)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "napari_lvseg.cli", "train", "--data", str(tmp_path / "pairs"), "--out", str(tmp_path / "ddp"),
           "--epochs", "1", "--samples-per-epoch", "8", "--batch-size", "2", "--width", "4", "--depth", "3",
           "--val-fraction", "0.34", "--threads", "1", "--quiet"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**__import__("os").environ,
                                                                             "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in (tmp_path / "ddp" / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["kind"] == "step"]
    assert len(steps) == 2  # 8 samples / (batch 2 x 2 processes); only rank 0 logs
    assert (tmp_path / "ddp" / "model.safetensors").exists()


def test_bad_thread_counts_are_refused_by_the_parser(tmp_path):
    run = lvseg("segment", "img.tif", "-o", "x.tif", "--threads", "-1")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--threads: expected a whole number of at least 1, not '-1'" in run.stderr
    for args, words in ((["train", "--data", "x", "--out", "run", "--seed", "-1"], "--seed: must be 0..4294967295"),
                        (["synthesize", "m.tif", "-o", "s.tif", "--seed", "99999999999999999999"],
                         "--seed: expected a whole number from 0 to 4294967295")):
        run = lvseg(*args)
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert words in run.stderr


def test_a_failed_uncertainty_write_replaces_neither_output(tiny_model, tmp_path, monkeypatch, capsys):
    """The labels used to be replaced before the uncertainty write failed, by a command that then exits 2."""
    import errno

    from napari_lvseg.io import nifti

    image, _ = make_phantom(n_slices=2, seed=1)
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), np.eye(4)), tmp_path / "img.nii.gz")
    args = ["segment", str(tmp_path / "img.nii.gz"), "-o", str(tmp_path / "seg.nii.gz"), "--model", "tiny-seg",
            "--uncertainty", str(tmp_path / "unc.nii.gz")]
    (tmp_path / "seg.nii.gz").write_bytes(b"earlier labels")
    (tmp_path / "unc.nii.gz").write_bytes(b"earlier uncertainty")
    save = nifti.nib.save

    def full_disk_at_the_uncertainty(img, filename):
        if ".unc.nii.gz." in str(filename):
            raise OSError(errno.ENOSPC, "No space left on device", str(filename))
        return save(img, filename)

    monkeypatch.setattr(nifti.nib, "save", full_disk_at_the_uncertainty)
    assert main(args) == 2
    assert capsys.readouterr().err == (f"lvseg segment: error: {tmp_path / 'unc.nii.gz'}: cannot write NIfTI (No "
                                       "space left on device)\n")
    assert (tmp_path / "seg.nii.gz").read_bytes() == b"earlier labels"
    assert (tmp_path / "unc.nii.gz").read_bytes() == b"earlier uncertainty"
    assert sorted(p.name for p in tmp_path.glob("*.nii.gz*")) == ["img.nii.gz", "seg.nii.gz", "unc.nii.gz"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file left
    monkeypatch.setattr(nifti.nib, "save", save)
    assert main(args) == 0   # with room: both replaced
    assert nib.load(tmp_path / "seg.nii.gz").shape == nib.load(tmp_path / "unc.nii.gz").shape == (128, 128, 2)


def _emidec_case(root, name, image, labels):
    affine = np.diag([1.4, 1.4, 8.0, 1.0])
    for folder, data in (("Images", image), ("Contours", labels)):
        (root / name / folder).mkdir(parents=True)
        nib.save(nib.Nifti1Image(data.transpose(2, 1, 0), affine), root / name / folder / f"{name}.nii.gz")


def test_a_case_folder_is_segmented_from_its_images_and_a_bad_case_does_not_stop_the_others(tiny_model, tmp_path):
    image, labels = make_phantom(n_slices=2, seed=3)
    data = tmp_path / "cases"
    _emidec_case(data, "Case_A", image, np.where(labels == 1, 7, labels).astype(np.uint8))  # truth not 0..4
    _emidec_case(data, "Case_B", np.full_like(image, np.nan), labels)                      # image all NaN
    _emidec_case(data, "Case_C", image, labels)
    run = lvseg("segment", data, "-o", tmp_path / "pred", "--model", "tiny-seg")
    # the truth is not needed to segment: Case_A runs; Case_B is reported and Case_C still runs
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["Case_A.nii.gz", "Case_C.nii.gz"]
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "Case_B.nii.gz" in run.stderr and "1 of 3 not segmented: Case_B" in run.stderr
    refused = lvseg("segment", data, "-o", tmp_path / "pred2", "--model", "tiny-seg", "--center", "60", "60")
    assert refused.returncode == 2 and "apply to one image, not to a folder" in refused.stderr


def test_a_folder_of_images_is_segmented_into_a_folder_under_the_same_names(tiny_model, tmp_path):
    import tifffile

    image, _ = make_phantom(n_slices=2, seed=4)
    data = tmp_path / "images"
    data.mkdir()
    affine = np.diag([1.4, 1.4, 8.0, 1.0])
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), affine), data / "stack.nii.gz")
    tifffile.imwrite(data / "slice.tif", image[0])
    np.save(data / "notes.npy", image)                              # not an image format: left alone
    tifffile.imwrite(data / "broken.tif", np.full_like(image[0], np.nan))
    run = lvseg("segment", data, "-o", tmp_path / "pred", "--model", "tiny-seg")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["slice.tif", "stack.nii.gz"]
    assert nib.load(tmp_path / "pred" / "stack.nii.gz").shape == (128, 128, 2)
    assert np.allclose(nib.load(tmp_path / "pred" / "stack.nii.gz").affine, affine)
    assert tifffile.imread(tmp_path / "pred" / "slice.tif").shape == (128, 128)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "broken.tif: image contains NaN" in run.stderr and "1 of 3 not segmented: broken.tif" in run.stderr
    same = lvseg("segment", data, "-o", data, "--model", "tiny-seg")
    assert same.returncode == 2 and "is the input folder" in same.stderr


def test_an_empty_folder_is_named_as_the_problem(tmp_path):
    (tmp_path / "empty").mkdir()
    run = lvseg("segment", tmp_path / "empty", "-o", tmp_path / "pred")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith(
        "empty: folder holds no EMIDEC Case_* folders, DICOM series, NIfTI or TIFF images")
    assert not (tmp_path / "pred").exists()


def test_models_lists_a_user_model_whose_card_metrics_are_hand_edited(tiny_model):
    card = json.loads((tiny_model / "card.json").read_text())
    card["metrics"] = {"validation": 5, "test_metrics_tta": {"study_mean": "high"}}
    (tiny_model / "card.json").write_text(json.dumps(card))
    listing = lvseg("models")
    assert listing.returncode == 0 and "tiny-seg" in listing.stdout and "Traceback" not in listing.stderr


def test_models_piped_into_a_reader_that_leaves_says_nothing():
    run = subprocess.run(f"{sys.executable} -m napari_lvseg.cli models | head -c 1", shell=True, capture_output=True,
                         text=True)
    assert len(run.stdout) == 1 and run.stderr == ""


def test_models_gives_each_bundled_model_its_headline_figure():
    lines = {line.split()[0]: line for line in lvseg("models").stdout.splitlines()}
    assert "(default)  out-of-fold mean Dice 0.626 (60 cases)" in lines["lvseg-seg"]
    assert "(default)  test PSNR 16.2 dB, feature distance (our encoder) 0.432" in lines["lvseg-pix2pix-resize"]
    assert "(default)" not in lines["lvseg-pix2pix"]
    assert "test PSNR 15.8 dB, feature distance (our encoder) 0.516" in lines["lvseg-pix2pix"]
    assert "FID" not in "".join(lines.values())


def test_models_marks_a_user_model_whose_weights_do_not_fit_its_card(tiny_model, models_dir, tmp_path):
    import shutil

    import tifffile

    other = models_dir / "wider"
    shutil.copytree(tiny_model, other)
    card = json.loads((other / "card.json").read_text())
    card["name"], card["params"]["base_width"] = "wider", card["params"]["base_width"] * 2
    (other / "card.json").write_text(json.dumps(card))
    lines = {line.split()[0]: line for line in lvseg("models").stdout.splitlines()}
    assert "UNUSABLE" not in lines["tiny-seg"]
    assert "UNUSABLE (weights do not fit AttentionResUNet:" in lines["wider"] and "shape mismatch" in lines["wider"]
    # ... and using it fails with the same problem in one line
    tifffile.imwrite(tmp_path / "img.tif", make_phantom(n_slices=1, seed=0)[0][0])
    run = lvseg("segment", tmp_path / "img.tif", "-o", tmp_path / "seg.tif", "--model", "wider")
    assert run.returncode == 2 and "Traceback" not in run.stderr and "weights do not fit" in run.stderr
    # a card that cannot be read leaves the model out of every list: `models` says which and why
    (other / "card.json").write_text("{not json")
    listed = lvseg("models").stdout.splitlines()
    assert not any(line.startswith("wider ") for line in listed)
    assert f"UNUSABLE, left out of every model list: {other / 'card.json'}: model card is not valid JSON" in listed[-1]


def test_a_dicom_series_folder_is_segmented_as_one_stack(tiny_model, tmp_path, capsys):
    from test_io import write_dicom

    image, _ = make_phantom(n_slices=3, seed=5)
    series = tmp_path / "series"
    series.mkdir()
    for z in range(3):
        pixels = np.round(image[z] / image.max() * 1000)
        write_dicom(series / f"IM{z}", pixels, series_uid="1.2.3", instance=z + 1,
                    position=[0.0, 0.0, 8.0 * z], orientation=[1, 0, 0, 0, 1, 0])
    assert main(["segment", str(series), "-o", str(tmp_path / "seg.nii.gz"), "--model", "tiny-seg"]) == 0
    out = nib.load(tmp_path / "seg.nii.gz")
    assert out.shape == (128, 128, 3) and out.header.get_zooms() == pytest.approx((0.8, 0.7, 8.0))
    # a study folder of series, as scanners export them: one labels file per series
    study = tmp_path / "study"
    study.mkdir()
    series.rename(study / "LGE_SAX")
    (study / "notes").mkdir()
    (study / "notes" / "a.txt").write_text("not an image")
    assert main(["segment", str(study), "-o", str(tmp_path / "pred"), "--model", "tiny-seg"]) == 0
    assert [p.name for p in (tmp_path / "pred").iterdir()] == ["LGE_SAX.nii.gz"]
    assert nib.load(tmp_path / "pred" / "LGE_SAX.nii.gz").header.get_zooms() == pytest.approx((0.8, 0.7, 8.0))
    # outputs checked before any work: one landing inside its own series, two sources on one file name
    assert main(["segment", str(study), "-o", str(study / "LGE_SAX"), "--model", "tiny-seg"]) == 2
    assert sorted(p.name for p in (study / "LGE_SAX").iterdir()) == ["IM0", "IM1", "IM2"]
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), np.eye(4)), study / "LGE_SAX.nii.gz")
    assert main(["segment", str(study), "-o", str(tmp_path / "pred3"), "--model", "tiny-seg"]) == 2
    assert not (tmp_path / "pred3").exists()
    err = capsys.readouterr().err.splitlines()
    assert "would overwrite the input LGE_SAX with its labels" in err[-2]
    assert "LGE_SAX and LGE_SAX.nii.gz would both be written to LGE_SAX.nii.gz" in err[-1]


def test_a_media_export_is_searched_for_its_series_further_down(tiny_model, tmp_path):
    from test_dicom_frames import NORMAL, write_enhanced
    from test_io import write_dicom

    image, _ = make_phantom(n_slices=3, seed=5)
    pixels = np.round(image / image.max() * 1000)
    export = tmp_path / "export"   # DICOMDIR beside PATIENT/STUDY/SERIES folders of files named without a suffix
    for series in ("SE1", "SE2"):
        (export / "P1" / "ST1" / series).mkdir(parents=True)
    for z in range(3):
        write_dicom(export / "P1" / "ST1" / "SE1" / f"IM{z}", pixels[z], series_uid="1.2.3", instance=z + 1,
                    position=[0.0, 0.0, 8.0 * z], orientation=[1, 0, 0, 0, 1, 0])
    write_enhanced(export / "P1" / "ST1" / "SE2" / "IM0", pixels, [8.0 * z * NORMAL for z in range(3)])
    write_dicom(export / "DICOMDIR", pixels[0], series_uid="9.9", instance=1)   # a directory record, not an image
    assert main(["segment", str(export), "-o", str(tmp_path / "pred"), "--model", "tiny-seg"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["P1_ST1_SE1.nii.gz", "P1_ST1_SE2.nii.gz"]
    for name in ("P1_ST1_SE1.nii.gz", "P1_ST1_SE2.nii.gz"):
        assert nib.load(tmp_path / "pred" / name).shape == (128, 128, 3)
    # one file of a series, named without a suffix, opens its series
    assert main(["segment", str(export / "P1" / "ST1" / "SE2" / "IM0"), "-o", str(tmp_path / "se2.nii.gz"),
                 "--model", "tiny-seg"]) == 0
    assert nib.load(tmp_path / "se2.nii.gz").header.get_zooms() == pytest.approx((0.8, 0.7, 8.0))


def test_a_folder_of_one_image_with_a_file_output_is_segmented_into_it(tiny_model, tmp_path):
    import tifffile

    image, _ = make_phantom(n_slices=1, seed=2)
    (tmp_path / "one").mkdir()
    tifffile.imwrite(tmp_path / "one" / "slice.tif", image[0])
    assert main(["segment", str(tmp_path / "one"), "-o", str(tmp_path / "seg.tif"), "--model", "tiny-seg"]) == 0
    assert tifffile.imread(tmp_path / "seg.tif").shape == image[0].shape


def test_a_case_folder_with_a_file_output_is_one_labels_file(tiny_model, tmp_path):
    image, labels = make_phantom(n_slices=2, seed=5)
    _emidec_case(tmp_path, "Case_A", image, labels)
    run = lvseg("segment", tmp_path / "Case_A", "-o", tmp_path / "case.nii.gz", "--model", "tiny-seg")
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "case.nii.gz").is_file()
    assert nib.load(tmp_path / "case.nii.gz").shape == image.transpose(2, 1, 0).shape


def test_evaluate_into_a_folder_writes_inside_it(tmp_path, capsys):
    import tifffile

    _, labels = make_phantom(n_slices=1, seed=0)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "Case_A.tif", labels[0])
    (tmp_path / "results").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "pred"),
                 "--out", str(tmp_path / "results")]) == 0
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["evaluation.csv", "evaluation.json"]

    def evaluate(out):
        return main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "pred"), "--out", out])

    # a prefix keeps its dots; a .csv ending is the CSV's own name
    assert evaluate(str(tmp_path / "res.v2")) == 0 and evaluate(str(tmp_path / "table.csv")) == 0
    assert all((tmp_path / name).is_file() for name in ("res.v2.csv", "res.v2.json", "table.csv", "table.json"))
    capsys.readouterr()
    # a missing output folder is refused before any table is printed
    assert evaluate(str(tmp_path / "nowhere" / "ev")) == 2
    out = capsys.readouterr()
    assert "Study protocol" not in out.out and "nowhere: folder does not exist" in out.err



def test_evaluate_names_each_prediction_without_truth_and_refuses_when_none_has_one(tmp_path, capsys):
    """Predictions whose case has no truth used to drop out of the tables without a word."""
    _, labels = make_phantom(n_slices=2, seed=0)
    for folder, names in (("truth", ["Case_A", "Case_B"]), ("pred", ["Case_A", "Case_B", "Case_X", "case_b"])):
        (tmp_path / folder).mkdir()
        for name in names:
            write_nifti(tmp_path / folder / f"{name}.nii.gz", labels)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--out", str(tmp_path / "ev"), "--bootstrap", "0"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"lvseg evaluate: warning: {tmp_path / 'pred' / name}.nii.gz: no truth of {name} in "
                   f"{tmp_path / 'truth'}: left out of every table" for name in ("Case_X", "case_b")]
    assert [row["case"] for row in json.loads((tmp_path / "ev.json").read_text())["study"]][:2] == ["Case_A",
                                                                                                   "Case_B"]
    for name in ("Case_A", "Case_B"):
        (tmp_path / "truth" / f"{name}.nii.gz").rename(tmp_path / "truth" / f"Other_{name}.nii.gz")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--out", str(tmp_path / "ev2")]) == 2
    out = capsys.readouterr()
    assert out.err == (f"lvseg evaluate: error: {tmp_path / 'pred'}: no prediction has a truth case of its name in "
                       f"{tmp_path / 'truth'} (predictions: Case_A, Case_B, Case_X, case_b)\n")
    assert not (tmp_path / "ev2.csv").exists()


def test_a_folder_segmentation_skips_label_maps_its_earlier_results_among_the_images(tiny_model, tmp_path, capsys):
    """`lvseg segment img -o <folder>/img_seg.tif` puts a result beside its image: segmenting the folder later
    must not segment the labels as an image."""
    import tifffile

    image, _ = make_phantom(n_slices=2, seed=4)
    data = tmp_path / "images"
    data.mkdir()
    tifffile.imwrite(data / "stack.tif", image)
    assert main(["segment", str(data / "stack.tif"), "-o", str(data / "stack_seg.tif"), "--model", "tiny-seg"]) == 0
    write_nifti(data / "stack_seg2.nii.gz", tifffile.imread(data / "stack_seg.tif"))   # as uint8 NIfTI too
    capsys.readouterr()
    assert main(["segment", str(data), "-o", str(tmp_path / "pred"), "--model", "tiny-seg"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["stack.tif"]
    err = capsys.readouterr().err.splitlines()
    assert err == [f"lvseg segment: warning: {data / name}: a label map (whole numbers 0..4 only), as lvseg writes "
                   "its results: skipped, not segmented" for name in ("stack_seg.tif", "stack_seg2.nii.gz")]


def test_an_ensemble_card_whose_members_cannot_take_its_input_size_is_unusable(models_dir, tmp_path):
    from napari_lvseg.models.registry import bundled_models_dir

    bad = models_dir / "ens100"
    shutil.copytree(bundled_models_dir() / "lvseg-seg", bad)
    card = json.loads((bad / "card.json").read_text())
    (bad / "card.json").write_text(json.dumps({**card, "name": "ens100", "input_size": 100}))
    nib.save(nib.Nifti1Image(make_phantom(n_slices=1, seed=0)[0][0].T, np.eye(4)), tmp_path / "in2d.nii.gz")
    run = lvseg("segment", tmp_path / "in2d.nii.gz", "-o", tmp_path / "x.nii.gz", "--model", bad)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert "'input_size' 100 must be divisible by 2**depth = 16 (ensemble member 1)" in run.stderr
    assert "UNUSABLE" in lvseg("models").stdout.splitlines()[-1] and "ensemble member 1" in lvseg("models").stdout


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tiny_model, tmp_path, monkeypatch, capsys):
    import os
    from pathlib import Path

    import tifffile

    ro = tmp_path / "ro"
    ro.mkdir()
    access = os.access   # a read-only folder (root may write anywhere a chmod forbids, so the answer is patched)
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: not (Path(p) == ro and mode & os.W_OK)
                        and access(p, mode, **kw))
    image, labels = make_phantom(n_slices=1, seed=0)
    tifffile.imwrite(tmp_path / "img.tif", image[0])
    tifffile.imwrite(tmp_path / "mask.tif", labels[0])
    (tmp_path / "images").mkdir()
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / "images" / name, image[0])
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "Case_A.tif", labels[0])
    phantom_pair_folder(tmp_path / "pairs", n_pairs=1, n_slices=1)
    img, mask, pairs = (str(tmp_path / name) for name in ("img.tif", "mask.tif", "pairs"))
    for args in (["segment", img, "-o", ro / "o.nii.gz", "--model", "nope"],
                 # the labels file could be written, the uncertainty map not: neither is, nothing runs
                 ["segment", img, "-o", tmp_path / "seg.nii.gz", "--uncertainty", ro / "u.nii.gz",
                  "--model", "tiny-seg"],
                 ["segment", tmp_path / "images", "-o", ro / "preds", "--model", "nope"],
                 ["evaluate", "--pred", tmp_path / "pred", "--truth", tmp_path / "pred", "--out", ro / "eval"],
                 ["evaluate-synthesis", "--data", pairs, "--out", ro / "e.json", "--model", "nope"],
                 ["synthesize", mask, "-o", ro / "s.nii.gz", "--model", "nope"],
                 ["synthesize-dataset", "--masks-from", pairs, "--n", "1", "--out", ro / "syn", "--model", "nope"],
                 ["train", "--data", pairs, "--out", ro / "run"]):
        assert main([str(a) for a in args]) == 2, args
        out = capsys.readouterr()
        assert out.err.count("\n") == 1 and f"{ro}: folder cannot be written" in out.err, (args, out.err)
        assert "Study protocol" not in out.out
    assert not (tmp_path / "seg.nii.gz").exists()
    # a file standing where the output folder must be made: refused before the images are segmented
    assert main(["segment", str(tmp_path / "images"), "-o", f"{img}/preds", "--model", "nope"]) == 2
    assert f"{img}: is a file, not a folder" in capsys.readouterr().err


def test_library_chatter_stays_off_the_terminal_one_line_is_left(tmp_path):
    import tifffile

    image = make_phantom(n_slices=8, seed=0)[0]
    tifffile.imwrite(tmp_path / "stack.tif", image, photometric="minisblack", metadata=None)
    data = (tmp_path / "stack.tif").read_bytes()
    (tmp_path / "stack.tif").write_bytes(data[:len(data) // 2])   # a truncated stack: tifffile logs, reads part
    pix0 = nib.Nifti1Image(image.transpose(2, 1, 0), np.eye(4))
    pix0.header["pixdim"][1:4] = 0   # nibabel logs that it sets them to 1
    nib.save(pix0, tmp_path / "pix0.nii.gz")
    for name, words in (("stack.tif", "stack.tif: damaged TIFF, part of it cannot be read (invalid page offset"),
                        ("pix0.nii.gz", "nope: no such file, folder or registered model")):
        run = lvseg("segment", tmp_path / name, "-o", tmp_path / "x.nii.gz", "--model", "nope")
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and words in run.stderr, run.stderr


def test_a_folder_walk_reports_and_counts_what_it_leaves_out(tiny_model, tmp_path):
    image, labels = make_phantom(n_slices=2, seed=3)
    data = tmp_path / "cases"
    _emidec_case(data, "Case_P002", image, labels)
    (data / "Case_A" / "Contours").mkdir(parents=True)   # a case without its Images folder
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), np.eye(4)), data / "Case_A" / "Contours" / "Case_A.nii.gz")
    nib.save(nib.Nifti1Image(image.transpose(2, 1, 0), np.eye(4)), data / "image.nii.gz")   # a loose image
    (data / "notes.txt").write_text("left alone: not an image")
    run = lvseg("segment", data, "-o", tmp_path / "pred", "--model", "tiny-seg")
    assert run.returncode == 2 and [p.name for p in (tmp_path / "pred").iterdir()] == ["Case_P002.nii.gz"]
    assert f"{data / 'Case_A'}: not an EMIDEC case: no Images folder (expected Images/Case_A.nii.gz)" in run.stderr
    assert f"{data / 'image.nii.gz'}: an image beside EMIDEC case folders" in run.stderr
    assert "2 of 3 not segmented: Case_A, image.nii.gz" in run.stderr and "notes" not in run.stderr
    one = lvseg("segment", data / "Case_A", "-o", tmp_path / "x.nii.gz", "--model", "tiny-seg")
    assert one.returncode == 2 and one.stderr.count("\n") == 1
    assert "Case_A: not an EMIDEC case: no Images folder (expected Images/Case_A.nii.gz)" in one.stderr


def test_segment_without_shading_correction_never_fits_a_coil_field(tiny_model, tmp_path, monkeypatch):
    """``--no-shading-correction``: neither the search over a whole field of view nor the view's read fits a coil's
    field; by default both do (here a fit that finds nothing)."""
    import tifffile

    from napari_lvseg import inference
    from napari_lvseg.data import shading

    fits = []

    def counted(image, labels, trigger=shading.SHADING_TRIGGER):
        fits.append(image.shape)
        return None, 1.0

    monkeypatch.setattr(inference, "shading_to_correct", counted)
    monkeypatch.setattr(shading, "shading_to_correct", counted)   # the search imports it when it runs
    image, _ = make_phantom(n_slices=5, size=200, seed=1)
    tifffile.imwrite(tmp_path / "wide.tif", image)
    for flags, expected in (([], 2), (["--no-shading-correction"], 0)):
        fits.clear()
        assert main(["segment", str(tmp_path / "wide.tif"), "-o", str(tmp_path / "seg.tif"), "--model",
                     str(tiny_model)] + flags) == 0
        assert len(fits) == expected and tifffile.imread(tmp_path / "seg.tif").shape == (5, 200, 200)
