"""Synthesis engine: Pix2Pix training through the shared engine, the synthesis API, datasets, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_lvseg.data.datasets import load_source
from napari_lvseg.data.phantom import HIGH, LOW, make_phantom
from napari_lvseg.data.simulator import anatomy_problems
from napari_lvseg.engine import TrainOptions, train
from napari_lvseg.engine.checkpoint import load_checkpoint
from napari_lvseg.engine.synthesis import from_tanh, to_tanh
from napari_lvseg.errors import LvsegError
from napari_lvseg.io.pairs import PairFolder
from napari_lvseg.models.card import read_card
from napari_lvseg.synthesis import (
    evaluate_synthesis,
    frechet_distance,
    kernel_distance,
    ms_per_image,
    synthesize,
    synthesize_dataset,
    synthesize_variants,
)

torch.set_num_threads(1)


def make_pairs(root, n_cases=4, n_slices=3):
    folder = PairFolder(root)
    for seed in range(n_cases):
        image, labels = make_phantom(n_slices=n_slices, seed=seed)
        folder.add(image, labels, origin="real", name=f"phantom_P{seed}")
    return root


def tiny_options(data, out, **kw):
    base = dict(task="synthesis", data=[str(data)], out=str(out), epochs=1, samples_per_epoch=4, batch_size=2,
                width=4, disc_width=8, threads=1, device="cpu", seed=0)
    return TrainOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return make_pairs(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def run(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    events = [e for e in train(tiny_options(pairs, out)) if e.kind != "message"]   # start-up lines aside
    return out, events


@pytest.fixture
def lv_mask():
    return make_phantom(n_slices=2, seed=7)[1]


# -- training --------------------------------------------------------------------------------------
def test_engine_trains_synthesis_and_exports_the_generator(run):
    out, events = run
    assert [e.kind for e in events] == ["start", "step", "step", "validation", "best", "checkpoint", "done"]
    for e in events[1:3]:
        assert set(e.losses) >= {"loss", "g_adv", "l1", "d"}
        assert all(np.isfinite(v) for v in e.losses.values())
        # total = adversarial + 100 * weighted L1
        assert e.losses["loss"] == pytest.approx(e.losses["g_adv"] + 100 * e.losses["l1"], rel=1e-5)
    metrics = events[3].metrics
    assert np.isfinite(metrics["psnr"]) and 0 < metrics["l1"] < 2 and -1 <= metrics["ssim"] <= 1
    assert {f"mean_{k}" for k in ("background", "cavity", "myocardium", "infarct", "no_reflow")} <= set(metrics)
    for name in ("card.json", "model.safetensors", "last.pt", "best.pt", "options.json"):
        assert (out / name).is_file()
    card = read_card(out)
    assert (card.task, card.architecture) == ("synthesis", "Pix2PixGenerator")
    assert card.params["base_width"] == 4 and card.params["depth"] == 6
    assert card.normalization["generator_range"] == [-0.5, 1.5]
    low, high = card.normalization["intensity_range"]
    assert LOW <= low < high <= HIGH  # the phantom's raw range, percentiles 1/99
    assert card.licence == "as the training data"
    assert card.metrics["validation"]["psnr"] == pytest.approx(metrics["psnr"])
    state = load_checkpoint(out / "last.pt")["task"]
    assert set(state) == {"generator", "discriminator", "opt_g", "opt_d"}
    assert card.training["augment"] == "light"   # the default means geometry only, resampled


def test_lossless_augmentation_reaches_the_synthesis_run_and_its_card(pairs, tmp_path, monkeypatch):
    from napari_lvseg.engine import synthesis

    built, real_build = [], synthesis.build_augmentation
    monkeypatch.setattr(synthesis, "build_augmentation", lambda s: built.append(s) or real_build(s))
    list(train(tiny_options(pairs, tmp_path / "lossless", augment="lossless")))
    assert built == ["lossless"]
    assert read_card(tmp_path / "lossless").training["augment"] == "lossless"


def test_resume_continues_where_the_run_stopped(pairs, tmp_path):
    out = tmp_path / "run"
    list(train(tiny_options(pairs, out)))
    events = [e for e in train(tiny_options(pairs, out, epochs=2), resume=True) if e.kind != "message"]
    assert events[0].kind == "start" and events[0].step == 2 and events[0].total_steps == 4
    assert [e.step for e in events if e.kind == "step"] == [3, 4]
    assert events[-1].kind == "done"
    state = load_checkpoint(out / "last.pt")
    assert state["epoch"] == 2
    # Adam's step count carried over from the first run: 2 + 2 updates of both networks.
    for opt in ("opt_g", "opt_d"):
        steps = {float(s["step"]) for s in state["task"][opt]["state"].values()}
        assert steps == {4.0}


def test_generators_upsample_by_resize_unless_told_otherwise(run, pairs, tmp_path):
    from torch import nn

    from napari_lvseg.models.registry import load_model

    out, _ = run   # default options
    assert read_card(out).params["upsample"] == "resize"
    generator, _ = load_model(out, task="synthesis")
    kinds = {type(m) for m in generator.modules()}
    assert nn.Upsample in kinds and nn.ConvTranspose2d not in kinds
    with pytest.raises(LvsegError, match="--upsample: must be resize or transposed, got 'bilinear'"):
        list(train(tiny_options(pairs, tmp_path / "bad", upsample="bilinear")))


def test_a_run_from_before_the_upsample_option_resumes_with_its_transposed_generator(pairs, tmp_path):
    from torch import nn

    from napari_lvseg.models.registry import load_model

    out = tmp_path / "old"
    list(train(tiny_options(pairs, out, upsample="transposed")))
    saved = json.loads((out / "options.json").read_text())
    del saved["upsample"]   # as written before the option existed
    (out / "options.json").write_text(json.dumps(saved))
    events = list(train(tiny_options(pairs, out, epochs=2), resume=True))
    assert events[-1].kind == "done" and events[-1].epoch == 2
    generator, card = load_model(out, task="synthesis")
    assert card.params["upsample"] == "transposed"
    assert any(isinstance(m, nn.ConvTranspose2d) for m in generator.modules())


@pytest.fixture(scope="module")
def guide(pairs, tmp_path_factory):
    """A tiny 2.5-D segmentation network (one neighbour each side) to guide the generator."""
    out = tmp_path_factory.mktemp("guide") / "guide"
    list(train(TrainOptions(task="segmentation", data=[str(pairs)], out=str(out), epochs=1, samples_per_epoch=2,
                            batch_size=2, width=4, context=1, threads=1, device="cpu")))
    return out


def test_segmentation_guide_joins_the_generator_loss(pairs, guide, tmp_path):
    out = tmp_path / "guided"
    events = [e for e in train(tiny_options(pairs, out, seg_guide=str(guide), seg_guide_lambda=10.0,
                                            seg_guide_blur=1.0)) if e.kind != "message"]
    assert "guided by guide x 10.0" in events[0].message
    for e in (e for e in events if e.kind == "step"):
        assert np.isfinite(e.losses["guide"]) and e.losses["guide"] > 0
        assert e.losses["loss"] == pytest.approx(e.losses["g_adv"] + 100 * e.losses["l1"] + 10 * e.losses["guide"],
                                                 rel=1e-5)
    training = read_card(out).training
    assert (training["seg_guide"], training["seg_guide_lambda"], training["seg_guide_blur"]) == ("guide", 10.0, 1.0)
    # The guide's gradient reaches the generator: the same run without it ends with other weights.
    list(train(tiny_options(pairs, tmp_path / "plain")))
    guided = load_checkpoint(out / "last.pt")["task"]["generator"]
    plain = load_checkpoint(tmp_path / "plain" / "last.pt")["task"]["generator"]
    assert any(not torch.equal(guided[k], plain[k]) for k in guided if guided[k].is_floating_point())


@pytest.mark.parametrize("change, message", [
    ({"seg_guide_lambda": -1.0}, "--seg-guide-lambda: must be at least 0"),
    ({"seg_guide_lambda": float("nan")}, "--seg-guide-lambda: must be a number"),
    ({"seg_guide_blur": -1.0}, "--seg-guide-blur: must be 0..8 pixels"),
    ({"size": 64}, "reads 128-pixel slices"),
])
def test_bad_segmentation_guides_are_refused(pairs, guide, tmp_path, change, message):
    with pytest.raises(LvsegError, match=message):
        list(train(tiny_options(pairs, tmp_path / "run", seg_guide=str(guide), **change)))


def test_the_guide_blur_is_a_gaussian_that_removes_a_pixel_grid():
    from scipy.ndimage import gaussian_filter

    from napari_lvseg.engine.synthesis import gaussian_blur

    x = torch.rand(2, 1, 24, 20, dtype=torch.float64)
    expected = [gaussian_filter(x[i, 0].numpy(), 1.5, mode="mirror", truncate=3.0) for i in range(2)]
    assert np.allclose(gaussian_blur(x, 1.5)[:, 0].numpy(), expected)
    grid = torch.from_numpy(np.indices((32, 32)).sum(0) % 2 * 1.0)[None, None]   # a checkerboard
    assert grid.std() > 0.49 and gaussian_blur(grid, 1.0)[..., 4:-4, 4:-4].std() < 0.01


def test_a_synthesis_model_cannot_guide(pairs, run, tmp_path):
    with pytest.raises(LvsegError, match="is a synthesis model .*; a segmentation model is needed"):
        list(train(tiny_options(pairs, tmp_path / "run", seg_guide=str(run[0]))))


def test_tanh_mapping_round_trips_the_normalised_range():
    v = np.array([-0.5, 0.0, 0.5, 1.0, 1.5], np.float32)
    t = to_tanh(v)
    assert t.tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert np.allclose(from_tanh(t), v)


# -- synthesize ------------------------------------------------------------------------------------
def test_same_seed_same_image_other_seed_other_image(run, lv_mask):
    model = run[0]
    a, b, c = (synthesize(lv_mask[0], model, seed=s) for s in (0, 0, 1))
    assert a.dtype == np.float32 and a.shape == lv_mask[0].shape
    assert np.array_equal(a, b)
    assert np.abs(a - c).mean() > 1.0  # raw intensity units (range about 900)


def test_output_shape_equals_input_shape(run, lv_mask):
    model = run[0]
    card = read_card(model)
    low, high = card.normalization["intensity_range"]
    stack = synthesize(lv_mask, model)
    assert stack.shape == lv_mask.shape
    assert np.array_equal(stack[1], synthesize(lv_mask[1], model))  # a slice does not depend on the stack
    big = np.zeros((200, 180), np.uint8)
    big[40:168, 30:158] = lv_mask[0]
    image = synthesize(big, model)
    assert image.shape == (200, 180) and np.isfinite(image).all()
    # Outside the generator grid: one constant background level, inside the intensity range.
    assert image[0, 0] == image[199, 179] == image[199, 0]
    assert low - (high - low) <= image[0, 0] <= high + (high - low)
    assert image[100, 94] != image[0, 0]
    small = synthesize(lv_mask[0][14:114, 20:110], model)
    assert small.shape == (100, 90)
    # The generator's tanh output spans [-0.5, 1.5] in normalised units: the raw range widened by half.
    assert stack.min() >= low - 0.5 * (high - low) - 1e-3 and stack.max() <= high + 0.5 * (high - low) + 1e-3


@pytest.mark.parametrize("bad, shown", [(5, "5"), (2.5, "2.5"), (-1, "-1")])
def test_bad_mask_values_are_refused_by_name(run, lv_mask, bad, shown):
    mask = lv_mask[0].astype(np.float32)
    mask[0, 0] = bad
    with pytest.raises(LvsegError, match=f"0..4; found {shown}"):
        synthesize(mask, run[0])


def test_variants_use_consecutive_seeds(run, lv_mask):
    variants = synthesize_variants(lv_mask[0], 3, run[0], seed=4)
    assert len(variants) == 3
    assert np.array_equal(variants[1], synthesize(lv_mask[0], run[0], seed=5))
    assert not np.array_equal(variants[0], variants[2])


def test_no_synthesis_model_gives_a_clear_error(models_dir, tmp_path, monkeypatch, lv_mask):
    from napari_lvseg.models import registry

    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "no-bundled")
    with pytest.raises(LvsegError, match="no bundled synthesis model; train one with lvseg train --task synthesis"):
        synthesize(lv_mask[0])


# -- synthetic datasets ----------------------------------------------------------------------------
def test_synthesize_dataset_writes_synthetic_pairs_that_train(run, pairs, tmp_path):
    out = tmp_path / "synthetic"
    folder = synthesize_dataset(pairs, 4, out, model=run[0], seed=3, cases=["phantom_P0", "phantom_P1"])
    records = folder.records()
    assert len(records) == 4
    for k, record in enumerate(records):
        assert record["origin"] == "synthetic" and record["seed"] == 3 + k
        assert record["source_case"] in ("phantom_P0", "phantom_P1") and 0 <= record["source_slice"] < 3
        assert record["model"] == "run" and record["generator_path"] == str(run[0])
        image, mask = folder.read(record["name"])
        assert image.shape == mask.shape == (128, 128) and image.dtype == np.float32
        assert anatomy_problems(mask) == [] and (mask > 0).any()
    source = load_source(out)
    assert len(source) == 4 and set(source.origin) == {"synthetic"}
    # Same seed, same dataset.
    again = synthesize_dataset(pairs, 4, tmp_path / "again", model=run[0], seed=3, cases=["phantom_P0", "phantom_P1"])
    for name_a, name_b in zip(folder.names(), again.names()):
        (ia, ma), (ib, mb) = folder.read(name_a), again.read(name_b)
        assert np.array_equal(ma, mb) and np.array_equal(ia, ib)
    # ... and a segmentation run trains on it.
    events = list(train(TrainOptions(task="segmentation", data=[str(out)], out=str(tmp_path / "seg"), epochs=1,
                                     samples_per_epoch=2, batch_size=2, width=4, threads=1, device="cpu")))
    assert events[-1].kind == "done" and (tmp_path / "seg" / "model.safetensors").is_file()


def test_simulate_false_keeps_the_source_masks(run, pairs, tmp_path):
    folder = synthesize_dataset(pairs, 2, tmp_path / "plain", model=run[0], seed=0, simulate=False)
    for record in folder.records():
        _, mask = folder.read(record["name"])
        source = PairFolder(pairs).read(record["source_case"])[1][record["source_slice"]]
        assert np.array_equal(mask, source) and record["simulated"] is False


def test_synthetic_stacks_are_whole_cases_a_2_5_d_run_reads_with_neighbours(run, pairs, tmp_path):
    out = tmp_path / "stacks"
    folder = synthesize_dataset(pairs, 2, out, model=run[0], seed=1, cases=["phantom_P0"], stacks=True)
    source_image, source_mask = PairFolder(pairs).read("phantom_P0")
    for k, record in enumerate(folder.records()):
        assert record["source"] == record["source_case"] == "phantom_P0" and record["source_slice"] is None
        image, mask = folder.read(record["name"])
        assert image.shape == mask.shape == source_mask.shape and record["seed"] == 1 + k
        assert anatomy_problems(mask) == [] and not np.array_equal(mask, source_mask)
    source = load_source(out)
    assert len(source) == 2 * len(source_mask)
    # A 2.5-D input of a synthetic slice holds its own stack's neighbours, not copies of itself.
    middle = len(source_mask) // 2
    stack = source.input(middle, context=1)
    assert stack.shape == (3, 128, 128) and not np.array_equal(stack[0], stack[1])
    # Own seed per slice: the same masks, the first slice as before, its neighbours rendered with other noise.
    own = synthesize_dataset(pairs, 2, tmp_path / "own", model=run[0], seed=1, cases=["phantom_P0"], stacks=True,
                             slice_seeds=True)
    (shared_image, shared_mask), (own_image, own_mask) = folder.read(folder.names()[0]), own.read(own.names()[0])
    assert np.array_equal(shared_mask, own_mask) and own.records()[0]["slice_seeds"] is True
    assert np.array_equal(shared_image[0], own_image[0]) and not np.array_equal(shared_image[1], own_image[1])


# -- evaluation ------------------------------------------------------------------------------------
def test_evaluate_synthesis_reports_finite_metrics(run, pairs, tmp_path, monkeypatch):
    from napari_lvseg.models import registry

    monkeypatch.setattr(registry, "bundled_models_dir", lambda: tmp_path / "no-bundled")
    result = evaluate_synthesis(run[0], pairs, cases=["phantom_P2", "phantom_P3"])
    assert result["n_slices"] == len(result["pairs"]) == 6
    for key in ("l1", "psnr", "ssim", "fid", "kid", "kid_std"):
        assert np.isfinite(result[key]), key
    assert result["fid"] > 0 and result["kid"] > 0
    for group in ("class_means_synthetic", "class_means_real"):
        assert len(result[group]) == 5 and all(np.isfinite(v) for v in result[group].values())
    assert result["class_means_real"]["infarct"] > result["class_means_real"]["myocardium"]
    assert isinstance(result["infarct_brighter_than_myocardium"], bool)
    assert isinstance(result["no_reflow_darker_than_infarct"], bool)
    assert "random conv net" in result["feature_network"]
    assert {p["case"] for p in result["pairs"]} == {"phantom_P2", "phantom_P3"}
    assert result["psnr"] == pytest.approx(np.mean([p["psnr"] for p in result["pairs"]]))
    json.dumps(result, allow_nan=False)


def test_feature_network_uses_a_bundled_segmentation_encoder(run, pairs, tmp_path, monkeypatch):
    from napari_lvseg.models import card as card_io, registry, weights as weights_io
    from napari_lvseg.models.attention_res_unet import AttentionResUNet

    bundled = tmp_path / "bundled"
    weights_io.save_model(bundled / "seg-tiny", AttentionResUNet(base_width=4),
                     card_io.ModelCard(name="seg-tiny", task="segmentation", architecture="AttentionResUNet"))
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    result = evaluate_synthesis(run[0], pairs, cases=["phantom_P2"])
    assert "seg-tiny" in result["feature_network"] and "encoder" in result["feature_network"]
    assert np.isfinite(result["fid"])


def test_feature_network_of_an_ensemble_is_its_first_members_encoder(tmp_path, monkeypatch):
    import torch

    from napari_lvseg.models import card as card_io, registry, weights as weights_io
    from napari_lvseg.models.ensemble import SegmentationEnsemble
    from napari_lvseg.synthesis import feature_network

    member = {"architecture": "AttentionResUNet", "params": {"base_width": 4, "depth": 3}}
    ensemble = SegmentationEnsemble([member, {**member, "params": {"base_width": 6, "depth": 3}}])
    bundled = tmp_path / "bundled"
    weights_io.save_model(bundled / "seg-ens", ensemble,
                     card_io.ModelCard(name="seg-ens", task="segmentation", architecture="SegmentationEnsemble"))
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    network = feature_network()
    assert "first member" in network.name and "seg-ens" in network.name
    with torch.no_grad():
        assert network(torch.zeros(2, 1, 32, 32)).shape == (2, 4 * 2 ** 3)  # width 4 at depth 3: 32 channels


def test_fid_and_kid_measure_distribution_distance():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Same covariance, mean shifted by 1 in each of 4 dimensions: FID = 4.
    assert frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=1e-6)
    same, _ = kernel_distance(a, rng.standard_normal((300, 4)))
    far, _ = kernel_distance(a, a + 1.0)
    assert abs(same) < 0.05 < far


def test_ms_per_image_times_a_generator(run):
    from napari_lvseg.models.pix2pix import Pix2PixGenerator

    assert 0 < ms_per_image(run[0], repeats=2) < 10_000
    assert 0 < ms_per_image(Pix2PixGenerator(base_width=4), repeats=1) < 10_000


def test_feature_network_feeds_a_2_5d_encoder_the_lone_slice_as_its_own_neighbours(tmp_path, monkeypatch):
    import torch

    from napari_lvseg.models import card as card_io, registry, weights as weights_io
    from napari_lvseg.models.attention_res_unet import AttentionResUNet
    from napari_lvseg.synthesis import feature_network

    net = AttentionResUNet(in_channels=3, base_width=4, depth=3).eval()
    bundled = tmp_path / "bundled"
    weights_io.save_model(bundled / "seg-25d", net, card_io.ModelCard(name="seg-25d", task="segmentation",
                                                             architecture="AttentionResUNet",
                                                             params=net.architecture_params()))
    monkeypatch.setattr(registry, "bundled_models_dir", lambda: bundled)
    network = feature_network()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        got = network(x)
        f = network.net.stem(x.repeat(1, 3, 1, 1))
        for block in network.net.encoder:
            f = block(f)
    assert got.shape == (2, 32) and torch.allclose(got, f.mean((2, 3)))


# -- context-preserving synthesis (lesion inpainting) -----------------------------------------------
@pytest.fixture(scope="module")
def context_run(pairs, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "context"
    list(train(tiny_options(pairs, out, context_inpaint=True, samples_per_epoch=4)))
    return out


def test_blend_weights_live_strictly_inside_the_region():
    from napari_lvseg.models.pix2pix import blend_weights, context_region

    labels = torch.zeros(1, 40, 40, dtype=torch.long)
    labels[0, 15:25, 15:25] = 2
    region = context_region(labels, dilation=3)
    assert region[0, 12:28, 15:25].all() and region[0, 15:25, 12:28].all()   # the LV grown by 3 pixels
    assert not region[0, 11].any() and not region[0, :, 28].any() and not region[0, 12, 12]   # rounded corners
    w = blend_weights(region, 3)
    assert torch.equal(w[~region], torch.zeros_like(w[~region]))         # 0 outside: the context kept exactly
    assert (w[region] > 0).all() and float(w.max()) == 1.0                # blends at the border, 1 deep inside
    assert abs(float(w[0, 20, 12]) - 0.25) < 1e-6                         # the edge pixel: 1 / (3 + 1)


def test_context_training_records_the_conditioning_and_keeps_the_old_cards_working(context_run, run, lv_mask):
    from napari_lvseg.synthesis import conditioning

    card = read_card(context_run)
    assert card.params["conditioning"] == "context" and card.params["in_channels"] == 7
    assert card.training["conditioning"] == "context"
    assert conditioning(read_card(run[0])) == "labels"          # a card without it: labels only, as before
    assert synthesize(lv_mask, str(run[0])).shape == lv_mask.shape


def test_texture_options_fine_tune_a_generator_with_noise_a_blurred_l1_and_a_smaller_critic(context_run, pairs,
                                                                                             tmp_path):
    from napari_lvseg.engine.synthesis import weighted_l1
    from napari_lvseg.models.registry import load_model

    out = tmp_path / "texture"
    options = tiny_options(pairs, out, init=str(context_run), noise_levels=2, l1_blur=1.5, disc_layers=2,
                           noise_init=0.05)
    assert list(train(options))[-1].kind == "done"
    generator, card = load_model(str(out), task="synthesis")
    assert card.params["noise_levels"] == 2 and card.params["conditioning"] == "context"
    assert card.training["l1_blur"] == 1.5 and card.training["disc_layers"] == 2
    assert card.training["noise_init"] == 0.05
    assert float(generator.noise[0].scale.detach().abs().max()) > 0   # its weights trained away from zero
    # the blurred L1 does not see a pixel-scale pattern the plain one sees
    real = torch.zeros(1, 1, 32, 32)
    grain = torch.zeros(1, 1, 32, 32)
    grain[..., ::2, ::2] = 1.0
    grain[..., 1::2, 1::2] = 1.0
    grain -= 0.5   # a checkerboard of +-0.5 around zero
    weights = torch.ones(1, 1, 32, 32)
    assert float(weighted_l1(grain, real, weights, blur=1.5)) < 0.02
    assert float(weighted_l1(grain, real, weights)) == pytest.approx(0.5)


def test_the_lv_critic_reads_crops_around_the_lv_as_the_realism_test_does():
    from napari_lvseg.engine.synthesis import lv_crops_t, to_tanh

    normalised = np.tile(np.linspace(-0.5, 1.5, 128, dtype=np.float32), (2, 1, 128, 1))   # x-ramp, 2 samples
    images = torch.from_numpy(to_tanh(normalised)).requires_grad_()
    labels = torch.zeros(2, 128, 128, dtype=torch.long)
    labels[0, 20:40, 80:100] = 2        # LV centre (29.5, 89.5): the crop held inside the image at the top
    labels[1, 60:70, 10:20] = 1         # centre (64.5, 14.5): held inside at the left
    crops = lv_crops_t(images, labels)
    assert crops.shape == (2, 1, 64, 64)
    assert torch.allclose(crops[0, 0, 0], torch.from_numpy(np.clip(normalised[0, 0, 0, 57:121], 0, 1)), atol=1e-5)
    assert torch.allclose(crops[1, 0, 0], torch.from_numpy(np.clip(normalised[1, 0, 0, :64], 0, 1)), atol=1e-5)
    assert float(crops.detach().min()) == 0.0 and float(crops.detach().max()) == 1.0   # clipped, as `lv_crops`
    crops.sum().backward()
    assert float(images.grad[0, 0, 40, 70]) > 0 and float(images.grad[0, 0, 40, 10]) == 0   # inside / outside


def test_the_lv_critic_option_trains_a_second_critic_beside_the_patchgan(context_run, pairs, tmp_path):
    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.errors import LvsegError

    out = tmp_path / "lvcritic"
    events = [e for e in train(tiny_options(pairs, out, init=str(context_run), lv_critic=0.5))
              if e.kind != "message"]
    steps = [e for e in events if e.kind == "step"]
    assert steps and events[-1].kind == "done"
    for e in steps:
        assert {"g_adv_lv", "d_lv"} <= set(e.losses)
        assert e.losses["loss"] == pytest.approx(e.losses["g_adv"] + 100 * e.losses["l1"]
                                                 + 0.5 * e.losses["g_adv_lv"], rel=1e-5)
    assert read_card(out).training["lv_critic"] == 0.5
    assert {"lv_critic", "opt_lv"} <= set(load_checkpoint(out / "last.pt")["task"])   # resumed, it keeps its critic
    with pytest.raises(LvsegError, match="context"):
        list(train(tiny_options(pairs, tmp_path / "labels_only", lv_critic=0.5)))


def test_a_generator_gains_noise_at_a_starting_weight_and_keeps_its_own_weights():
    from napari_lvseg.engine.synthesis import with_noise
    from napari_lvseg.models.pix2pix import Pix2PixGenerator

    torch.manual_seed(0)
    plain = Pix2PixGenerator(base_width=4, depth=4, dropout=0.0, upsample="resize")
    silent, params = with_noise(plain, plain.architecture_params(), 2)
    loud, _ = with_noise(plain, plain.architecture_params(), 2, 0.25)
    assert params["noise_levels"] == 2
    assert [float(n.scale.abs().max()) for n in silent.noise] == [0.0, 0.0]
    assert all(torch.all(n.scale == 0.25) for n in loud.noise)
    own = plain.state_dict()
    assert all(torch.equal(own[k], v) for k, v in loud.state_dict().items() if not k.startswith("noise."))
    labels = torch.randint(0, 5, (1, 32, 32))
    assert torch.equal(silent.generate(labels, seed=1), plain.generate(labels, seed=1))
    assert not torch.equal(loud.generate(labels, seed=1), plain.generate(labels, seed=1))


def test_context_synthesis_keeps_every_pixel_outside_the_region(context_run, lv_mask):
    from napari_lvseg.synthesis import region_slices

    image = make_phantom(n_slices=2, seed=3)[0].astype(np.int16)   # integer scanner values
    out = synthesize(lv_mask, str(context_run), seed=1, context=image)
    assert out.shape == lv_mask.shape and out.dtype == np.float32
    region = region_slices(lv_mask)
    assert np.array_equal(out[~region], image[~region].astype(np.float32))
    assert not np.array_equal(out[region], image[region].astype(np.float32))   # the region is rendered
    assert np.array_equal(out, synthesize(lv_mask, str(context_run), seed=1, context=image))   # same seed, same


def test_context_synthesis_gives_the_fill_in_the_contexts_grain(context_run, lv_mask):
    from scipy import ndimage as ndi

    from napari_lvseg.data.grain import residual, robust_spread
    from napari_lvseg.synthesis import region_slices

    image = make_phantom(n_slices=2, seed=3)[0].astype(np.float32)
    image += np.random.default_rng(0).normal(0, 300, image.shape).astype(np.float32)   # a grainier scanner
    grainy = synthesize(lv_mask, str(context_run), seed=1, context=image)
    smooth = synthesize(lv_mask, str(context_run), seed=1, context=image, grain=False)
    region = region_slices(lv_mask)
    assert np.array_equal(grainy[~region], smooth[~region])   # the grain stays inside the region
    assert grainy.min() >= 0 and (grainy[region] != smooth[region]).any()
    inner = ndi.binary_erosion(region[0], iterations=2)
    real, without, with_ = (robust_spread(residual(x[0])[inner]) for x in (image, smooth, grainy))
    assert without < 0.8 * real and abs(with_ - real) < 0.2 * real   # brought to the context's own level


def test_context_synthesis_blanks_the_contexts_own_lv_and_handles_other_sizes(context_run):
    from napari_lvseg.synthesis import region_slices

    image, own = make_phantom(n_slices=1, seed=2)
    target = np.zeros((1, 150, 140), np.uint8)
    context = np.full((1, 150, 140), float(image.mean()), np.float64)
    context[:, 10:138, 5:133], target[:, 10:138, 5:133] = image, np.roll(own, 6, axis=-1)
    context_labels = np.zeros_like(target)
    context_labels[:, 10:138, 5:133] = own
    out = synthesize(target[0], str(context_run), context=context[0], context_labels=context_labels[0])
    assert out.shape == (150, 140) and out.dtype == np.float64
    region = region_slices(target, context_labels)[0]
    assert (region & (context_labels[0] > 0) & (target[0] == 0)).any()   # the context's own LV is in the region
    assert np.array_equal(out[~region], context[0][~region])


def test_the_changed_region_gives_every_changed_pixel_to_the_generator_alone():
    from napari_lvseg.models.pix2pix import blend_weights, changed_region

    before = torch.zeros(1, 40, 40, dtype=torch.long)
    before[0, 10:30, 10:30] = 2
    after = before.clone()
    after[0, 18:22, 10:14] = 3   # a lesion drawn into the wall
    region = changed_region(after, before, 3)
    assert region[0, 15:25, 7:17].all() and int(region.sum()) == 10 * 10   # the change grown by 3 (square steps)
    w = blend_weights(region, 3)
    assert torch.all(w[after != before] == 1.0)                            # the new lesion is the generator's alone
    assert torch.equal(w[~region], torch.zeros_like(w[~region])) and float(w[0, 15, 12]) == 0.25


def test_only_what_changed_is_redrawn_and_the_rest_of_that_heart_stays_real(context_run):
    from scipy import ndimage as ndi

    image, own = make_phantom(n_slices=2, seed=3)
    edited = own.copy()
    ys, xs = np.nonzero(own[0] == 2)
    sector = xs < np.percentile(xs, 20)                # the wall's left fifth becomes infarct, in slice 0 only
    edited[0][ys[sector], xs[sector]] = 3
    out = synthesize(edited, str(context_run), seed=1, context=image, context_labels=own, fill="changes")
    changed = edited != own
    near = ndi.binary_dilation(changed, structure=np.ones((1, 3, 3)), iterations=3)
    assert np.array_equal(out[~near], image[~near].astype(out.dtype))   # the rest of the heart too: slice 1 whole
    assert (out[changed] != image[changed]).all()
    from napari_lvseg.data.grain import residual

    smooth = synthesize(edited, str(context_run), seed=1, context=image, context_labels=own, fill="changes",
                        grain=False)
    texture = [np.corrcoef(residual(x[0])[changed[0]], residual(image[0])[changed[0]])[0, 1] for x in (out, smooth)]
    assert texture[0] > 0.5 > texture[1]   # the changed pixels keep their own fine texture (grain=False: none)
    whole = synthesize(edited, str(context_run), seed=1, context=image, context_labels=own)
    assert (whole[1][own[1] > 0] != image[1][own[1] > 0]).any()        # the default redraws the whole LV
    with pytest.raises(LvsegError, match="nothing changed to fill in") as err:
        synthesize(own, str(context_run), context=image, context_labels=own, fill="changes", name="own.nii.gz")
    assert "own.nii.gz" in str(err.value)   # the mask is named: it is what was not edited
    with pytest.raises(LvsegError, match="needs a context image and its own labels"):
        synthesize(edited, str(context_run), context=image, fill="changes")
    with pytest.raises(LvsegError, match="unknown fill 'edits'"):
        synthesize(edited, str(context_run), context=image, context_labels=own, fill="edits")


@pytest.mark.parametrize("change, message", [
    (lambda c: c[:, :-1], "context image has shape"),
    (lambda c: np.where(c > c.mean(), np.nan, c), "NaN"),
])
def test_bad_contexts_are_refused_in_one_line(context_run, lv_mask, change, message):
    image = make_phantom(n_slices=2, seed=3)[0]
    with pytest.raises(LvsegError, match=message) as err:
        synthesize(lv_mask, str(context_run), context=change(image), context_name="ctx.nii.gz")
    assert "ctx.nii.gz" in str(err.value) and "\n" not in str(err.value)


def test_generators_and_contexts_must_agree(context_run, run, lv_mask):
    image = make_phantom(n_slices=2, seed=3)[0]
    with pytest.raises(LvsegError, match="give a context image"):
        synthesize(lv_mask, str(context_run))
    with pytest.raises(LvsegError, match="takes no context image"):
        synthesize(lv_mask, str(run[0]), context=image)


def _ring(shape, center, radius):
    from napari_lvseg.data.simulator import draw_lv_ring

    return draw_lv_ring(shape, center, radius, radius * 0.4)


def test_donors_are_ranked_by_lv_size_and_moved_onto_the_mask():
    from napari_lvseg.synthesis import donor_context, donors_from_volumes, rank_donors

    image = np.arange(100 * 100, dtype=np.float32).reshape(100, 100)
    donors = donors_from_volumes([("small", image, _ring((100, 100), (50, 50), 8)),
                                  ("large", image, _ring((100, 100), (50, 50), 25)),
                                  ("stack", np.stack([image, image]),
                                   np.stack([np.zeros((100, 100), np.uint8), _ring((100, 100), (40, 60), 15)]))])
    assert [d.name for d in donors] == ["small slice 0", "large slice 0", "stack slice 1"]   # LV slices only
    mask = _ring((80, 90), (30, 50), 14)
    assert [d.name for d in rank_donors(mask, donors)] == ["stack slice 1", "small slice 0", "large slice 0"]
    assert [d.name for d in rank_donors(_ring((80, 90), (40, 40), 24), donors)][0] == "large slice 0"
    context, labels = donor_context(mask, donors[2])
    assert context.shape == labels.shape == mask.shape
    ys, xs = np.nonzero(labels)
    assert abs(ys.mean() - 30) < 1 and abs(xs.mean() - 50) < 1                  # its LV where the mask's is
    assert context[30, 50] == image[40, 60]                                    # the image moved with it


def test_a_drawn_mask_gets_a_donor_and_keeps_its_surroundings(context_run, pairs):
    from napari_lvseg.synthesis import donor_contexts, read_donors, region_slices

    donors = read_donors(pairs)
    assert donors and all(d.image.ndim == 2 for d in donors)
    mask = _ring((128, 128), (60, 70), 18)
    context, context_labels, names = donor_contexts(mask, donors)
    assert names == [read_and_rank(mask, donors)]
    out = synthesize(mask, str(context_run), donors=donors)
    region = region_slices(mask[None], context_labels[None])[0]
    assert np.array_equal(out[~region], context[~region])
    other = synthesize(mask, str(context_run), donors=donors, donor=1)
    assert not np.array_equal(out, other)                                      # the user chose another donor
    with pytest.raises(LvsegError, match="donor rank 999"):
        synthesize(mask, str(context_run), donors=donors, donor=999)


def read_and_rank(mask, donors):
    from napari_lvseg.synthesis import rank_donors

    return rank_donors(mask, donors)[0].name


def test_the_default_generator_is_the_context_one_where_a_context_is_given(context_run, run, models_dir):
    from napari_lvseg.models.registry import register_model
    from napari_lvseg.synthesis import default_generator

    register_model(context_run, "ctx-gen")
    assert default_generator(context=True) in ("ctx-gen", "lvseg-pix2pix-context")
    assert default_generator(context=False) != "ctx-gen"


def test_evaluate_synthesis_of_a_context_generator(context_run, pairs):
    result = evaluate_synthesis(str(context_run), pairs, cases=["phantom_P0"])
    assert result["n_slices"] == 3 and np.isfinite(result["psnr"])


def test_clean_islands_keeps_the_largest_piece_per_class_and_says_where():
    from napari_lvseg.synthesis import clean_islands, describe_islands

    ring = _ring((64, 64), (32, 32), 10)
    spotted = np.stack([ring, ring])
    spotted[1, 5, 5] = 1      # cavity speck outside the LV
    spotted[1, 32, 32] = 2    # wall speck in the cavity
    assert anatomy_problems(spotted)
    cleaned, islands = clean_islands(spotted)
    assert anatomy_problems(cleaned) == [] and np.array_equal(cleaned, np.stack([ring, ring]))
    assert sorted((i["slice"], i["label"], i["pixels"], i["at"]) for i in islands) == [
        (1, "cavity", 1, (5, 5)), (1, "wall", 1, (32, 32))]
    assert "slice 1: wall 1 px at (32, 32)" in describe_islands(islands)
    assert clean_islands(ring)[1] == []
