"""``lvseg train --task synthesis``, ``synthesize``, ``synthesize-dataset`` and ``evaluate-synthesis``."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

from napari_lvseg.cli import main
from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.models.card import read_card
from napari_lvseg.synthesis import synthesize

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    folder = PairFolder(root)
    for seed in range(3):
        image, labels = make_phantom(n_slices=2, seed=seed)
        folder.add(image, labels, origin="real", name=f"phantom_P{seed}")
    return root


@pytest.fixture(scope="module")
def run(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    rc = main(["train", "--task", "synthesis", "--data", str(pairs), "--out", str(out), "--epochs", "1",
               "--samples-per-epoch", "2", "--batch-size", "2", "--width", "4", "--threads", "1",
               "--device", "cpu", "--quiet"])
    assert rc == 0
    return out


@pytest.fixture
def mask_nifti(tmp_path):
    labels = make_phantom(n_slices=2, seed=9)[1]
    affine = np.diag([1.4, 1.4, 8.0, 1.0])
    affine[:3, 3] = (-90.0, 12.5, 40.0)
    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(labels.transpose(2, 1, 0), affine), str(path))
    return path, labels, affine


def test_train_task_synthesis_uses_width_and_upsampling_for_the_generator(run):
    card = read_card(run)
    assert card.task == "synthesis" and card.params["base_width"] == 4 and card.params["upsample"] == "resize"
    assert (run / "last.pt").is_file() and (run / "model.safetensors").is_file()


def test_synthesize_nifti_keeps_shape_and_affine(run, mask_nifti, tmp_path, capsys):
    path, labels, affine = mask_nifti
    out = tmp_path / "image.nii.gz"
    assert main(["synthesize", str(path), "-o", str(out), "--model", str(run), "--seed", "3"]) == 0
    written = nib.load(str(out))
    assert written.shape == (128, 128, 2)
    assert np.allclose(written.affine, affine)
    data = np.asarray(written.dataobj).transpose(2, 1, 0)
    assert data.dtype == np.float32 and np.isfinite(data).all() and data.std() > 0
    # Same seed from the CLI and the API: the same image.
    from napari_lvseg.synthesis import synthesize

    assert np.allclose(data, synthesize(labels, str(run), seed=3))


def test_synthesize_2d_tiff_of_another_size(run, tmp_path):
    labels = np.zeros((150, 140), np.uint8)
    labels[10:138, 5:133] = make_phantom(n_slices=1, seed=4)[1][0]
    tifffile.imwrite(tmp_path / "mask.tif", labels)
    assert main(["synthesize", str(tmp_path / "mask.tif"), "-o", str(tmp_path / "image.tif"), "--model", str(run)]) == 0
    image = tifffile.imread(tmp_path / "image.tif")
    assert image.shape == (150, 140) and image.dtype == np.float32


def test_synthesize_refuses_a_bad_mask_in_one_line(run, tmp_path, capsys):
    labels = np.zeros((64, 64), np.uint8)
    labels[10, 10] = 7
    tifffile.imwrite(tmp_path / "bad.tif", labels)
    assert main(["synthesize", str(tmp_path / "bad.tif"), "-o", str(tmp_path / "x.tif"), "--model", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.tif" in err and "7" in err
    assert not (tmp_path / "x.tif").exists()


def test_synthesize_without_a_model_says_how_to_get_one(mask_nifti, tmp_path, models_dir, monkeypatch, capsys):
    from napari_lvseg.models import registry

    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "none")
    assert main(["synthesize", str(mask_nifti[0]), "-o", str(tmp_path / "x.nii.gz")]) == 2
    assert "train one with lvseg train --task synthesis" in capsys.readouterr().err


def test_synthesize_dataset_writes_n_pairs(run, pairs, tmp_path):
    out = tmp_path / "synthetic"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "3", "--out", str(out),
                 "--model", str(run), "--seed", "5"]) == 0
    records = PairFolder.open(out).records()
    assert len(records) == 3 and {r["origin"] for r in records} == {"synthetic"}
    assert [r["seed"] for r in records] == [5, 6, 7]
    stacks = tmp_path / "stacks"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "2", "--out", str(stacks),
                 "--model", str(run), "--stacks", "--cases", "phantom_P1"]) == 0
    folder = PairFolder.open(stacks)
    shape = PairFolder(pairs).read("phantom_P1")[1].shape
    assert [folder.read(name)[1].shape for name in folder.names()] == [shape, shape]
    assert not any("slice_seeds" in r for r in folder.records())


def test_synthesize_dataset_slice_seeds(run, pairs, tmp_path, capsys):
    out = tmp_path / "stacks"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(out),
                 "--model", str(run), "--slice-seeds", "--cases", "phantom_P1"]) == 2
    assert "--slice-seeds needs --stacks" in capsys.readouterr().err and not out.exists()
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(out),
                 "--model", str(run), "--stacks", "--slice-seeds", "--cases", "phantom_P1"]) == 0
    folder = PairFolder.open(out)
    [record] = folder.records()
    assert record["slice_seeds"] is True
    image, mask = folder.read(record["name"])
    assert image.shape == mask.shape and mask.shape[0] > 1


def test_evaluate_synthesis_writes_strict_json(run, pairs, tmp_path, monkeypatch):
    from napari_lvseg.models import registry

    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "none")
    out = tmp_path / "eval.json"
    assert main(["evaluate-synthesis", "--model", str(run), "--data", str(pairs), "--cases", "phantom_P1",
                 "--out", str(out)]) == 0

    def refuse(value):
        raise ValueError(f"non-standard JSON constant {value}")

    result = json.loads(out.read_text(), parse_constant=refuse)
    assert result["n_slices"] == 2 and len(result["pairs"]) == 2
    assert all(np.isfinite(result[k]) for k in ("psnr", "ssim", "l1", "feature_distance", "kernel_distance"))
    assert "fid" not in result and result["feature_distance_name"] == "feature distance (our encoder)"
    assert "random conv net" in result["feature_network"]


def test_synthesize_dataset_adds_to_a_folder_but_never_replaces_its_pairs(run, pairs, tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "2", "--out", str(out),
                 "--model", str(run)]) == 0
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "3", "--out", str(out),
                 "--model", str(run)]) == 2
    assert "already holds 2 of the pairs seed 0 makes" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    assert main(["synthesize-dataset", "--masks-from", str(pairs), "--n", "1", "--out", str(out),
                 "--model", str(run), "--seed", "7"]) == 0
    assert len(PairFolder.open(out).records()) == 3


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="kills forked children")
def test_synthesize_dataset_killed_at_each_write_step_leaves_nothing_mislabelled(run, pairs, tmp_path):
    """kill -9 before each file replacement of `lvseg synthesize-dataset`: the folder stays readable, no pair in
    it ever reads as real (a pair whose line came after its files did), and the next run leaves no temp file and
    no unfinished pair behind."""
    import warnings

    from fault_injection import TEMP, drive

    from napari_lvseg.errors import LvsegWarning

    common = ["--masks-from", str(pairs), "--model", str(run), "--threads", "1"]
    assert main(["synthesize-dataset", *common, "--n", "1", "--seed", "9", "--out", str(tmp_path / "template")]) == 0
    argv = ["synthesize-dataset", *common, "--n", "2", "--seed", "0", "--out", "{out}"]
    killed = drive("cli-template", tmp_path, argv)
    assert killed == list(range(1, 7))   # two pairs, each a manifest line, an image and a mask
    expected = {"synthetic_s9_00000", "synthetic_s0_00000", "synthetic_s0_00001"}
    for n in killed:
        out = tmp_path / f"k{n}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            folder = PairFolder.open(out)
            records = folder.records()
            for record in records:
                image, mask = folder.read(record["name"])
                assert image.shape == mask.shape
        assert {r["origin"] for r in records} == {"synthetic"}, (n, records)
        assert {r["name"] for r in records} <= expected and "synthetic_s9_00000" in {r["name"] for r in records}
        assert all(issubclass(w.category, LvsegWarning) for w in caught)
        left = [p for p in (out, out / "images", out / "masks") for p in p.iterdir() if TEMP.fullmatch(p.name)]
        assert left, n   # each kill came between a temp file and its rename
    for n in killed:   # the next run into each folder: what the kill left is cleared, the pairs before it kept
        out = tmp_path / f"k{n}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LvsegWarning)
            records = PairFolder(out).records()
        assert main(["synthesize-dataset", *common, "--n", "1", "--seed", "1", "--out", str(out)]) == 0
        folder = PairFolder.open(out)
        assert folder.incomplete() == [] and {r["origin"] for r in folder.records()} == {"synthetic"}
        assert {r["name"] for r in folder.records()} == {r["name"] for r in records} | {"synthetic_s1_00000"}
        assert [p.name for p in (out, out / "images", out / "masks") for p in p.iterdir()
                if p.name.startswith(".")] == []
        names = {p.name.split(".")[0] for p in (out / "images").iterdir()}
        assert names == {p.name.split(".")[0] for p in (out / "masks").iterdir()} == set(folder.names())


# -- context-preserving synthesis: --context, --donors --------------------------------------------
@pytest.fixture(scope="module")
def context_run(pairs, tmp_path_factory):
    from napari_lvseg.engine import TrainOptions, train

    out = tmp_path_factory.mktemp("runs") / "context"
    list(train(TrainOptions(task="synthesis", data=[str(pairs)], out=str(out), epochs=1, samples_per_epoch=2,
                            batch_size=2, width=4, disc_width=8, threads=1, device="cpu", context_inpaint=True)))
    return out


def _nifti(path, zyx, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(zyx).transpose(2, 1, 0), np.eye(4) if affine is None else affine), str(path))
    return path


def _read(path):
    return np.asarray(nib.load(str(path)).dataobj).transpose(2, 1, 0)


def test_synthesize_with_context_keeps_every_pixel_outside_the_lv_region(context_run, mask_nifti, tmp_path):
    from napari_lvseg.synthesis import region_slices

    path, labels, affine = mask_nifti
    image, own = make_phantom(n_slices=2, seed=9)
    image = image + np.random.default_rng(0).normal(0, 300, image.shape)   # grainier than the tiny generator
    context = _nifti(tmp_path / "context.nii.gz", image.astype(np.float32), affine)
    own_path = _nifti(tmp_path / "own.nii.gz", own, affine)
    out = tmp_path / "image.nii.gz"
    assert main(["synthesize", str(path), "-o", str(out), "--model", str(context_run), "--context", str(context),
                 "--context-labels", str(own_path)]) == 0
    data, region = _read(out), region_slices(labels, own)
    assert data.shape == labels.shape and np.allclose(nib.load(str(out)).affine, affine)
    assert np.array_equal(data[~region], image.astype(np.float32)[~region])
    assert not np.array_equal(data[region], image.astype(np.float32)[region])
    smooth = tmp_path / "smooth.nii.gz"
    assert main(["synthesize", str(path), "-o", str(smooth), "--model", str(context_run), "--context", str(context),
                 "--context-labels", str(own_path), "--no-grain"]) == 0
    expected = synthesize(labels, str(context_run), context=image.astype(np.float32), context_labels=own, grain=False)
    assert np.allclose(_read(smooth), expected) and not np.allclose(_read(smooth), data)   # grain by default


def test_synthesize_fill_changes_redraws_only_the_edited_pixels(context_run, tmp_path):
    from scipy import ndimage as ndi

    image, own = make_phantom(n_slices=2, seed=9)
    edited = own.copy()
    edited[1][(own[1] == 2) & (np.arange(128)[None, :] < 50)] = 3     # an infarct drawn into slice 1's wall
    paths = [_nifti(tmp_path / f"{n}.nii.gz", a) for n, a in (("image", image.astype(np.float32)), ("own", own),
                                                                ("edited", edited))]
    out = tmp_path / "what_if.nii.gz"
    assert main(["synthesize", str(paths[2]), "-o", str(out), "--model", str(context_run), "--context",
                 str(paths[0]), "--context-labels", str(paths[1]), "--fill", "changes"]) == 0
    data, changed = _read(out), edited != own
    near = ndi.binary_dilation(changed, structure=np.ones((1, 3, 3)), iterations=3)
    assert changed.any() and np.array_equal(data[~near], image.astype(np.float32)[~near])
    assert np.array_equal(data[0], image[0].astype(np.float32)) and (data[changed] != image[changed]).all()


def test_synthesize_with_donors_takes_the_nearest_lv(context_run, pairs, tmp_path, capsys):
    from napari_lvseg.data.simulator import draw_lv_ring
    from napari_lvseg.synthesis import donor_contexts, read_donors, region_slices

    ring = draw_lv_ring((128, 128), (60, 64), 16, 7)
    tifffile.imwrite(tmp_path / "drawn.tif", ring)
    out = tmp_path / "image.tif"
    assert main(["synthesize", str(tmp_path / "drawn.tif"), "-o", str(out), "--model", str(context_run),
                 "--donors", str(pairs)]) == 0
    context, context_labels, names = donor_contexts(ring, read_donors(pairs))
    assert f"donor: {names[0]}" in capsys.readouterr().out
    image, region = tifffile.imread(out), region_slices(ring[None], context_labels[None])[0]
    assert image.shape == ring.shape and np.array_equal(image[~region], context[~region])
    assert main(["synthesize", str(tmp_path / "drawn.tif"), "-o", str(tmp_path / "other.tif"),
                 "--model", str(context_run), "--donors", str(pairs), "--donor", "1"]) == 0
    assert f"donor: {donor_contexts(ring, read_donors(pairs), 1)[2][0]}" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (lambda ctx, pairs: ["--context", str(ctx)], "fills in"),                       # labels-only model + context
    (lambda ctx, pairs: ["--context", str(ctx), "--donors", str(pairs)], "not both"),
    (lambda ctx, pairs: ["--context-labels", str(ctx)], "needs --context"),
    (lambda ctx, pairs: ["--context", str(ctx), "--fill", "changes"], "--fill changes needs"),
])
def test_context_options_are_checked_in_one_line(run, context_run, mask_nifti, pairs, tmp_path, capsys, extra,
                                                 message):
    path, labels, _ = mask_nifti
    ctx = _nifti(tmp_path / "ctx.nii.gz", make_phantom(n_slices=2, seed=1)[0].astype(np.float32))
    model = run if message == "fills in" else context_run
    assert main(["synthesize", str(path), "-o", str(tmp_path / "x.nii.gz"), "--model", str(model),
                 *extra(ctx, pairs)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and (message in err or "takes no context" in err)
    assert not (tmp_path / "x.nii.gz").exists()


def test_a_context_of_another_shape_is_named(context_run, mask_nifti, tmp_path, capsys):
    path, labels, _ = mask_nifti
    ctx = _nifti(tmp_path / "small.nii.gz", np.zeros((2, 64, 64), np.float32))
    assert main(["synthesize", str(path), "-o", str(tmp_path / "x.nii.gz"), "--model", str(context_run),
                 "--context", str(ctx)]) == 2
    err = capsys.readouterr().err.strip()
    assert "small.nii.gz" in err and "shape" in err and len(err.splitlines()) == 1
