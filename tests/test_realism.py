"""Realism measures (realism.py): the real-vs-synthetic two-sample test, LGE physics checks, feature-distance names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_lvseg import realism
from napari_lvseg.data.simulator import draw_lv_ring
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW

torch.set_num_threads(1)


def textures(n, seed, size=24):
    """Smooth random images (N, size, size): one distribution."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    return np.stack([ndi.gaussian_filter(rng.standard_normal((size, size)), 1.5) for _ in range(n)]).astype(np.float32)


def test_the_binomial_interval_is_the_exact_one():
    low, high = realism.binomial_interval(50, 100)
    assert low == pytest.approx(0.3983, abs=1e-3) and high == pytest.approx(0.6017, abs=1e-3)
    assert realism.binomial_interval(0, 10)[0] == 0.0 and realism.binomial_interval(10, 10)[1] == 1.0
    with pytest.raises(LvsegError, match="0 <= successes <= n"):
        realism.binomial_interval(11, 10)


def test_the_classifier_separates_a_trivially_different_set():
    real, fake = textures(96, 0), textures(96, 1)
    fake[:, 8:16, 8:16] += 2.0   # a bright square: trivially told apart
    result = realism.two_sample_test(real[:64], fake[:64], real[64:], fake[64:], epochs=8, width=8)
    assert result["accuracy"] > 0.9 and result["ci95"][0] > 0.75
    assert result["paired_accuracy"] > 0.9 and result["n"] == 64


def test_the_classifier_scores_chance_on_two_halves_of_one_set():
    images = textures(320, 2)
    result = realism.two_sample_test(images[0:80], images[80:160], images[160:240], images[240:320], epochs=8,
                                     width=8)
    assert 0.35 <= result["accuracy"] <= 0.65
    assert result["ci95"][0] <= 0.5 <= result["ci95"][1] or abs(result["accuracy"] - 0.5) < 0.1
    assert result["n"] == 160 and 0.3 <= result["paired_accuracy"] <= 0.7


def test_the_classifier_is_deterministic_for_a_seed_and_refuses_too_few_crops():
    a, b = textures(20, 3), textures(20, 4)
    first = realism.two_sample_test(a[:10], b[:10], a[10:], b[10:], epochs=2, width=4)
    second = realism.two_sample_test(a[:10], b[:10], a[10:], b[10:], epochs=2, width=4)
    assert first["correct"] == second["correct"] and first["threshold"] == second["threshold"]
    with pytest.raises(LvsegError, match="at least 2 real and 2 synthetic"):
        realism.train_classifier(a[:1], b[:5])
    with pytest.raises(LvsegError, match="of one size"):
        realism.train_classifier(a, textures(5, 1, size=16))


def test_the_threshold_is_the_one_that_calls_the_training_crops_right():
    assert 0.6 < realism.best_threshold(np.array([0.7, 0.8, 0.9]), np.array([0.5, 0.55, 0.6])) < 0.7


def lge_case(values, n_slices=2, size=64):
    """A ring with an infarct and no-reflow, each class at its intensity in ``values`` (+ a little noise)."""
    labels = draw_lv_ring((size, size), (size / 2, size / 2), 12, 6)
    labels[(labels == MYOCARDIUM) & (np.arange(size)[None, :] > size / 2 + 12)] = INFARCT
    labels[(labels == INFARCT) & (np.arange(size)[:, None] > size / 2 - 2) & (np.arange(size)[:, None] < size / 2 + 2)
           & (np.arange(size)[None, :] < size / 2 + 15)] = NO_REFLOW
    rng = np.random.default_rng(0)
    image = np.choose(labels, values).astype(np.float32) + rng.normal(0, 0.01, labels.shape)
    return np.stack([image] * n_slices), np.stack([labels] * n_slices)


