"""The regions head (issue 30 item 5): one sigmoid per nested region (LV, myocardium, infarct, no-reflow), converted
into the 5 classes' probabilities by models/heads.py wherever a network's output is read; the softmax head exactly as
before."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_engine import options
from torch import nn

from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.engine import TrainOptions, train
from napari_lvseg.engine.schema import OptionError
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import CAVITY, MYOCARDIUM
from napari_lvseg.models.attention_res_unet import AttentionResUNet
from napari_lvseg.models.heads import (
    HEADS,
    labels_of,
    out_channels,
    probabilities,
    region_targets,
    to_probabilities,
)


def _logits_for(labels: torch.Tensor, strength: float = 8.0) -> torch.Tensor:
    """Confident region logits (N, 4, H, W) for labels (N, H, W): +strength inside each nested region, - outside."""
    return (region_targets(labels) * 2.0 - 1.0) * strength


# -- the conversion ----------------------------------------------------------------------------------------------
def test_regions_probabilities_are_non_negative_sum_to_one_and_nested():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 16, 16) * 4   # random: r2 > r1 in many pixels, which the cumulative minimum fixes
    prob = to_probabilities(logits, "regions")
    assert prob.shape == (3, 5, 16, 16) and (prob >= 0).all()
    assert torch.allclose(prob.sum(1), torch.ones(3, 16, 16), atol=1e-6)
    regions = torch.sigmoid(logits)
    inside = prob.flip(1).cumsum(1).flip(1)[:, 1:]   # P(label >= k), k = 1..4: the nested region probabilities
    assert (inside[:, :-1] >= inside[:, 1:] - 1e-6).all()
    assert torch.allclose(inside, torch.cummin(regions, 1).values, atol=1e-6)
    assert torch.allclose(inside[:, 0], regions[:, 0], atol=1e-6)   # LV = sigmoid of its own logit
    # where the regions are nested already, no-reflow is its own sigmoid too
    nested = (regions[:, 3] <= regions[:, 2]) & (regions[:, 2] <= regions[:, 1]) & (regions[:, 1] <= regions[:, 0])
    assert torch.allclose(prob[:, 4][nested], regions[:, 3][nested])


def test_confident_region_logits_give_the_intended_labels():
    _, truth = make_phantom(n_slices=2, size=64, seed=1)
    truth = torch.from_numpy(truth.astype(np.int64))
    assert set(truth.unique().tolist()) >= {0, 1, 2, 3}
    logits = _logits_for(truth)
    net = AttentionResUNet(out_channels=4, head="regions", base_width=2, depth=1)
    assert torch.equal(to_probabilities(logits, "regions").argmax(1), truth)
    assert torch.equal(labels_of(net, logits), truth)
    assert torch.equal(labels_of(net, [logits, torch.zeros_like(logits)]), truth)   # deep supervision: main output
    # raw argmax of the region logits would be wrong: inside the LV several regions are "on", the first wins
    assert not torch.equal(logits.argmax(1), truth)
    # one pixel: LV and myocardium on, infarct and no-reflow off -> myocardium; myocardium's logit above the LV's does
    # not make the wall bigger than the LV (the cumulative minimum)
    pixel = torch.tensor([5.0, 6.0, -5.0, -5.0]).view(1, 4, 1, 1)
    assert labels_of(net, pixel).item() == MYOCARDIUM and pixel.argmax(1).item() == CAVITY


def test_region_targets_are_the_nested_masks():
    labels = torch.tensor([[[0, 1, 2, 3, 4]]])
    expected = torch.tensor([[0, 1, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 1]], dtype=torch.float32)
    assert torch.equal(region_targets(labels)[0, :, 0], expected)
    assert torch.equal(region_targets(labels[:, None]), region_targets(labels))   # (N, 1, H, W) too


def test_the_softmax_head_is_exactly_softmax_and_argmax():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, 8, 8)
    net = AttentionResUNet(base_width=2, depth=1)
    assert torch.equal(to_probabilities(logits), torch.softmax(logits, dim=1))
    assert torch.equal(probabilities(net, logits), torch.softmax(logits, dim=1))
    assert torch.equal(labels_of(net, logits), logits.argmax(1))
    assert torch.equal(probabilities(nn.Identity(), logits), torch.softmax(logits, dim=1))   # no head: softmax


def test_predict_probabilities_of_a_softmax_model_is_bit_identical_to_the_softmax_of_its_output():
    """What iter_probabilities computed before the regions head (softmax of each view, rotated back, averaged)."""
    from napari_lvseg.inference import TTA_TRANSFORMS, predict_probabilities

    torch.manual_seed(2)
    net = AttentionResUNet(base_width=4, depth=3).eval()
    slices = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    x = torch.from_numpy(slices[:, None])
    with torch.inference_mode():
        plain = torch.softmax(net(x), dim=1).numpy()
        views = sum(torch.rot90(torch.softmax(net(torch.rot90(x, k, (-2, -1))), dim=1), -k, (-2, -1))
                    for k, _ in TTA_TRANSFORMS) / len(TTA_TRANSFORMS)
    assert np.array_equal(predict_probabilities(net, slices), plain)
    assert np.array_equal(predict_probabilities(net, slices, tta=True), views.numpy())


# -- the network and its card ------------------------------------------------------------------------------------
def test_a_regions_network_has_four_outputs_and_says_its_head_in_its_params():
    assert out_channels("softmax") == 5 and out_channels("regions") == 4 and HEADS == ("softmax", "regions")
    net = AttentionResUNet(out_channels=4, head="regions", base_width=2, depth=2, deep_supervision=True).train()
    outs = net(torch.zeros(1, 1, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(1, 4, 16, 16)] * 2
    assert net.architecture_params()["head"] == "regions"
    assert "head" not in AttentionResUNet(base_width=2, depth=2).architecture_params()   # softmax cards unchanged
    with pytest.raises(ValueError, match="a regions head has 4 output channels, not 5"):
        AttentionResUNet(out_channels=5, head="regions")
    with pytest.raises(ValueError, match="head must be softmax or regions"):
        AttentionResUNet(head="sigmoid")


def test_a_card_with_an_unknown_head_is_refused_in_one_line(tmp_path):
    from napari_lvseg.models.card import ModelCard

    data = {"name": "x", "task": "segmentation", "architecture": "AttentionResUNet",
            "params": {"out_channels": 4, "head": "sigmoid"}}
    with pytest.raises(LvsegError, match="params 'head' must be softmax or regions, not 'sigmoid'"):
        ModelCard.from_dict(data, tmp_path / "card.json")
    data["params"]["head"] = "regions"
    assert ModelCard.from_dict(data).params["head"] == "regions"


# -- training, loading, segmenting ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(phantom_pairs, tmp_path_factory):
    """A tiny regions run and a tiny softmax run of the same recipe: {head: (run folder, events)}."""
    root = tmp_path_factory.mktemp("runs")
    return {head: (root / head, list(train(options(phantom_pairs, root / head, head=head)))) for head in HEADS}


def test_a_regions_run_writes_a_card_with_its_head_and_validates(trained):
    from napari_lvseg.models.registry import load_model

    run, events = trained["regions"]
    card = json.loads((run / "card.json").read_text())
    assert card["params"]["head"] == "regions" and card["params"]["out_channels"] == 4
    assert card["training"]["loss"].startswith("Dice + BCE per nested region")
    assert json.loads((run / "options.json").read_text())["head"] == "regions"
    val = [e.metrics for e in events if e.kind == "validation"]
    assert len(val) == 2 and set(val[-1]) >= {"cavity", "myocardium", "infarct", "no_reflow", "mean", "pooled_mean"}
    assert all(np.isfinite(v) for v in val[-1].values())
    assert np.isfinite([e.losses["loss"] for e in events if e.kind == "step"]).all()
    net, loaded = load_model(run, task="segmentation")
    assert loaded.params["head"] == "regions" and net.head_kind == "regions"
    # a softmax run's card is as before: no head
    softmax_card = json.loads((trained["softmax"][0] / "card.json").read_text())
    assert "head" not in softmax_card["params"] and softmax_card["params"]["out_channels"] == 5
    assert softmax_card["training"]["loss"] == "DiceCE (batch Dice) with deep supervision"


def test_a_regions_model_segments_searches_and_averages_with_a_softmax_model(trained, tmp_path):
    from napari_lvseg.inference import predict_probabilities, segment
    from napari_lvseg.models.ensemble import combine
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.models.weights import save_model

    regions, softmax = (load_model(trained[h][0], task="segmentation") for h in ("regions", "softmax"))
    image, _ = make_phantom(n_slices=3, size=64, seed=9)
    result = segment(image, regions, uncertainty=True, tta=True)
    assert result.labels.shape == image.shape and result.labels.dtype == np.uint8 and result.labels.max() <= 4
    assert np.isfinite(result.uncertainty).all() and 0 <= result.uncertainty.min() <= result.uncertainty.max() <= 1
    wide = np.pad(image, ((0, 0), (40, 24), (24, 40)), mode="reflect")   # larger than the 64-pixel view: searched
    result = segment(wide, regions)
    assert result.labels.shape == wide.shape and "lv_found" in result.info

    net, card = combine([trained["regions"][0], trained["softmax"][0]], "mixed")
    save_model(tmp_path / "mixed", net, card)
    mixed = load_model(tmp_path / "mixed", task="segmentation")
    assert [m.get("head", "softmax") for m in (p["params"] for p in mixed[1].params["members"])] == ["regions",
                                                                                                      "softmax"]
    slices = np.random.default_rng(1).random((2, 64, 64)).astype(np.float32)
    expected = (predict_probabilities(regions[0], slices) + predict_probabilities(softmax[0], slices)) / 2
    got = predict_probabilities(mixed[0], slices)
    assert np.allclose(got, expected, atol=1e-5) and np.allclose(got.sum(1), 1.0, atol=1e-5)
    labels = segment(wide, mixed).labels
    assert labels.shape == wide.shape and labels.max() <= 4


def test_the_lv_search_reads_a_regions_output_through_the_conversion(monkeypatch):
    """locate_steps labels a regions network's output by its class probabilities, not by its raw argmax."""
    from napari_lvseg import locate

    class Constant(nn.Module):   # LV and myocardium on, myocardium's logit the larger: every pixel is wall
        head_kind = "regions"

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            logits = torch.tensor([5.0, 6.0, -5.0, -5.0]).view(1, 4, 1, 1)
            return logits.expand(len(x), 4, *x.shape[-2:]) + self.weight

    seen = []
    monkeypatch.setattr(locate, "lv_candidates", lambda labels, view, expected=None: seen.append(labels) or [])
    stack = np.random.default_rng(0).random((4, 96, 96)).astype(np.float32)
    for _ in locate.locate_steps(Constant(), stack, 32):
        pass
    assert seen and all((labels == MYOCARDIUM).all() for labels in seen)


