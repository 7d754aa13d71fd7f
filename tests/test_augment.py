"""The augmentation's reproducibility rests on MONAI internals (set_random_state, Randomizable.R, Compose.R):
one RandomState shared by every transform, re-seeded per sample. pyproject pins MONAI's range; these tests fail
if a MONAI release changes what that relies on."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.data.augment import augment_sample, build_augmentation
from napari_lvseg.data.normalize import normalize_slices
from napari_lvseg.data.phantom import make_phantom

STRENGTHS = ("lossless", "light", "default", "scanner", "distractors")


@pytest.fixture(scope="module")
def sample():
    image, labels = make_phantom(n_slices=1, size=64, seed=2)
    return normalize_slices(image[0]), labels[0]


def _randomizables(obj, seen=None):
    """Every MONAI Randomizable reachable from ``obj`` (the Compose, its transforms and the array transforms,
    grids and deform fields they hold)."""
    from monai.transforms import Randomizable

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found = [obj] if isinstance(obj, Randomizable) else []
    for value in getattr(obj, "__dict__", {}).values():
        for item in (value if isinstance(value, (list, tuple)) else [value]):
            if isinstance(item, Randomizable):
                found += _randomizables(item, seen)
    return found


@pytest.mark.parametrize("strength", STRENGTHS)
def test_every_randomizable_transform_holds_the_one_shared_random_state(strength):
    compose = build_augmentation(strength)
    assert isinstance(compose.R, np.random.RandomState)
    found = _randomizables(compose)
    assert len(found) > len(compose.transforms)   # the dictionary transforms and the array transforms inside them
    assert [type(t).__name__ for t in found if t.R is not compose.R] == []


@pytest.mark.parametrize("strength", STRENGTHS)
def test_same_seed_same_sample_different_seed_different_sample(strength, sample):
    image, labels = sample
    transform = build_augmentation(strength)
    first = augment_sample(transform, image, labels, (3, 0, 7))
    augment_sample(transform, image, labels, 11)   # what ran before does not matter
    again = augment_sample(transform, image, labels, (3, 0, 7))
    fresh = augment_sample(build_augmentation(strength), image, labels, (3, 0, 7))
    for other in (again, fresh):
        assert np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1])
    others = [augment_sample(transform, image, labels, (3, 0, seed)) for seed in range(8, 12)]
    differ = [not np.array_equal(first[0], img) for img, _ in others]
    assert any(differ) if strength == "lossless" else all(differ)   # lossless has only 8 outcomes


def test_augmentation_leaves_numpys_global_random_state_alone(sample):
    image, labels = sample
    np.random.seed(123)
    before = np.random.get_state()
    transforms = [build_augmentation(strength) for strength in STRENGTHS]
    for transform in transforms:
        for seed in range(3):
            augment_sample(transform, image, labels, seed)
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_none_is_the_identity(sample):
    image, labels = sample
    assert build_augmentation("none") is None
    img, lab = augment_sample(None, image, labels, 0)
    assert img is image and lab is labels


def test_a_distractor_is_a_bright_blob_beside_the_lv_never_over_it():
    from scipy import ndimage as ndi

    from napari_lvseg.data.augment import RandDistractord

    image, labels = make_phantom(n_slices=3, size=128, seed=4)
    image = normalize_slices(image)
    lv = labels[1] > 0
    paste = RandDistractord(prob=1.0).set_random_state(seed=5)
    out = paste({"image": image.copy(), "label": labels[1][None].astype(np.float32)})
    changed = np.abs(out["image"] - image) > 1e-6
    assert changed[1].sum() > 0.25 * lv.sum()                          # a blob of a fair share of the LV's size
    assert not (changed & ndi.binary_dilation(lv, iterations=3)).any()  # never on the heart or next to it
    near = ndi.binary_dilation(changed[1], iterations=2)
    assert changed[0].any() and changed[2].any() and not (changed & ~near).any()   # every channel, at the same place
    core = ndi.binary_erosion(changed[1], iterations=3)
    assert out["image"][1][core].mean() > np.median(image[1])            # brighter than the image's median
    assert np.array_equal(out["label"], labels[1][None].astype(np.float32))   # labels: background there, as before
    assert RandDistractord(prob=0.0)({"image": image, "label": labels[1][None]})["image"] is image


def test_the_distractor_draws_from_the_composes_shared_random_state():
    from napari_lvseg.data.augment import RandDistractord

    compose = build_augmentation("distractors")
    pasted = [t for t in compose.transforms if isinstance(t, RandDistractord)]
    assert len(pasted) == 1 and pasted[0].R is compose.R


def test_lossless_moves_pixels_without_resampling_them(sample):
    """Flips and quarter turns only: each augmented sample is one of the 8 exact symmetries of the square, image and
    labels alike (a synthesis run learns the real grain, not an interpolation's smoothing of it)."""
    image, labels = sample
    transform = build_augmentation("lossless")
    symmetries = [(np.rot90(np.flip(image, 0) if f else image, k), np.rot90(np.flip(labels, 0) if f else labels, k))
                  for f in (False, True) for k in range(4)]
    seen = set()
    for seed in range(24):
        img, lab = augment_sample(transform, image, labels, seed)
        hits = [i for i, (si, sl) in enumerate(symmetries) if np.array_equal(img, si) and np.array_equal(lab, sl)]
        assert len(hits) >= 1, f"seed {seed}: not an exact flip or turn of the sample"
        seen.add(hits[0])
    assert len(seen) >= 5   # and it does move them