def test_physics_checks_pass_on_lge_contrast_and_fail_when_it_is_swapped():
    # background, cavity, myocardium, infarct, no-reflow
    image, labels = lge_case([0.3, 0.8, 0.2, 0.95, 0.1])
    good = realism.physics_checks(image, labels)
    assert good["passes"] and all(good[c] for c in realism.CHECKS) and good["has_infarct"]
    assert good["means"]["infarct"] > good["means"]["myocardium"]
    swapped, _ = lge_case([0.3, 0.1, 0.95, 0.2, 0.8])   # infarct dark, no-reflow bright, blood pool dark
    bad = realism.physics_checks(swapped, labels)
    assert bad["passes"] is False and not any(bad[c] for c in realism.CHECKS)
    healthy = labels.copy()
    healthy[healthy >= INFARCT] = MYOCARDIUM
    none = realism.physics_checks(image, healthy)
    assert none["infarct_brighter_than_myocardium"] is None and none["no_reflow_darker_than_infarct"] is None
    assert none["has_infarct"] is False
    summary = realism.physics_summary([good, bad, none])
    assert summary["n_infarct_cases"] == 2 and summary["pass_rate"] == 0.5
    assert summary["infarct_brighter_than_myocardium"] == {"rate": 0.5, "passed": 1, "n": 2}


def test_bad_images_are_refused_in_one_line_naming_them():
    image, labels = lge_case([0.3, 0.8, 0.2, 0.95, 0.1])
    with pytest.raises(LvsegError, match="Case_X: images .* and masks .* must be slices"):
        realism.physics_checks(image[:, :10], labels, "Case_X")
    nan = image.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(LvsegError, match="Case_X: images contain NaN"):
        realism.lv_crops(nan, labels, 32, "Case_X")
    with pytest.raises(LvsegError, match="classes 0..4"):
        realism.physics_checks(image, labels + 3, "Case_X")


def test_lv_crops_centre_the_lv_and_normalise_each_slice():
    labels = np.zeros((1, 128, 128), np.uint8)
    labels[0] = draw_lv_ring((128, 128), (40, 90), 10, 4)
    image = np.where(labels == CAVITY, 1000.0, 100.0).astype(np.float32)
    crops = realism.lv_crops(image, labels, 32)
    assert crops.shape == (1, 32, 32)
    assert crops[0, 16, 16] == pytest.approx(1.0) and crops[0, 0, 0] == pytest.approx(0.0)
    image[0, 30:50, 70:75] = 5000.0   # a bright spot beside the LV ...
    spot = realism.lv_crops(image, labels, 32)
    assert spot.max() == 1.0 and (spot == 1.0).sum() > (crops == 1.0).sum()   # ... clipped to the 99th percentile
    heart = realism.lv_crops(np.where(labels == 0, 500.0, image), labels, 32, lv_margin=0)
    assert (heart[0][np.asarray(labels[0][24:56, 74:106]) == 0] == 0).all()   # only the LV is left


def test_feature_distance_is_renamed_and_old_results_stay_readable():
    old = {"fid": 0.432, "kid": 0.0042, "kid_std": 0.001, "psnr": 16.2}
    new = realism.feature_distance_names(old)
    assert "fid" not in new and new["feature_distance"] == 0.432 and new["kernel_distance"] == 0.0042
    assert new["feature_distance_name"] == "feature distance (our encoder)"
    assert realism.result_value(old, "feature_distance") == 0.432
    assert realism.result_value(new, "feature_distance") == 0.432
    assert realism.result_value(old, "kernel_distance_std") == 0.001 and realism.result_value(old, "psnr") == 16.2
    assert realism.result_value({}, "feature_distance") is None


