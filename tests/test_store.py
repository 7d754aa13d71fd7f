"""Model store: cards, save/load round trips, safe loading, error messages, registry."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import NAMES
from napari_lvseg.models import card as card_io, registry, weights as weights_io
from napari_lvseg.models.attention_res_unet import AttentionResUNet
from napari_lvseg.models.card import ModelCard, read_card
from napari_lvseg.models.pix2pix import Pix2PixGenerator
from napari_lvseg.models.registry import default_model_name, list_models, load_model, register_model, resolve
from napari_lvseg.models.weights import build_model, save_model

torch.set_num_threads(1)
SEG_PARAMS = dict(base_width=4, depth=2)


class Custom:  # a custom class: pickles holding it must never be loaded
    def __init__(self):
        self.weights = [1.0, 2.0]


class Payload:  # a pickle that would run code when loaded
    def __reduce__(self):
        return (print, ("this must never run",))


class BlockedModule:  # a call into a module torch blocks outright (torch words that refusal differently)
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def seg_card(name="seg", **kwargs) -> ModelCard:
    return ModelCard(name=name, task="segmentation", architecture="AttentionResUNet",
                     params=dict(SEG_PARAMS), **kwargs)


@pytest.fixture
def seg_dir(tmp_path):
    torch.manual_seed(0)
    model = AttentionResUNet(**SEG_PARAMS)
    directory = tmp_path / "seg"
    save_model(directory, model, seg_card())
    return directory, model.eval()


def x16():
    torch.manual_seed(1)
    return torch.randn(1, 1, 16, 16)


# ------------------------------------------------------------------------------------------ cards

def test_card_json_round_trip_keeps_unknown_keys():
    card = seg_card(metrics={"dice": {"cavity": 0.9}}, untrained=True)
    data = json.loads(card.to_json())
    data["default"] = True
    data["future_field"] = [1, 2]
    back = ModelCard.from_json(json.dumps(data))
    assert back.extra == {"default": True, "future_field": [1, 2]} and back.is_default
    assert back.classes == NAMES and back.untrained and back.metrics == {"dice": {"cavity": 0.9}}
    assert json.loads(back.to_json()) == data
    assert card.normalization == {"method": "percentile", "low": 1, "high": 99, "per": "slice"}


def test_card_missing_required_key_names_file(tmp_path):
    path = tmp_path / "card.json"
    path.write_text(json.dumps({"name": "x", "architecture": "AttentionResUNet"}))
    with pytest.raises(LvsegError, match=r"card\.json: model card lacks required key\(s\): task") as info:
        read_card(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_build_model_unknown_architecture():
    with pytest.raises(LvsegError, match="unknown architecture 'Nope'"):
        build_model("Nope", {})


# ------------------------------------------------------------------------------------- save/load

def test_save_load_round_trip_equal_outputs(seg_dir):
    directory, model = seg_dir
    assert sorted(p.name for p in directory.iterdir()) == ["card.json", "model.safetensors"]
    loaded, card = load_model(directory, task="segmentation")
    assert card.name == "seg" and card.params == SEG_PARAMS and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x16()), model(x16()))


def test_load_safetensors_file_and_pt_state_dict(seg_dir):
    directory, model = seg_dir
    loaded, _ = load_model(directory / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(loaded(x16()), model(x16()))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, directory / "last.pt")
    loaded, _ = load_model(directory / "last.pt")
    with torch.no_grad():
        assert torch.equal(loaded(x16()), model(x16()))


def test_half_precision_round_trip_close(tmp_path):
    torch.manual_seed(0)
    model = AttentionResUNet(**SEG_PARAMS).eval()
    save_model(tmp_path / "half", model, seg_card(), half=True)
    with safe_open(str(tmp_path / "half" / "model.safetensors"), "pt") as stored:
        assert stored.get_tensor("stem.conv1.weight").dtype == torch.float16
    loaded, _ = load_model(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    with torch.no_grad():
        expected, got = model(x16()), loaded(x16())
    assert not torch.equal(expected, got)  # it really was rounded
    torch.testing.assert_close(got, expected, atol=2e-2, rtol=1e-2)


@pytest.mark.parametrize("payload", [Custom, Payload, BlockedModule])
def test_pickled_custom_object_refused(seg_dir, payload, capsys):
    directory, model = seg_dir
    path = directory / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"weights": payload()}, fh, protocol=2)
    with pytest.raises(LvsegError, match=r"evil\.pt: refused: the file holds objects other than tensors") as info:
        load_model(path)
    assert "\n" not in str(info.value)
    assert "must never run" not in capsys.readouterr().out


def test_a_plain_pickle_is_refused_in_one_line_without_torchs_warning(seg_dir, capsys):
    import warnings

    directory, _ = seg_dir
    with open(directory / "plain.pt", "wb") as fh:
        pickle.dump({"weights": Payload()}, fh, protocol=4)   # pickle's default; torch warns about it
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a warning would be a second, confusing message
        with pytest.raises(LvsegError, match=r"plain\.pt: refused: a plain pickle, not a PyTorch weights file"):
            load_model(directory / "plain.pt")
    assert "must never run" not in capsys.readouterr().out


def test_garbage_pt_file_error(seg_dir):
    directory, _ = seg_dir
    (directory / "junk.pth").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(LvsegError, match=r"junk\.pth: not a readable PyTorch weights file"):
        load_model(directory / "junk.pth")


def test_corrupt_weights_error_names_file(seg_dir):
    directory, _ = seg_dir
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(LvsegError, match=r"model\.safetensors: not a readable safetensors file") as info:
        load_model(directory)
    assert str(info.value).startswith(str(weights)) and "\n" not in str(info.value)


def test_corrupt_card_error_names_file(seg_dir):
    directory, _ = seg_dir
    (directory / "card.json").write_text("{not json")
    with pytest.raises(LvsegError, match=r"card\.json: model card is not valid JSON"):
        load_model(directory)


@pytest.mark.parametrize("change, words", [
    ({"architecture": ["AttentionResUNet"]}, "field 'architecture' must be a string"),
    ({"input_size": "abc"}, "field 'input_size' must be a whole number"),
    ({"input_size": 0}, "field 'input_size' must be a whole number"),
    ({"postprocess": "x"}, "field 'postprocess' must be an object"),
    ({"normalization": {"low": "x"}}, "normalization 'low' must be a percentile 0..100"),
    ({"normalization": {"high": 150}}, "normalization 'high' must be a percentile 0..100"),
    ({"normalization": {"intensity_range": "abc"}}, "'intensity_range' must be two numbers"),
    ({"input_size": 100, "params": {"depth": 4}}, "'input_size' 100 must be divisible by 2**depth = 16"),
    ({"metrics": 5}, "field 'metrics' must be an object"),
    ({"params": {**SEG_PARAMS, "depth": 50}}, "params 'depth' must be a whole number 1..8, not 50"),
    ({"params": {**SEG_PARAMS, "base_width": 100000}}, "params 'base_width' must be a whole number 1..256"),
    ({"params": {**SEG_PARAMS, "base_width": -3}}, "params 'base_width' must be a whole number 1..256, not -3"),
    ({"params": {**SEG_PARAMS, "base_width": 256, "depth": 8}}, "deepest layer of 32768 channels, more than 2048"),
    ({"input_size": 100000}, "field 'input_size' 100000 is outside 16..2048 pixels"),
    ({"normalization": {"low": 99, "high": 1}}, "normalization 'low' (99) must be below 'high' (1)"),
    ({"normalization": {"method": "zscore"}}, "normalization 'method' must be 'percentile', not 'zscore'"),
    ({"normalization": {"per": "volume"}}, "normalization 'per' must be 'slice', not 'volume'"),
    ({"postprocess": {"min_infarct_voxels": "lots"}}, "post-processing min_infarct_voxels must be a number of voxels"),
    ({"postprocess": {"min_no_reflow_voxels": -5}}, "post-processing min_no_reflow_voxels must be a number of voxels"),
    ({"postprocess": {"largest_component": "yes"}}, "post-processing largest_component must be true or false"),
    ({"postprocess": {"infarct_weight": float("nan")}}, "post-processing class weights must be positive numbers"),
    ({"architecture": "SegmentationEnsemble", "params": {"members": [{"architecture": "AttentionResUNet"}]}},
     "ensemble member 1 needs an 'architecture' name and 'params'"),
    ({"architecture": "SegmentationEnsemble", "input_size": 100, "params": {"members": [
        {"architecture": "AttentionResUNet", "params": {"depth": 2}},
        {"architecture": "AttentionResUNet", "params": {"depth": 4}}]}},
     "'input_size' 100 must be divisible by 2**depth = 16 (ensemble member 2)"),
])
def test_card_values_of_the_wrong_kind_are_reported_when_the_card_is_read(seg_dir, change, words):
    directory, _ = seg_dir
    card = json.loads((directory / "card.json").read_text())
    (directory / "card.json").write_text(json.dumps({**card, **change}))
    with pytest.raises(LvsegError, match=r"card\.json: model card ") as info:
        load_model(directory)
    assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="a memory limit set in the child (POSIX)")
@pytest.mark.parametrize("change", [{"depth": 50}, {"base_width": 100000}, {"base_width": 256, "depth": 8}])
def test_a_card_that_would_exhaust_memory_is_refused_under_a_memory_limit(seg_dir, tmp_path, change):
    """`lvseg segment` with a card asking for a network no machine holds, run under a 4 GB address-space limit
    (the issue's depth-50 card ran into the out-of-memory killer at 24 GB): one line naming the card, exit 2,
    before anything is built."""
    import resource
    import subprocess
    import sys

    directory, _ = seg_dir
    card = json.loads((directory / "card.json").read_text())
    card["params"] = {**card["params"], **change}
    (directory / "card.json").write_text(json.dumps(card))
    image = tmp_path / "image.tif"
    import tifffile

    tifffile.imwrite(image, np.random.default_rng(0).random((2, 64, 64), dtype=np.float32))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    run = subprocess.run([sys.executable, "-m", "napari_lvseg.cli", "segment", str(image), "-o",
                          str(tmp_path / "labels.tif"), "--model", str(directory)], preexec_fn=limit,
                         capture_output=True, text=True, timeout=300)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-1000:]
    assert "card.json: model card" in lines[0] and "Traceback" not in run.stderr
    assert not (tmp_path / "labels.tif").exists()


@pytest.mark.parametrize("spoil, words", [
    (lambda t: torch.full_like(t, float("nan")), "weights hold NaN or infinite values"),
    (lambda t: t.to(torch.int32), "weights stored as int32, not floating point"),
])
def test_weights_that_cannot_be_right_are_refused(seg_dir, spoil, words):
    from safetensors.torch import load_file, save_file

    directory, _ = seg_dir
    state = load_file(directory / "model.safetensors")
    save_file({k: spoil(v) if v.is_floating_point() else v for k, v in state.items()}, directory / "model.safetensors")
    with pytest.raises(LvsegError, match="model.safetensors: ") as info:
        load_model(directory)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_a_training_checkpoint_is_refused_with_the_run_folder_to_pass_instead(seg_dir):
    from napari_lvseg.engine.checkpoint import save_checkpoint

    directory, model = seg_dir   # a run folder: the model, and the checkpoint beside it
    save_checkpoint(directory / "last.pt", {"task": {"model": model.state_dict()}, "epoch": 1})
    with pytest.raises(LvsegError, match=r"last\.pt: is a training checkpoint, not a model: pass its run folder "
                                         rf"\({directory}\)"):
        load_model(directory / "last.pt")


def test_missing_card_error(tmp_path, seg_dir):
    directory, _ = seg_dir
    (directory / "card.json").unlink()
    with pytest.raises(LvsegError, match=r"seg: not a model directory \(no card\.json\)"):
        load_model(directory)
    with pytest.raises(LvsegError, match=r"model\.safetensors: no card\.json beside"):
        load_model(directory / "model.safetensors")


def test_wrong_shapes_error(seg_dir):
    directory, _ = seg_dir
    card = read_card(directory)
    card.params["base_width"] = 8  # the weights were saved for base_width 4
    (directory / "card.json").write_text(card.to_json())
    with pytest.raises(LvsegError, match=r"model\.safetensors: weights do not fit AttentionResUNet: .*"
                                         r"shape mismatch\(es\) \(e\.g\. stem\.conv1\.weight: "
                                         r"file \(4, 1, 3, 3\) vs model \(8, 1, 3, 3\)\)") as info:
        load_model(directory)
    assert "\n" not in str(info.value)


def test_missing_keys_error(tmp_path, seg_dir):
    directory, model = seg_dir
    state = dict(model.state_dict())
    state.pop("head.bias")
    torch.save(state, directory / "partial.pt")
    with pytest.raises(LvsegError, match=r"partial\.pt: weights do not fit .*1 missing tensor\(s\) "
                                         r"\(e\.g\. head\.bias\)"):
        load_model(directory / "partial.pt")


def test_task_mismatch_error(tmp_path):
    generator = Pix2PixGenerator(base_width=2, depth=3)
    card = ModelCard(name="syn", task="synthesis", architecture="Pix2PixGenerator")
    save_model(tmp_path / "syn", generator, card)
    assert read_card(tmp_path / "syn").params == generator.architecture_params()  # filled in from the model
    with pytest.raises(LvsegError, match=r"syn: is a synthesis model \(syn\); a segmentation model is needed"):
        load_model(tmp_path / "syn", task="segmentation")
    loaded, _ = load_model(tmp_path / "syn", task="synthesis")
    assert isinstance(loaded, Pix2PixGenerator)


def test_unknown_ref_error(models_dir):
    with pytest.raises(LvsegError, match="no-such-model: no such file, folder or registered model"):
        load_model("no-such-model")


# ------------------------------------------------------------------------------------------ registry

def test_registry_lists_user_models(models_dir, seg_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "no-bundled")
    directory, model = seg_dir
    assert registry.user_models_dir() == models_dir
    assert list_models() == [] and default_model_name("segmentation") is None
    path = register_model(directory, name="my-seg")
    assert path == models_dir / "my-seg"
    assert sorted(p.name for p in path.iterdir()) == ["card.json", "model.safetensors"]
    save_model(tmp_path / "syn", Pix2PixGenerator(base_width=2, depth=3),
               ModelCard(name="syn", task="synthesis", architecture="Pix2PixGenerator"))
    register_model(tmp_path / "syn")
    assert register_model(tmp_path / "syn", name="my-seg", unique=True).name == "my-seg-2"   # never replaces
    assert register_model(tmp_path / "syn", unique=True).name == "syn-2"
    assert registry.free_model_name("fresh") == "fresh"
    for extra in ("my-seg-2", "syn-2"):
        shutil.rmtree(models_dir / extra)
    entries = list_models()
    assert [(e.name, e.task, e.source) for e in entries] == [("my-seg", "segmentation", "user"),
                                                            ("syn", "synthesis", "user")]
    assert [e.name for e in list_models("synthesis")] == ["syn"]
    assert default_model_name("segmentation") == "my-seg"
    assert resolve("my-seg") == path
    loaded, card = load_model("my-seg", task="segmentation")
    assert card.name == "my-seg"
    with torch.no_grad():
        assert torch.equal(loaded(x16()), model(x16()))
    loaded, _ = load_model(None, task="synthesis")  # default of the task
    assert isinstance(loaded, Pix2PixGenerator)


def test_broken_dirs_skipped(models_dir, seg_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "no-bundled")
    directory, _ = seg_dir
    register_model(directory, name="good")
    broken = models_dir / "broken"
    broken.mkdir()
    (broken / "card.json").write_text("{garbage")
    (broken / "model.safetensors").write_bytes(b"")
    (models_dir / "no-weights").mkdir()
    (models_dir / "no-weights" / "card.json").write_text(seg_card().to_json())
    (models_dir / "stray.txt").write_text("not a model")
    assert [e.name for e in list_models()] == ["good"]


def test_default_prefers_bundled_default_flag(models_dir, seg_dir, tmp_path, monkeypatch):
    bundled = tmp_path / "bundled"
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    directory, model = seg_dir
    for name, default in (("a-first", False), ("b-default", True)):
        card = seg_card(name=name)
        if default:
            card.extra["default"] = True
        save_model(bundled / name, model, card, half=True)
    register_model(directory, name="0-user")
    assert [e.source for e in list_models()] == ["bundled", "bundled", "user"]
    assert default_model_name("segmentation") == "b-default"
    assert default_model_name("synthesis") is None
    with pytest.raises(LvsegError, match="no synthesis model installed"):
        resolve(None, "synthesis")


def test_register_replaces_existing(models_dir, seg_dir):
    directory, _ = seg_dir
    register_model(directory, name="m")
    card = read_card(directory)
    card.notes = "second version"
    (directory / "card.json").write_text(card.to_json())
    register_model(directory, name="m")
    assert read_card(models_dir / "m").notes == "second version"
    assert [p.name for p in models_dir.iterdir()] == ["m"]  # no staging leftovers
    with pytest.raises(LvsegError, match="invalid model name"):
        register_model(directory, name="../escape")


def test_large_weights_are_sharded_and_load_register_and_resave_whole(models_dir, tmp_path, monkeypatch):
    def big_card():  # params filled in from the model
        return ModelCard(name="big", task="segmentation", architecture="AttentionResUNet")

    monkeypatch.setattr(weights_io, "SHARD_BYTES", 20_000)
    torch.manual_seed(0)
    model = AttentionResUNet(base_width=8, depth=2).eval()  # ~0.2 MB of float32: about ten shards
    save_model(tmp_path / "big", model, big_card())
    files = sorted(p.name for p in (tmp_path / "big").glob("model*.safetensors"))
    assert len(files) > 3 and all((tmp_path / "big" / f).stat().st_size < 60_000 for f in files)
    loaded, _ = load_model(tmp_path / "big")
    with torch.no_grad():
        assert torch.equal(loaded(x16()), model(x16()))
    assert sorted(p.name for p in register_model(tmp_path / "big", name="big").glob("model*")) == files
    load_model(models_dir / "big")

    monkeypatch.setattr(weights_io, "SHARD_BYTES", 10**9)  # re-saved in one file: the old shards go
    save_model(tmp_path / "big", model, big_card())
    assert [p.name for p in (tmp_path / "big").glob("model*")] == ["model.safetensors"]

    monkeypatch.setattr(weights_io, "SHARD_BYTES", 20_000)
    save_model(tmp_path / "big", model, big_card())
    shard = weights_io.weight_files(tmp_path / "big" / "model.safetensors")[2]
    shard.unlink()
    with pytest.raises(LvsegError, match=f"shard {shard.name} is missing"):
        load_model(tmp_path / "big")


def test_an_interrupted_sharded_save_leaves_the_old_model_whole(tmp_path, monkeypatch):
    from safetensors import torch as safetensors_torch

    monkeypatch.setattr(weights_io, "SHARD_BYTES", 20_000)
    card = ModelCard(name="big", task="segmentation", architecture="AttentionResUNet")
    torch.manual_seed(0)
    old = AttentionResUNet(base_width=8, depth=2).eval()
    save_model(tmp_path / "big", old, card)
    torch.manual_seed(1)
    new = AttentionResUNet(base_width=8, depth=2).eval()
    real_save = safetensors_torch.save

    def killed_at_the_main_file(tensors, metadata=None):
        if "shards" in (metadata or {}):
            raise KeyboardInterrupt   # the shards are on disk, model.safetensors is not replaced
        return real_save(tensors, metadata=metadata)

    monkeypatch.setattr(safetensors_torch, "save", killed_at_the_main_file)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "big", new, card)
    loaded, _ = load_model(tmp_path / "big")
    with torch.no_grad():
        assert torch.equal(loaded(x16()), old(x16()))


@pytest.mark.parametrize("killed_before", ["weights", "card"])
def test_an_interrupted_save_keeps_card_and_weights_together(tmp_path, monkeypatch, killed_before):
    """Killed before the new weights are in place: the old model, old card. Killed after them but before the card's
    rename: the new model, new card (read from the pending card). Never one's weights with the other's card."""
    from safetensors import torch as safetensors_torch

    torch.manual_seed(0)
    old = AttentionResUNet(base_width=4, depth=2).eval()
    save_model(tmp_path / "m", old, ModelCard(name="m", task="segmentation", architecture="", notes="old"))
    torch.manual_seed(1)
    new = AttentionResUNet(base_width=6, depth=2).eval()   # another width: a card of the other save cannot load it
    real_save, real_replace = safetensors_torch.save, os.replace

    def save(tensors, metadata=None):
        if killed_before == "weights":
            raise KeyboardInterrupt
        return real_save(tensors, metadata=metadata)

    def replace(src, dst):
        if killed_before == "card" and Path(dst).name == "card.json":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(safetensors_torch, "save", save)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save_model(tmp_path / "m", new, ModelCard(name="m", task="segmentation", architecture="", notes="new"))
    monkeypatch.undo()
    assert len(list((tmp_path / "m").glob("card-*.json"))) == 1   # the interrupted save's card, not yet in place
    loaded, card = load_model(tmp_path / "m")
    expected = old if killed_before == "weights" else new
    assert card.notes == ("old" if killed_before == "weights" else "new")
    with torch.no_grad():
        assert torch.equal(loaded(x16()), expected(x16()))
    assert card_io.read_card(tmp_path / "m").notes == card.notes
    assert len(list((tmp_path / "m").glob("card-*.json"))) == 1   # reading moves nothing: a save may be under way
    save_model(tmp_path / "m", expected, card)                     # the next save tidies up
    assert sorted(f.name for f in (tmp_path / "m").iterdir()) == ["card.json", "model.safetensors"]
    assert card_io.read_card(tmp_path / "m").notes == card.notes


def _saved_unet(directory, width, seed, normalization=None):
    from napari_lvseg.models.attention_res_unet import AttentionResUNet

    torch.manual_seed(seed)
    net = AttentionResUNet(base_width=width, depth=3).eval()
    card = ModelCard(name=directory.name, task="segmentation", architecture="AttentionResUNet",
                     params=net.architecture_params(), licence="CC BY-NC-SA 4.0", input_size=32)
    if normalization:
        card.normalization = normalization
    save_model(directory, net, card)
    return net


def test_ensemble_averages_member_probabilities_and_round_trips(tmp_path):
    from napari_lvseg.inference import segment
    from napari_lvseg.models.ensemble import combine

    a, b = _saved_unet(tmp_path / "a", 4, 0), _saved_unet(tmp_path / "b", 6, 1)  # widths may differ
    net, card = combine([tmp_path / "a", tmp_path / "b"], "pair")
    save_model(tmp_path / "pair", net, card, half=False)
    loaded, loaded_card = load_model(tmp_path / "pair", task="segmentation")
    assert loaded_card.architecture == "SegmentationEnsemble" and len(loaded.members) == 2
    assert [m["source"] for m in loaded_card.training["ensemble_of"]] == [str(tmp_path / "a"), str(tmp_path / "b")]
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = (torch.softmax(a(x), 1) + torch.softmax(b(x), 1)) / 2
        got = torch.softmax(loaded(x), 1)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, torch.softmax(a(x), 1), atol=1e-3)  # both members count
    labels = segment(np.random.default_rng(0).random((2, 32, 32)).astype(np.float32), (loaded, loaded_card)).labels
    assert labels.shape == (2, 32, 32) and labels.dtype == np.uint8


def test_an_ensemble_of_fold_models_expects_the_median_lv_size_of_its_members():
    """Fold models each record their own training cases' LV size; the ensemble zooms to their median. Members read
    at different pixel sizes (or one recording none) leave the ensemble without an expectation."""
    from napari_lvseg.models.ensemble import combined_expectation

    def fold(d, low, high, mm=None):
        return {"lv_diameter_px": d, "lv_diameter_range_px": [low, high], "pixel_size_mm": mm, "measure": "m"}

    same = fold(69.7, 60.6, 78.4)
    assert combined_expectation([same, dict(same)]) == same
    got = combined_expectation([fold(69.7, 60.6, 78.4), fold(68.7, 59.8, 78.4), fold(69.8, 61.2, 78.5)])
    assert got["lv_diameter_px"] == 69.7 and got["lv_diameter_range_px"] == [60.6, 78.4]
    assert got["pixel_size_mm"] is None and "median" in got["measure"]
    assert combined_expectation([fold(70, 60, 80, 1.4), fold(70, 60, 80, 2.0)]) is None
    assert combined_expectation([same, None]) is None


def test_ensemble_refuses_members_that_read_images_differently(tmp_path):
    from napari_lvseg.models.ensemble import combine

    _saved_unet(tmp_path / "a", 4, 0)
    _saved_unet(tmp_path / "b", 4, 1, normalization={"method": "percentile", "low": 2, "high": 98})
    with pytest.raises(LvsegError, match="normalisation or input size differs"):
        combine([tmp_path / "a", tmp_path / "b"], "bad")


def test_ensemble_mixes_2d_and_2_5d_members_each_reading_its_own_channels(tmp_path):
    from napari_lvseg.data.normalize import model_context
    from napari_lvseg.models.attention_res_unet import AttentionResUNet
    from napari_lvseg.models.ensemble import combine

    flat = _saved_unet(tmp_path / "flat", 4, 0)
    torch.manual_seed(1)
    deep = AttentionResUNet(in_channels=3, base_width=4, depth=3).eval()
    save_model(tmp_path / "deep", deep, ModelCard(name="deep", task="segmentation", architecture="AttentionResUNet",
                                                  params=deep.architecture_params(), input_size=32))
    net, card = combine([tmp_path / "flat", tmp_path / "deep"], "mixed")
    assert model_context(net) == 1 and model_context(flat) == 0 and model_context(deep) == 1
    x = torch.randn(2, 3, 32, 32)  # a slice (channel 1) between its two neighbours
    with torch.no_grad():
        expected = (torch.softmax(flat(x[:, 1:2]), 1) + torch.softmax(deep(x), 1)) / 2
        assert torch.allclose(torch.softmax(net(x), 1), expected, atol=1e-5)


def test_a_scan_puts_back_a_model_a_killed_registration_swapped_out(models_dir, seg_dir, tmp_path, monkeypatch):
    from napari_lvseg.io.lock import FolderLock

    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "no-bundled")
    registry.register_model(seg_dir[0], name="m")
    # killed between the swap's two renames: the old model in its hidden folder, the new copy beside it
    (models_dir / ".m.old.abcd1234").mkdir()
    os.replace(models_dir / "m", models_dir / ".m.old.abcd1234" / "m")
    shutil.copytree(models_dir / ".m.old.abcd1234" / "m", models_dir / ".m.zz_9y8x7")
    with FolderLock(models_dir, "user model folder"):   # a registration under way elsewhere: its folders are live
        assert registry.list_models() == []
        assert (models_dir / ".m.zz_9y8x7").is_dir()
    assert [e.name for e in registry.list_models()] == ["m"]
    registry.load_model("m")
    assert sorted(p.name for p in models_dir.iterdir()) == ["m"]
