"""A receive coil's shading measured on the heart's blood pool and normal myocardium, and divided out before the
model reads the image again."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.data.shading import SHADING_TRIGGER, shading_to_correct, tissue_field


def heart(shape=(3, 96, 96), center=(48, 46), radius=20, seed=0):
    """Blood pool 1000, wall 500, surroundings 100, 1 % noise; and its labels."""
    rng = np.random.default_rng(seed)
    r = np.hypot(*(np.mgrid[: shape[-2], : shape[-1]] - np.array(center, float)[:, None, None]))
    labels = np.where(r < radius / 2, 1, np.where(r < radius, 2, 0)).astype(np.uint8)
    image = np.choose(labels, [100.0, 1000.0, 500.0]) * (1 + rng.normal(0, 0.01, shape))
    return image.astype(np.float32), np.broadcast_to(labels, shape).copy()


def plane(shape, spread_across_heart, radius=20):
    """A multiplicative field rising along x, ``spread_across_heart`` from one side of the LV to the other."""
    xx = np.mgrid[: shape[-2], : shape[-1]][1].astype(np.float64)
    return np.exp(np.log(spread_across_heart) * (xx - xx.mean()) / (2 * radius)).astype(np.float32)


def test_the_field_the_heart_shows_is_measured_and_an_unshaded_heart_shows_none():
    image, labels = heart()
    field, spread = tissue_field(image, labels)
    assert spread == pytest.approx(1.0, abs=0.03) and np.allclose(field, 1.0, atol=0.05)
    assert shading_to_correct(image, labels) == (None, pytest.approx(spread))
    shaded = image * plane(image.shape, 2.0)
    field, spread = tissue_field(shaded, labels)
    assert spread == pytest.approx(2.0, rel=0.05)   # over the wall's outer edge, 40 px across
    corrected = shaded / field
    wall = corrected[labels == 2]
    assert wall.std() / wall.mean() < 0.03   # one tissue, one intensity again
    assert shading_to_correct(shaded, labels)[0] is not None and SHADING_TRIGGER < 2.0


def test_too_few_pixels_or_intensities_that_are_not_positive_give_no_field():
    image, labels = heart()
    assert tissue_field(image, np.zeros_like(labels)) is None
    assert tissue_field(image - 600.0, labels) is None   # a PSIR image's signed values: no log to fit
    zeros = image.copy()
    zeros[:, 48, 27:30] = 0.0   # a few clipped pixels of the wall: left out of the fit, not a reason to give up
    assert tissue_field(zeros, labels)[1] == pytest.approx(1.0, abs=0.03)
    only_cavity = np.where(labels == 2, 0, labels)
    assert tissue_field(image, only_cavity) is None   # one tissue: its offset and a plane cannot be told apart


def test_segmenting_divides_out_the_shading_it_finds_and_leaves_an_even_heart_alone(monkeypatch):
    """The plane's division, as a view gets it under a milder field (`inference.SHADED_FIELD_TRIGGER`); a stronger
    one is read flattened (below)."""
    from test_inference import BrightCavityMidWall, dice

    from napari_lvseg import inference
    from napari_lvseg.inference import segment
    from napari_lvseg.models.card import ModelCard

    monkeypatch.setattr(inference, "STRONG_SHADING_FLATTENED", False)

    card = ModelCard(name="oracle", task="segmentation", architecture="AttentionResUNet", input_size=96)
    model = (BrightCavityMidWall(), card)
    image, labels = heart()
    even = segment(image, model)
    assert not even.info["shading_corrected"] and even.info["passes"] == 1
    shading = image * plane(image.shape, 1.7)
    shaded = segment(shading, model, postprocessing=False)
    uncorrected = segment(shading, model, postprocessing=False, shading_correction=False)
    assert shaded.info["shading_corrected"] and shaded.info["passes"] == 2 and shaded.info["shading"] > 1.4
    assert not uncorrected.info["shading_corrected"] and uncorrected.info["passes"] == 1
    for k in (1, 2):
        assert dice(even.labels == k, labels == k) > 0.95
        assert dice(shaded.labels == k, labels == k) > 0.95


def test_a_view_under_a_strong_field_is_read_again_flattened():
    """Above `SHADING_TRIGGER` across the heart the second pass reads the view flattened (each slice divided by its
    own smoothing, `flatten`), not divided by the plane: a coil's field curves within the heart."""
    from test_inference import Recording

    from napari_lvseg.data.normalize import normalize_view
    from napari_lvseg.data.shading import FLATTEN_SIGMA, flatten
    from napari_lvseg.inference import segment
    from napari_lvseg.models.card import ModelCard

    card = ModelCard(name="oracle", task="segmentation", architecture="AttentionResUNet", input_size=96)
    net = Recording()
    image, _ = heart()
    shaded = image * plane(image.shape, 1.7)
    result = segment(shaded, (net, card), postprocessing=False)
    assert result.info["shading_corrected"] and result.info["passes"] == 2
    valid = np.ones(shaded.shape[-2:], bool)
    flat = normalize_view(flatten(shaded, valid, FLATTEN_SIGMA * 96), valid, None)
    assert len(net.inputs) == 2 and np.allclose(net.inputs[1][:, 0].numpy(), flat, atol=1e-5)