def test_measure_realism_on_real_cases(emidec_dir):
    """The whole measurement on 3 + 2 real cases with an untrained tiny generator: it runs and reports."""
    from napari_lvseg.engine.synthesis import synthesis_normalization
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.pix2pix import Pix2PixGenerator

    net = Pix2PixGenerator(base_width=4, depth=3).eval()
    card = ModelCard(name="tiny", task="synthesis", architecture="Pix2PixGenerator", params=net.architecture_params(),
                     normalization=synthesis_normalization([1790.0, 3152.0]), input_size=128)
    result = realism.measure_realism((net, card), emidec_dir, ["Case_P022", "Case_N013", "Case_P059"],
                                     ["Case_P064", "Case_N042"], crop=32, epochs=2, width=4)
    test = result["two_sample_test"]
    assert test["n"] == 2 * result["n_test_slices"] and 0 <= test["accuracy"] <= 1
    assert result["rendering"]["context"] is False
    real = result["physics"]["test"]["real"]
    assert real["summary"]["n_infarct_cases"] == 1 and real["summary"]["pass_rate"] == 1.0   # real LGE passes
    assert set(real["cases"]) == {"Case_P064", "Case_N042"}
    with pytest.raises(LvsegError, match="overlap: Case_P022"):
        realism.measure_realism((net, card), emidec_dir, ["Case_P022"], ["Case_P022"])


def test_realism_controls_change_the_lv_region_only_and_identity_not_at_all():
    import importlib

    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.synthesis import region_slices

    controls = importlib.import_module("training.realism_controls")
    image, labels = make_phantom(n_slices=2, seed=1)
    image = image + np.random.default_rng(0).normal(0, 100, image.shape)
    region = region_slices(labels, labels)
    assert np.array_equal(controls.changed(image, labels, "identity"), image.astype(np.float32))
    for kind in ("blur:1", "blur:1+grain", "grain"):
        out = controls.changed(image, labels, kind)
        assert np.array_equal(out[~region], image.astype(np.float32)[~region]), kind
        assert not np.allclose(out[region], image[region]), kind
    smooth, regrained = controls.changed(image, labels, "blur:1"), controls.changed(image, labels, "blur:1+grain")
    assert np.std(np.diff(regrained[region])) > np.std(np.diff(smooth[region]))   # grain given back
    with pytest.raises(SystemExit, match="unknown control"):
        controls.changed(image, labels, "sharpen")


def test_measure_realism_of_edited_masks_judges_only_the_slices_an_edit_changed(emidec_dir):
    """Each case's mask edited once, rendered by an untrained tiny context generator redrawing only what changed."""
    from napari_lvseg.engine.synthesis import synthesis_normalization
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.pix2pix import Pix2PixGenerator
    from napari_lvseg.synthesis_edits import read_cases

    net = Pix2PixGenerator(in_channels=7, base_width=4, depth=3, conditioning="context").eval()
    card = ModelCard(name="tiny-ctx", task="synthesis", architecture="Pix2PixGenerator",
                     params=net.architecture_params(), normalization=synthesis_normalization([1790.0, 3152.0]),
                     input_size=128)
    train, test = ["Case_P022", "Case_N013", "Case_P059"], ["Case_P064", "Case_N042"]
    result = realism.measure_realism((net, card), emidec_dir, train, test, crop=32, epochs=2, width=4, edits=True,
                                     fill="changes")
    assert result["rendering"]["context"] is True and result["rendering"]["fill"] == "changes"
    assert set(result["edits"]["test"]) == set(test)
    edited = {c: e for c, _, _, e, _ in realism.edited_masks(read_cases(emidec_dir, test))}
    changed = sum(int((edited[c] != labels).any(axis=(1, 2)).sum()) for c, _, labels in read_cases(emidec_dir, test))
    assert 0 < result["n_test_slices"] == changed < sum(len(e) for e in edited.values())
    assert result["two_sample_test"]["n"] == 2 * changed
    fidelity = result["edit_fidelity"]["test"]
    assert fidelity["myocardium"]["real_class"] < fidelity["infarct"]["real_class"]   # real LGE: the infarct bright
    assert all(v["n_cases"] <= len(test) for v in fidelity.values())
