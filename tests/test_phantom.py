"""The procedural LGE phantom: deterministic, anatomically valid, EMIDEC-like intensities."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_lvseg.data.phantom import HIGH, LOW, make_phantom, phantom_case
from napari_lvseg.data.simulator import anatomy_problems
from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import BACKGROUND, CAVITY, INFARCT, MYOCARDIUM, NO_REFLOW


def class_means(image, labels):
    return {k: float(image[labels == k].mean()) for k in range(5)}


def test_same_seed_same_stack_other_seed_differs():
    image_a, labels_a = make_phantom(seed=3)
    image_b, labels_b = make_phantom(seed=3)
    image_c, labels_c = make_phantom(seed=4)
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(labels_a, labels_b)
    assert not np.array_equal(labels_a, labels_c)
    assert not np.allclose(image_a, image_c)


def test_shapes_dtypes_and_intensity_range():
    image, labels = make_phantom(n_slices=5, size=96, seed=1)
    assert image.shape == labels.shape == (5, 96, 96)
    assert image.dtype == np.float32 and labels.dtype == np.uint8
    assert image.min() >= LOW and image.max() <= HIGH
    assert image.min() == pytest.approx(LOW)  # dark lungs are clipped, as in the real crops
    assert image.max() > 2900
    with pytest.raises(LvsegError, match="size"):
        make_phantom(size=16)


@pytest.mark.parametrize("seed", range(5))
def test_all_classes_valid_anatomy_and_intensity_order(seed):
    image, labels = make_phantom(seed=seed)
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 3, 4}
    assert anatomy_problems(labels) == []
    m = class_means(image, labels)
    assert m[INFARCT] > m[CAVITY] > m[BACKGROUND] > m[MYOCARDIUM]
    assert m[NO_REFLOW] < m[INFARCT] - 150


def test_apex_first_infarct_contiguous_and_options():
    _, labels = make_phantom(n_slices=8, seed=2)
    cavity_area = (labels == CAVITY).sum(axis=(1, 2))
    assert cavity_area[-1] > 1.5 * cavity_area[0]  # slice 0 is the apex
    infarcted = np.flatnonzero(np.isin(labels, (INFARCT, NO_REFLOW)).any(axis=(1, 2)))
    assert len(infarcted) >= 2 and np.all(np.diff(infarcted) == 1)

    _, healthy = make_phantom(seed=2, infarct=False)
    assert set(np.unique(healthy).tolist()) == {BACKGROUND, CAVITY, MYOCARDIUM}
    _, no_core = make_phantom(seed=2, no_reflow=False)
    assert INFARCT in no_core and NO_REFLOW not in no_core
    np.testing.assert_array_equal(np.isin(no_core, (2, 3)), np.isin(labels, (2, 3, 4)))  # same wall


def test_phantom_case_dict():
    case = phantom_case(n_slices=3, seed=7)
    assert case["image"].shape == case["labels"].shape == (3, 128, 128)
    assert case["name"] == "phantom_seed7"
    assert case["name"] != phantom_case(n_slices=3, seed=8)["name"]


def test_fast_enough():
    make_phantom()
    best = min(_timed(make_phantom, seed=s) for s in range(3))
    assert best < 0.5  # about 0.05 s on a quiet core; generous for a shared machine


def _timed(fn, **kwargs):
    start = time.perf_counter()
    fn(**kwargs)
    return time.perf_counter() - start


def test_class_means_near_real_emidec(emidec_cases):
    nib = pytest.importorskip("nibabel")
    sums, counts = np.zeros(5), np.zeros(5)
    for case in emidec_cases:
        image = np.asarray(nib.load(case / "Images" / f"{case.name}.nii.gz").dataobj)
        labels = np.asarray(nib.load(case / "Contours" / f"{case.name}.nii.gz").dataobj)
        for k in range(5):
            sums[k] += image[labels == k].sum()
            counts[k] += (labels == k).sum()
    real = sums / counts
    assert real[INFARCT] > real[CAVITY] > real[BACKGROUND] > real[MYOCARDIUM]  # the order the phantom copies
    image, labels = make_phantom(seed=0)
    phantom = class_means(image, labels)
    for k in (BACKGROUND, CAVITY, MYOCARDIUM, INFARCT):
        assert abs(phantom[k] - real[k]) < 120, (k, phantom[k], real[k])