# -- options ----------------------------------------------------------------------------------------------------
def test_class_weights_with_a_regions_head_are_refused_in_one_line(phantom_pairs, tmp_path):
    with pytest.raises(OptionError, match=r"^--ce-weights: weigh the softmax head's cross-entropy; a regions head "
                                          r"\(see --head\) has none: leave them out$"):
        options(phantom_pairs, tmp_path / "run", head="regions", ce_weights=[1, 1, 1, 2, 2]).validate()
    with pytest.raises(OptionError, match="head: must be softmax or regions, got 'sigmoid'"):
        options(phantom_pairs, tmp_path / "run", head="sigmoid").validate()
    options(phantom_pairs, tmp_path / "run", head="regions").validate()
    options(phantom_pairs, tmp_path / "run", ce_weights=[1, 1, 1, 2, 2]).validate()   # softmax: as before


def test_the_cli_has_the_flag_and_refuses_a_bad_pair_in_one_line(phantom_pairs, tmp_path):
    from napari_lvseg.engine.schema import schema

    head = next(opt for opt in schema(TrainOptions) if opt.name == "head")
    assert head.default == "softmax" and head.choices == HEADS and not head.panel   # as depth, ce_weights: CLI/file
    run = subprocess.run([sys.executable, "-m", "napari_lvseg.cli", "train", "--data", str(phantom_pairs), "--out",
                          str(tmp_path / "run"), "--head", "regions", "--ce-weights", "1:1:1:2:2"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr and run.stderr.count("\n") == 1
    assert "--ce-weights: weigh the softmax head's cross-entropy" in run.stderr
    assert not (tmp_path / "run").exists()


def test_fine_tuning_keeps_the_models_head_and_refuses_another(trained, phantom_pairs, tmp_path):
    softmax_run, regions_run = trained["softmax"][0], trained["regions"][0]
    with pytest.raises(OptionError, match="--head: regions asked for, but the model fine-tuned from has a softmax "
                                          "head"):
        list(train(options(phantom_pairs, tmp_path / "a", epochs=1, init=str(softmax_run), head="regions",
                           samples_per_epoch=None)))
    with pytest.raises(OptionError, match="--ce-weights"):
        list(train(options(phantom_pairs, tmp_path / "b", epochs=1, init=str(regions_run), ce_weights=[1, 1, 1, 2, 2],
                           samples_per_epoch=None)))
    list(train(options(phantom_pairs, tmp_path / "c", epochs=1, init=str(regions_run))))   # --head left out
    card = json.loads((tmp_path / "c" / "card.json").read_text())
    assert card["params"]["head"] == "regions" and card["training"]["loss"].startswith("Dice + BCE")
    assert json.loads((tmp_path / "c" / "options.json").read_text())["head"] == "regions"


def test_a_regions_segmentation_guide_scores_its_class_probabilities():
    """The synthesis task's frozen segmentation guide: a regions network's cross-entropy is that of its 5-class
    probabilities (a softmax one's exactly as before), differentiable in the generated image."""
    import types

    from napari_lvseg.engine.synthesis import SynthesisTask

    labels = torch.randint(0, 5, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    for head in HEADS:
        torch.manual_seed(0)
        guide = AttentionResUNet(out_channels=out_channels(head), head=head, base_width=2, depth=2).eval()
        task = types.SimpleNamespace(guide=guide, guide_channels=1, l1_weights=torch.ones(5),
                                     guide_card=types.SimpleNamespace(normalization={"low": 1, "high": 99}),
                                     options=types.SimpleNamespace(seg_guide_blur=0.0))
        fake = (torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
        loss = SynthesisTask.guide_loss(task, fake, labels)
        loss.backward()
        assert torch.isfinite(loss) and fake.grad.abs().sum() > 0
