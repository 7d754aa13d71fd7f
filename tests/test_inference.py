"""Inference: shapes, crop/paste for any size, LV finding, TTA, uncertainty, post-processing, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_lvseg.errors import LvsegError
from napari_lvseg.inference import SegmentationResult, segment, segment_steps
from napari_lvseg.models.card import ModelCard
from napari_lvseg.postprocess import labels_from_probabilities, postprocess


class BrightIsCavity(nn.Module):
    """An oracle 'network': cavity where the normalised input is bright, background elsewhere."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        bright = (x > 0.5).float() * 8.0
        zeros = torch.zeros_like(x)
        return torch.cat([8.0 - bright, bright, zeros, zeros, zeros], dim=1) + 0 * self.dummy


@pytest.fixture
def oracle():
    card = ModelCard(name="oracle", task="segmentation", architecture="AttentionResUNet", input_size=64)
    return BrightIsCavity(), card


def disk(shape, center, radius):
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    return ((yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2)


def image_with_disk(shape, center, radius=10, seed=0):
    rng = np.random.default_rng(seed)
    img = 100 + rng.normal(0, 2, shape).astype(np.float32)
    img[..., disk(shape, center, radius)] += 500
    return img


@pytest.mark.parametrize("shape", [(64, 64), (3, 64, 64), (40, 50), (2, 48, 80)])
def test_output_matches_input_shape(oracle, shape):
    img = image_with_disk(shape, (shape[-2] // 2, shape[-1] // 2), radius=8)
    result = segment(img, oracle)
    assert result.labels.shape == img.shape and result.labels.dtype == np.uint8
    assert np.array_equal(result.labels == 1, np.broadcast_to(disk(shape, (shape[-2] // 2, shape[-1] // 2), 8), shape))


def test_large_image_finds_the_lv_and_pastes_back(oracle):
    shape = (2, 200, 180)
    img = image_with_disk(shape, (140, 50), radius=20)  # 3.5 % of the image: above the 99th percentile
    result = segment(img, oracle)
    assert result.labels.shape == shape
    assert np.array_equal(result.labels[0] == 1, disk(shape, (140, 50), 20))
    assert abs(result.center[0] - 140) < 3 and abs(result.center[1] - 50) < 3


def test_explicit_center_is_used(oracle):
    shape = (200, 180)
    img = image_with_disk(shape, (150, 40), radius=20)
    far = segment(img, oracle, center=(40, 140))  # the model's view misses the disk entirely
    near = segment(img, oracle, center=(145, 45)).labels
    assert far.center == (40, 140) and far.info["window"] == ((8, 72), (108, 172))   # the 64-pixel view there
    assert not far.labels[disk(shape, (150, 40), 20)].any()
    assert (near == 1).sum() == disk(shape, (150, 40), 20).sum()


def test_a_given_centre_stays_when_the_view_is_zoomed(scaled_oracle):
    """A card that rescales: the second pass changes the zoom, never the user's centre."""
    image, truth = ring_image((2, 64, 64), (30, 33), 10)   # an LV of 20 pixels: below the 27-33 range
    result = segment(image, scaled_oracle, center=(31.0, 32.0))
    assert result.center == (31.0, 32.0) and result.info["passes"] == 2
    assert result.info["zoom"] == pytest.approx(27 / 20, rel=0.1)
    assert dice(result.labels == 1, truth == 1) > 0.85


@pytest.mark.parametrize("center", [(200, 10), (-1, 10), (10, 180), (float("nan"), 5)])
def test_center_off_the_image_is_refused(oracle, center):
    with pytest.raises(LvsegError, match=r"scan.tif: centre \(.*\) lies outside the 200x180 image"):
        segment(image_with_disk((200, 180), (100, 90), radius=20), oracle, center=center, name="scan.tif")


def test_center_needs_two_values(oracle):
    with pytest.raises(LvsegError, match=r"a crop centre is \(y, x\), not \(1, 2, 3\)"):
        segment(image_with_disk((64, 64), (30, 34), radius=9), oracle, center=(1, 2, 3))


def test_tta_and_uncertainty(oracle):
    img = image_with_disk((2, 64, 64), (30, 34), radius=9)
    plain, tta = segment(img, oracle), segment(img, oracle, tta=True, uncertainty=True)
    assert np.array_equal(plain.labels, tta.labels)  # the oracle is flip-equivariant
    assert tta.uncertainty.shape == img.shape and 0 <= tta.uncertainty.min() and tta.uncertainty.max() <= 1
    assert plain.uncertainty is None


def test_uncertainty_in_view_is_the_models_square_only(oracle):
    large = image_with_disk((2, 128, 128), (62, 66), radius=9)
    result = segment(large, oracle, uncertainty=True)
    view, offset = result.uncertainty_in_view()
    y0, x0 = result.info["box"]
    assert view.shape == (2, 64, 64) and list(offset) == [0, y0, x0] and 0 < y0 < 64
    assert np.array_equal(view, result.uncertainty[:, y0:y0 + 64, x0:x0 + 64]) and view.max() > 0
    small = segment(large[0, 40:80, 40:90], oracle, uncertainty=True)   # smaller than the view: all of it
    view, offset = small.uncertainty_in_view()
    assert view.shape == (40, 50) and list(offset) == [0, 0]
    by_hand = SegmentationResult(np.zeros((3, 9), np.uint8), np.ones((3, 9), np.float32))   # no view recorded
    view, offset = by_hand.uncertainty_in_view()
    assert view.shape == (3, 9) and list(offset) == [0, 0]


def test_uncertainty_score_does_not_depend_on_the_image_size(oracle):
    from napari_lvseg.inference import uncertainty_scores

    large = image_with_disk((2, 128, 128), (62, 66), radius=9)
    small = large[:, 32:96, 32:96]   # the same heart in a smaller field of view, the model's 64 pixels
    (_, _, score_small), (_, result, score_large) = uncertainty_scores([("a", small), ("b", large)], oracle)
    assert result.uncertainty.shape == large.shape and score_small > 0
    # the mean over the whole image, with 0 outside the model's view, would be 4x smaller for the large one
    assert score_large == pytest.approx(score_small, rel=0.2)


@pytest.mark.parametrize("tta", [False, True])
def test_segment_steps_report_each_forward_pass_and_stop_between_them(oracle, tta):
    from napari_lvseg.inference import probability_steps, segment_step_count, segment_steps

    img = image_with_disk((10, 64, 64), (30, 34), radius=9)
    total = probability_steps(10, tta, batch_size=4)
    assert total == (12 if tta else 3)   # 3 batches of at most 4 slices, 4 TTA rotations each
    count = segment_step_count(img, tta, batch_size=4, size=64)
    assert count == 2 * total   # a pass, and one more where the heart shows a coil's shading
    steps = segment_steps(img, oracle, tta=tta, batch_size=4)
    assert [next(steps) for _ in range(total)] == [(k, count) for k in range(1, total + 1)]
    assert next(steps) == (count, count)   # no shading here: the count jumps to the end
    with pytest.raises(StopIteration) as end:
        next(steps)
    assert np.array_equal(end.value.value.labels, segment(img, oracle, tta=tta, batch_size=4).labels)

    net, _ = oracle
    net.train()
    steps = segment_steps(img, oracle, tta=tta, batch_size=4)
    next(steps)
    assert not net.training and not torch.is_inference_mode_enabled()   # no inference mode held across a step
    steps.close()   # a stopped worker's generator, closed when it is collected
    assert net.training   # the network's mode is given back
    segment(image_with_disk((2, 150, 150), (70, 80), radius=9), oracle)   # larger than the grid: LV search first
    assert net.training


def test_the_lv_search_in_a_large_image_is_made_of_steps_a_stop_falls_between(oracle):
    from napari_lvseg.inference import segment_step_count, segment_steps

    img = image_with_disk((6, 400, 150), (330, 60), radius=20)   # the LV near the bottom of a tall image
    total = segment_step_count(img, batch_size=8, size=64)
    # 2 + 2 slices searched, the middle two twice again where they show a coil's shading (the field divided out,
    # and flattened); a pass, a shading pass
    assert total == 4 + 2 * 2 + 1 + 1 and segment_step_count(img, center=(330, 60), size=64) == 2
    assert segment_step_count(img, size=64, shading=False) == 4 + 1
    steps = segment_steps(img, oracle)
    # the middle two slices show the LV and no shading: the quarter slices are not read, and the count jumps past
    # them and the search's second reading (and past the shading pass, not needed)
    assert [next(steps) for _ in range(4)] == [(1, total), (2, total), (8, total), (9, total)]
    assert next(steps) == (total, total)
    with pytest.raises(StopIteration) as end:
        next(steps)
    cy, cx = end.value.value.center
    assert abs(cy - 330) < 3 and abs(cx - 60) < 3
    net, _ = oracle
    net.train()
    steps = segment_steps(img, oracle)
    next(steps)   # inside the search
    steps.close()
    assert net.training


def test_the_lv_search_reads_the_quarter_slices_where_the_middle_ones_show_no_lv(oracle):
    from napari_lvseg.inference import segment_steps

    img = image_with_disk((6, 300, 150), (230, 60), radius=20)
    img[2:] = 100.0   # the heart in slices 0 and 1 only, nothing in the others
    steps = list(segment_steps(img, oracle, batch_size=8))   # middle slices 2, 3, then quarters 1, 4
    assert [d for d, _ in steps] == [1, 2, 3, 4, 8, 9, 10]   # 5-8: the middle slices unshaded and flattened, not
    # needed; 10: the shading pass's count, not needed
    result = segment(img, oracle)
    assert result.info["lv_found"] and result.center == pytest.approx((230, 60), abs=3)
    blank = np.broadcast_to(np.arange(6, dtype=np.float32)[:, None, None], (6, 300, 150)).copy()
    blank[0, 0, 0] = 50.0   # no heart anywhere: one stray pixel, which the normalisation clips away
    result = segment(blank, oracle)
    assert not result.info["lv_found"] and not result.labels.any()
    with pytest.raises(LvsegError, match="every slice is blank"):
        segment(blank[1:], oracle)


class BrightCavityMidWall(nn.Module):
    """An oracle: cavity where the normalised input is bright, myocardium where it is mid-grey."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        x = x[:, x.shape[1] // 2:x.shape[1] // 2 + 1]
        cavity, wall = (x > 0.7).float(), ((x > 0.3) & (x <= 0.7)).float()
        zeros = torch.zeros_like(x)
        return 8.0 * torch.cat([1 - cavity - wall, cavity, wall, zeros, zeros], dim=1) + 0 * self.dummy


class RoughnessShy(BrightCavityMidWall):
    """The oracle, less sure where the input is rough at the pixel scale (a texture only full resolution shows)."""

    def forward(self, x):
        mid = x[:, x.shape[1] // 2:x.shape[1] // 2 + 1]
        rough = (mid - nn.functional.avg_pool2d(mid, 3, 1, 1, count_include_pad=False)).abs()
        return super().forward(x) / (1 + 20 * rough)


def test_of_two_lv_like_components_the_search_keeps_the_one_read_most_surely_at_full_resolution(monkeypatch):
    """Two walled cavities; the larger one (the search's first choice at its shrunk size) carries a pixel-scale
    texture that the shrunk reading averages away and the full-resolution one is unsure of: the other one wins."""
    from napari_lvseg import locate
    from napari_lvseg.steps import result_of

    img = np.zeros((2, 300, 300), np.float32)
    yy, xx = np.mgrid[:300, :300]
    for (cy, cx), radius in (((80, 80), 24), ((220, 200), 22)):
        r = np.hypot(yy - cy, xx - cx)
        img[:, r < radius] = 0.5
        img[:, r < radius * 0.55] = 1.0
    decoy = np.hypot(yy - 80, xx - 80) < 30
    img[:, decoy] += 0.12 * np.where((yy + xx) % 2 == 0, 1.0, -1.0)[decoy]
    assert result_of(locate.locate_steps(RoughnessShy(), img, 64))[0] == pytest.approx((220, 200), abs=2)
    monkeypatch.setattr(locate, "_surest", lambda net, stack, slices, candidates, *rest, **kw: candidates[0])
    assert result_of(locate.locate_steps(RoughnessShy(), img, 64))[0] == pytest.approx((80, 80), abs=2)


def test_the_search_divides_out_a_coil_field_it_finds_and_reads_its_slices_again(monkeypatch):
    """Under a strong field the oracle reads the bright side as one large walled "cavity"; where the field fit finds a
    field (here: the true one, at the search's view), the two middle slices are read again divided by it, and the
    heart is found. Without a field found, no second reading: the count jumps past it."""
    from napari_lvseg import locate
    from napari_lvseg.data import shading
    from napari_lvseg.data.resample import View, sample_view

    yy, xx = np.mgrid[:300, :300]
    img = np.full((6, 300, 300), 0.35, np.float32)
    r = np.hypot(yy - 200, xx - 60)
    img[:, r < 22], img[:, r < 12] = 0.6, 1.0
    field = np.exp(np.log(4.0) * (xx - 60) / 240.0).astype(np.float32)
    shaded = img * field
    view = View.around(None, 96 / 300, 96, shaded.shape)   # the search's view of a 300-pixel image, grid 64
    on_view = sample_view(field[None], view)[0][0]
    fits = []
    monkeypatch.setattr(shading, "shading_to_correct",
                        lambda image, labels, trigger: fits.append(trigger) or (on_view, 4.0))
    steps = locate.locate_steps(BrightCavityMidWall(), shaded, 64)
    counts = []
    with pytest.raises(StopIteration) as end:
        while True:
            counts.append(next(steps))
    assert end.value.value[0] == pytest.approx((200, 60), abs=2) and fits == [locate.SEARCH_SHADING_TRIGGER]
    # 2 slices, the same 2 divided by the field, and flattened; the quarters unread
    assert counts == [(1, 8), (2, 8), (3, 8), (4, 8), (5, 8), (6, 8), (8, 8)]
    monkeypatch.setattr(shading, "shading_to_correct", lambda image, labels, trigger: (None, 1.0))
    steps = list(locate.locate_steps(BrightCavityMidWall(), img, 64))
    assert steps == [(1, 8), (2, 8), (8, 8)]
    from napari_lvseg.steps import result_of

    assert result_of(locate.locate_steps(BrightCavityMidWall(), shaded, 64))[0] != pytest.approx((200, 60), abs=20)


def test_the_lv_search_takes_the_walled_cavity_not_the_largest_bright_patch():
    from napari_lvseg.locate import locate_steps
    from napari_lvseg.steps import result_of

    def find_lv_center(net, stack, size):
        return result_of(locate_steps(net, stack, size))[0]

    img = np.zeros((1, 300, 300), np.float32)
    img[0, 20:120, 20:120] = 1.0   # a flat bright patch: all "cavity", larger than the heart
    yy, xx = np.mgrid[:300, :300]
    r = np.hypot(yy - 220, xx - 200)
    img[0][r < 22] = 0.5   # the wall
    img[0][r < 12] = 1.0   # the cavity inside it
    assert find_lv_center(BrightCavityMidWall(), img, 64) == pytest.approx((220, 200), abs=1.5)
    img[0, 280:290, 10:290] = 0.5   # a stripe of "wall" along the frame's edge, with no cavity in it
    assert find_lv_center(BrightCavityMidWall(), img, 64) == pytest.approx((220, 200), abs=1.5)


def ring_image(shape, center, radius, seed=0):
    """An LV as `BrightCavityMidWall` reads it: a bright cavity of half ``radius`` in a mid-grey wall, on a dark
    noisy background; and its labels."""
    rng = np.random.default_rng(seed)
    r = np.hypot(*(np.mgrid[: shape[-2], : shape[-1]] - np.array(center, float)[:, None, None]))
    labels = np.where(r < radius / 2, 1, np.where(r < radius, 2, 0)).astype(np.uint8)
    image = np.choose(labels, [0.0, 1.0, 0.5]).astype(np.float32) + rng.normal(0, 0.02, shape).astype(np.float32)
    return np.broadcast_to(image, shape).copy(), np.broadcast_to(labels, shape).copy()


@pytest.fixture
def scaled_oracle():
    """The two-class oracle with a card that expects an LV of 30 pixels (27-33) on its 64-pixel grid."""
    card = ModelCard(name="scaled", task="segmentation", architecture="AttentionResUNet", input_size=64,
                     extra={"expects": {"lv_diameter_px": 30.0, "lv_diameter_range_px": [27.0, 33.0]}})
    return BrightCavityMidWall(), card


def dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("radius, zoom, passes", [(15, 1.0, 1), (10, 27 / 20, 2), (24, 33 / 48, 2)])
def test_the_view_brings_the_lv_to_the_size_the_card_expects(scaled_oracle, radius, zoom, passes):
    from napari_lvseg.inference import segment_step_count, segment_steps
    from napari_lvseg.locate import lv_diameter

    image, truth = ring_image((3, 64, 64), (32, 31), radius)
    steps = segment_steps(image, scaled_oracle, batch_size=1)
    total = segment_step_count(image, batch_size=1, size=64, rescales=True)
    assert total == 9   # two passes of 3 one-slice batches at most, and a shading pass
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as end:
            result = end.value
            break
    assert all(t == total for _, t in seen) and seen[-1] == (total, total)
    # one step per forward pass; where the second pass is not needed the count jumps to the end
    assert [d for d, _ in seen] == (list(range(1, 7)) + [9] if passes == 2 else [1, 2, 3, 9])
    assert result.info["passes"] == passes
    assert result.info["zoom"] == pytest.approx(zoom, rel=0.1)
    if passes == 2:   # the LV read at a size the card expects: the nearer end of its range
        assert 27 * 0.95 < lv_diameter(truth) * result.info["zoom"] < 33 * 1.05
    assert result.labels.shape == image.shape
    for k in (1, 2):   # labels on the image's own grid, where the truth is
        assert dice(result.labels == k, truth == k) > 0.9


def test_minimum_lesion_volumes_count_the_images_pixels(scaled_oracle):
    """A card's minimum volumes are in model pixels: at zoom 2, a quarter as many of the image's pixels."""
    from napari_lvseg.data.resample import View
    from napari_lvseg.inference import _labels_on_image
    from napari_lvseg.postprocess import check_postprocess

    prob = np.zeros((1, 5, 64, 64), np.float32)
    prob[0, 0] = 1
    prob[0, :, 20:40, 20:40] = 0
    prob[0, 3, 20:40, 20:40] = 1   # 400 model pixels of infarct: 100 image pixels at zoom 2
    post = check_postprocess({"min_infarct_voxels": 300, "largest_component": False})
    view = View.around((50, 50), 2.0, 64, (1, 100, 100))
    labels, _, _ = _labels_on_image(prob, np.ones((64, 64), bool), view, (1, 100, 100), post, False, "card")
    assert np.count_nonzero(labels == 3) == pytest.approx(100, abs=25)   # kept: 400 model pixels >= 300
    post = check_postprocess({"min_infarct_voxels": 500, "largest_component": False})
    labels, _, _ = _labels_on_image(prob, np.ones((64, 64), bool), view, (1, 100, 100), post, False, "card")
    assert np.count_nonzero(labels == 3) == 0 and np.count_nonzero(labels == 2) > 0


def test_a_whole_field_of_view_is_searched_coarsely_and_read_at_the_expected_size(scaled_oracle):
    """An LV of 60 pixels off-centre in 512 x 512, beside a flat bright patch: found, read at zoom 0.5, labels back
    on the full grid."""
    image, truth = ring_image((5, 512, 512), (380, 140), 30)
    image[:, 40:160, 300:460] = 1.0
    result = segment(image, scaled_oracle)
    assert result.center == pytest.approx((380, 140), abs=2)
    assert result.info["zoom"] == pytest.approx(33 / 60, rel=0.1) and result.info["lv_found"]
    for k in (1, 2):
        assert dice(result.labels == k, truth == k) > 0.9
    assert not result.labels[:, 40:160, 300:460].any()



def test_segment_steps_check_the_input_before_the_first_step(oracle):
    from napari_lvseg.inference import segment_steps

    with pytest.raises(LvsegError, match="image too small"):
        next(segment_steps(np.zeros((8, 8), np.float32), oracle))


def test_postprocess_keeps_the_largest_component_and_cleans_lesions():
    labels = np.zeros((2, 32, 32), np.uint8)
    labels[:, 8:20, 8:20] = 2
    labels[:, 11:17, 11:17] = 1
    labels[0, 28:30, 28:30] = 1           # stray blob
    labels[1, 8:10, 8:12] = 3             # infarct
    labels[1, 8:9, 8:10] = 4              # no-reflow inside it: kept
    labels[0, 18:19, 8:10] = 4            # no-reflow without infarct: becomes infarct
    out = postprocess(labels)
    assert out[0, 28:30, 28:30].sum() == 0
    assert (out[1, 8:9, 8:10] == 4).all() and (out[0, 18:19, 8:10] == 3).all()
    small = postprocess(labels, {"min_infarct_voxels": 100})
    assert not np.isin(small, (3, 4)).any() and (small[1, 8:10, 8:12] == 2).all()


def test_class_weights_turn_a_close_second_into_the_label():
    prob = np.zeros((1, 5, 2, 2), np.float32)
    prob[0, 2] = 0.5                      # myocardium first everywhere ...
    prob[0, 3, 0, 0], prob[0, 4, 1, 1] = 0.3, 0.2   # ... infarct and no-reflow close behind in two pixels
    assert (labels_from_probabilities(prob) == 2).all()
    assert (labels_from_probabilities(prob, {"infarct_weight": 1.0, "no_reflow_weight": 1.0}) == 2).all()
    weighted = labels_from_probabilities(prob, {"infarct_weight": 2.0, "no_reflow_weight": 3.0})
    assert weighted.tolist() == [[[3, 2], [2, 4]]]
    assert labels_from_probabilities(prob, {"infarct_weight": 2.0})[0, 1, 1] == 2  # 0.2 x 1 < 0.5


class FaintInfarct(nn.Module):
    """Infarct where the input is bright, but less sure of it than of background (logit 0.5 against 1)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        bright = (x > 0.5).float()
        zeros = torch.zeros_like(x)
        return torch.cat([1.0 + 8.0 * (1 - bright), zeros, zeros, 0.5 * bright, zeros], dim=1) + 0 * self.dummy


def test_segment_applies_the_cards_class_weights():
    img = image_with_disk((2, 64, 64), (30, 34), radius=9)
    card = ModelCard(name="faint", task="segmentation", architecture="AttentionResUNet", input_size=64)
    assert not segment(img, (FaintInfarct(), card)).labels.any()
    card.extra["postprocess"] = {"infarct_weight": 3.0}    # e^0.5 = 1.65 < 3
    labels = segment(img, (FaintInfarct(), card)).labels
    assert set(np.unique(labels)) == {0, 3} and np.array_equal(labels == 3, img > 300)
    assert not segment(img, (FaintInfarct(), card), postprocessing=False).labels.any()
    card.extra["postprocess"] = {"infarct_weight": "x3"}
    with pytest.raises(LvsegError, match="faint: post-processing class weights must be positive numbers"):
        segment(img, (FaintInfarct(), card))
    # a bad option is refused before any forward pass, even where post-processing is off
    card.extra["postprocess"] = {"lesions_touch_cavity": "3D"}
    steps = segment_steps(img, (FaintInfarct(), card))
    with pytest.raises(LvsegError, match="faint: post-processing lesions_touch_cavity must be one of"):
        next(steps)
    with pytest.raises(LvsegError, match="lesions_touch_cavity"):
        segment(img, (FaintInfarct(), card), postprocessing=False)
    card.extra["postprocess"] = {"infarct_weight": 3, "lesions_touch_cavity": False}   # JSON false: off
    assert np.array_equal(segment(img, (FaintInfarct(), card)).labels, labels)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 2, 64, 64)), "dimensions"),
    (np.full((64, 64), np.nan), "NaN"),
    (np.zeros((64, 8)), "too small"),
    (np.full((2, 64, 64), 7.0), r"image is blank \(every pixel is 7.0\)"),
    (np.zeros((64, 64, 3), np.uint8) + np.arange(64)[:, None, None].astype(np.uint8), "RGB"),
])
def test_bad_images_give_one_line_errors(oracle, bad, match):
    with pytest.raises(LvsegError, match=match) as info:
        segment(bad, oracle, name="scan.nii.gz")
    assert "scan.nii.gz" in str(info.value) and "\n" not in str(info.value)


class ReadsNeighbours(nn.Module):
    """A 2.5-D oracle (3 input channels): cavity where the slice *above* is bright."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def architecture_params(self):
        return {"in_channels": 3}

    def forward(self, x):
        assert x.shape[1] == 3, "a 2.5-D network gets the slice and one neighbour each side"
        bright = (x[:, :1] > 0.5).float() * 8.0
        zeros = torch.zeros_like(bright)
        return torch.cat([8.0 - bright, bright, zeros, zeros, zeros], dim=1) + 0 * self.dummy


def test_context_stacks_neighbours_and_repeats_the_ends():
    from napari_lvseg.data.normalize import with_context

    slices = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    stacked = with_context(slices, 1)
    assert stacked.shape == (4, 3, 2, 2)
    assert stacked[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert with_context(slices[:1], 2)[0, :, 0, 0].tolist() == [0, 0, 0, 0, 0]
    assert with_context(slices, 0).shape == (4, 1, 2, 2)


@pytest.mark.parametrize("tta", [False, True])
def test_a_2_5d_network_reads_each_slice_with_its_neighbours(tta):
    card = ModelCard(name="neighbours", task="segmentation", architecture="AttentionResUNet", input_size=64)
    noise = np.random.default_rng(0).normal(0, 1, (3, 64, 64)).astype(np.float32)
    stack = np.full((3, 64, 64), 100, np.float32) + noise
    stack[:, :12, :12] += 500  # every slice: a bright corner, so per-slice normalisation maps the rest to ~0
    centre = disk((64, 64), (32, 32), 10)
    stack[0][centre] += 500  # only slice 0 has the bright disk
    labels = segment(stack, (ReadsNeighbours(), card), tta=tta, postprocessing=False).labels
    # slice 0's upper neighbour is itself (the end repeats), slice 1's is slice 0: both see the disk
    assert (labels[0][centre] == 1).all() and (labels[1][centre] == 1).all()
    assert not (labels[2][centre] == 1).any()
    # a lone 2-D slice is its own neighbour
    assert (segment(stack[0], (ReadsNeighbours(), card)).labels[centre] == 1).all()


def test_lesions_away_from_the_cavity_become_myocardium_where_asked():
    labels = np.zeros((2, 32, 32), np.uint8)
    labels[:, 6:26, 6:26] = 2
    labels[:, 12:20, 12:20] = 1
    labels[:, 10:12, 12:16] = 3           # subendocardial in both slices: kept
    labels[0, 10:11, 12:14] = 4           # no-reflow inside it
    labels[0, 22:25, 8:11] = 3            # out in the wall, in slice 0 only: a false alarm
    labels[1, 20:24, 18:20] = 3           # touches the cavity in slice 1 ...
    labels[0, 22:24, 18:20] = 3           # ... and reaches slice 0 away from it
    assert (postprocess(labels) == labels).all()                                   # off by default
    in_3d = postprocess(labels, {"lesions_touch_cavity": "3d"})
    assert (in_3d[0, 22:25, 8:11] == 2).all() and (in_3d[0, 10:11, 12:14] == 4).all()
    assert (in_3d[1, 20:24, 18:20] == 3).all() and (in_3d[0, 22:24, 18:20] == 3).all()
    in_2d = postprocess(labels, {"lesions_touch_cavity": "2d"})
    assert (in_2d[0, 22:24, 18:20] == 2).all() and (in_2d[1, 20:24, 18:20] == 3).all()
    assert np.count_nonzero(in_2d != in_3d) == 4
    with pytest.raises(LvsegError, match="lesions_touch_cavity"):
        postprocess(labels, {"lesions_touch_cavity": "yes"})


def test_zoom_for_and_plausible_lv_bound_the_sizes_a_heart_can_have():
    from napari_lvseg.locate import ZOOM_RANGE, plausible_lv, zoom_for

    expected = (27.0, 30.0, 33.0)
    assert zoom_for(30, expected) == 1.0 and zoom_for(27, expected) == 1.0 and zoom_for(33, expected) == 1.0
    assert zoom_for(20, expected) == pytest.approx(27 / 20) and zoom_for(66, expected) == pytest.approx(0.5)
    assert zoom_for(2, expected) == ZOOM_RANGE[1] and zoom_for(1000, expected) == ZOOM_RANGE[0]
    assert plausible_lv(7, expected) and plausible_lv(130, expected)
    assert not plausible_lv(6, expected) and not plausible_lv(133, expected) and not plausible_lv(None, expected)


def test_a_speck_is_no_lv_and_the_search_reads_on(scaled_oracle):
    """With a card that says how large an LV is, a speck in the middle slices does not end the search: the quarter
    slices are read, and their LV is the one used."""
    from napari_lvseg.inference import segment_steps

    image, _ = ring_image((6, 300, 150), (230, 60), 30)
    image[2:] = 0.0
    image[2:, 100:102, 50:52] = 1.0   # a 2-pixel bright speck in the middle slices, no wall
    image[2:, 120:123, 50:53] = 0.5
    steps = list(segment_steps(image, scaled_oracle))
    result = segment(image, scaled_oracle)
    assert [d for d, _ in steps][:4] == [1, 2, 3, 4]   # both rounds of the search read
    assert result.info["lv_found"] and result.center == pytest.approx((230, 60), abs=3)


def test_a_files_pixel_size_reads_as_unknown_where_it_is_the_placeholder():
    from napari_lvseg.locate import pixel_size_mm

    assert pixel_size_mm((8.0, 1.4, 1.4)) == pytest.approx(1.4)
    assert pixel_size_mm((1.4, 1.6)) == pytest.approx(1.5)
    assert pixel_size_mm((1.0, 1.0, 1.0)) is None   # what the EMIDEC crops' headers carry
    for bad in (None, (8.0, float("nan"), 1.4), (8.0, 0.0, 1.4), (8.0, -1.4, -1.4), ("a", "b")):
        assert pixel_size_mm(bad) is None


@pytest.fixture
def pixel_oracle():
    """The two-class oracle with a card that expects an LV of 30 pixels (27-33) read at 1.2 mm pixels."""
    card = ModelCard(name="by-pixels", task="segmentation", architecture="AttentionResUNet", input_size=64,
                     extra={"expects": {"lv_diameter_px": 30.0, "lv_diameter_range_px": [27.0, 33.0],
                                        "pixel_size_mm": 1.2}})
    return BrightCavityMidWall(), card


def test_where_both_pixel_sizes_are_known_their_ratio_is_the_zoom(pixel_oracle, scaled_oracle):
    """An LV of 24 px at 1.8 mm: read at 1.8 / 1.2 = 1.5 (36 model pixels, a heart the training data could hold), not
    at the 27 / 24 the LV's size alone asks for; in one pass. Without a file pixel size, the LV's size sets it."""
    image, truth = ring_image((3, 64, 64), (32, 31), 12)
    result = segment(image, pixel_oracle, pixel_size=1.8)
    assert result.info["scale_from"] == "pixel size" and result.info["passes"] == 1
    assert result.info["zoom"] == pytest.approx(1.5)
    for k in (1, 2):
        assert dice(result.labels == k, truth == k) > 0.9
    by_size = segment(image, pixel_oracle)
    assert by_size.info["scale_from"] == "LV size" and by_size.info["zoom"] == pytest.approx(27 / 24, rel=0.1)
    # a card that records no pixel size (the bundled one) takes the LV's size whatever the file says
    assert segment(image, scaled_oracle, pixel_size=1.8).info["zoom"] == pytest.approx(by_size.info["zoom"])


def test_a_header_pixel_size_the_lv_contradicts_is_not_believed(pixel_oracle):
    """A header saying 6 mm (zoom 4: an LV of 96 model pixels, far beyond the card's 27-33) is overruled by the LV's
    size, in a field of view the search reads first."""
    image, truth = ring_image((3, 200, 200), (120, 80), 12)
    result = segment(image, pixel_oracle, pixel_size=6.0)
    assert result.info["scale_from"] == "LV size"
    assert result.info["zoom"] == pytest.approx(27 / 24, rel=0.12)
    for k in (1, 2):
        assert dice(result.labels == k, truth == k) > 0.9


def test_a_pixel_size_that_is_no_size_is_refused_in_one_line(pixel_oracle):
    image, _ = ring_image((1, 64, 64), (32, 31), 12)
    for bad in (0.0, -1.2, float("nan")):
        with pytest.raises(LvsegError, match="pixel size is a positive number"):
            segment(image, pixel_oracle, pixel_size=bad)


def test_flattening_divides_out_a_smooth_field_the_anatomy_stays():
    from napari_lvseg.data.shading import flatten

    yy, xx = np.mgrid[:96, :96]
    img = np.full((1, 96, 96), 0.35, np.float32)
    r = np.hypot(yy - 60, xx - 25)
    img[:, r < 10], img[:, r < 5] = 0.6, 1.0
    field = (1 + 6 * np.exp(-((yy - 15) ** 2 + (xx - 80) ** 2) / (2 * 30.0 ** 2))).astype(np.float32)
    valid = np.ones((96, 96), bool)
    background = r > 16
    flat, flat_shaded = flatten(img, valid, 14.0)[0], flatten(img * field, valid, 14.0)[0]
    spread = lambda a: float(np.percentile(a[background], 99) / np.percentile(a[background], 1))   # noqa: E731
    assert spread((img * field)[0]) > 6.5 and spread(flat_shaded) < 1.5   # a 6.8x field, left at 1.43x
    assert flat_shaded[60, 25] / flat_shaded[70, 60] == pytest.approx(flat[60, 25] / flat[70, 60], rel=0.1)


def test_candidates_one_reading_misses_come_from_the_other():
    from napari_lvseg.locate import _merged

    heart, copy, other = ((200.0, 60.0), 40.0), ((205.0, 62.0), 44.0), ((60.0, 240.0), 90.0)
    assert _merged([other], [copy, heart]) == [other, copy]   # the second's near-duplicate (within 11 px) left out
    assert _merged([], [heart]) == [heart]


def test_under_a_field_no_plane_fits_the_flattened_reading_brings_the_lv_to_the_candidates(monkeypatch):
    """A coil's bump, not a plane: divided by the fitted field (here one that removes nothing), the search's reading
    takes the bright bump for a walled cavity and misses the dim heart; its flattened reading finds the heart, so that
    the candidates read at full resolution include it."""
    from napari_lvseg import locate
    from napari_lvseg.data import shading
    from napari_lvseg.steps import result_of

    yy, xx = np.mgrid[:300, :300]
    img = np.full((4, 300, 300), 0.35, np.float32)
    r = np.hypot(yy - 200, xx - 60)
    img[:, r < 22], img[:, r < 12] = 0.6, 1.0
    shaded = img * (1 + 6 * np.exp(-((yy - 60) ** 2 + (xx - 230) ** 2) / (2 * 100.0 ** 2))).astype(np.float32)
    monkeypatch.setattr(shading, "shading_to_correct", lambda image, labels, trigger: (np.ones(image.shape[-2:]), 4.0))
    judged = []
    monkeypatch.setattr(locate, "_surest", lambda net, stack, slices, candidates, *rest, **kw: judged.append(candidates)
                        or candidates[-1])

    def centres():
        judged.clear()
        found = result_of(locate.locate_steps(BrightCavityMidWall(), shaded, 64))
        listed = judged[0] if judged else ([found] if found else [])
        return [item[0] for item in listed]

    assert any(c == pytest.approx((200, 60), abs=4) for c in centres())
    monkeypatch.setattr(locate, "SEARCH_FLATTENED", False)
    assert not any(c == pytest.approx((200, 60), abs=4) for c in centres())


class Recording(BrightCavityMidWall):
    """The oracle, keeping every batch it reads."""

    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return super().forward(x)


def test_under_a_field_the_candidates_are_judged_flattened_and_the_search_says_it_saw_the_field(monkeypatch):
    """Where the search's field check fires, `_surest` reads each candidate's view flattened (`flatten`, as the search's
    flattened reading), and the LV found says the field showed (`Found.shaded`); without a field, plain views."""
    from napari_lvseg import locate
    from napari_lvseg.data import shading
    from napari_lvseg.data.normalize import normalize_view
    from napari_lvseg.data.resample import View, sample_view
    from napari_lvseg.data.shading import FLATTEN_SIGMA, flatten
    from napari_lvseg.steps import result_of

    yy, xx = np.mgrid[:300, :300]
    img = np.full((2, 300, 300), 0.35, np.float32)
    for (cy, cx), radius in (((80, 80), 24), ((220, 200), 22)):
        r = np.hypot(yy - cy, xx - cx)
        img[:, r < radius], img[:, r < radius * 0.55] = 0.5, 1.0
    img *= (1 + 0.001 * xx).astype(np.float32)
    flags = []
    real_surest = locate._surest
    monkeypatch.setattr(locate, "_surest",
                        lambda *args, **kw: flags.append(kw["flattened"]) or real_surest(*args, **kw))
    for fitted, shaded in (((np.ones((96, 96)), 2.0), True), ((None, 1.0), False)):
        monkeypatch.setattr(shading, "shading_to_correct", lambda image, labels, trigger, fitted=fitted: fitted)
        flags.clear()
        found = result_of(locate.locate_steps(BrightCavityMidWall(), img, 64))
        assert flags == [shaded] and found.shaded is shaded and len(found) == 3
    net, candidates = Recording(), [((80.0, 80.0), 48.0), ((220.0, 200.0), 44.0)]
    locate._surest(net, img, [0, 1], candidates, 64, None, None, None, flattened=True)
    view = View.around((80.0, 80.0), 1.0, 64, img.shape)
    grid, valid = sample_view(img[[0]], view)
    flat = normalize_view(flatten(grid, valid, FLATTEN_SIGMA * 64), valid, None)
    assert np.allclose(net.inputs[0][0].numpy(), flat, atol=1e-5)
    assert not np.allclose(net.inputs[0][0].numpy(), normalize_view(grid, valid, None), atol=1e-2)


def test_where_the_search_saw_a_field_the_view_divides_out_a_milder_one(oracle, monkeypatch):
    """The view's shading pass fires from `SHADED_FIELD_TRIGGER` (1.1x) where the search saw a coil's field across
    the field of view, from `SHADING_TRIGGER` (1.25x) otherwise (and where no search ran)."""
    from napari_lvseg import inference
    from napari_lvseg.data.shading import SHADING_TRIGGER
    from napari_lvseg.locate import Found

    img = image_with_disk((2, 150, 150), (70, 80), radius=9)
    triggers = []
    monkeypatch.setattr(inference, "shading_to_correct", lambda raw, labels, trigger: triggers.append(trigger)
                        or (None, 1.0))
    for shaded in (True, False):
        def finds(*args, shaded=shaded, **kw):
            yield 1, 1
            return Found((70.0, 80.0), 18.0, shaded=shaded)

        monkeypatch.setattr(inference, "locate_steps", finds)
        segment(img, oracle)
    segment(img[:, 40:104, 40:104], oracle)   # as small as the view: no search
    assert triggers == [inference.SHADED_FIELD_TRIGGER, SHADING_TRIGGER, SHADING_TRIGGER]
    assert inference.SHADED_FIELD_TRIGGER < SHADING_TRIGGER
