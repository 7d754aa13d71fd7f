"""training/cv_paired.py: paired differences of two recipes on the same held-out hearts."""

from __future__ import annotations

import numpy as np
import pytest

from training import cv_paired


def _labelled(rng, n_cases=6, flip=0.0):
    cases = {}
    for i in range(n_cases):
        truth = rng.integers(0, 5, (3, 16, 16))
        labels = np.where(rng.random(truth.shape) < flip, (truth + 1) % 5, truth)
        cases[f"case{i}"] = (labels, truth)
    return cases


def test_study_means_follow_the_per_case_and_pooled_protocols():
    truth = np.zeros((2, 4, 4), int)
    truth[0, :2] = 1        # case 0: 8 cavity voxels, found 4 of them; no no-reflow anywhere
    labels = np.zeros_like(truth)
    labels[0, :1] = 1
    big = np.zeros((2, 8, 8), int)
    big[:, :4] = 1          # case 1: 64 cavity voxels, all found
    _, counts = cv_paired.overlaps({"a": (labels, truth), "b": (big, big)})
    means = cv_paired.study_means(counts)
    assert means["per_case"][0] == pytest.approx((2 * 4 / 12 + 1.0) / 2)
    assert means["pooled"][0] == pytest.approx(2 * 68 / (68 + 72))
    assert np.isnan(means["per_case"][3]) and means["per_case"][4] == pytest.approx(means["per_case"][0])


def test_a_recipe_against_itself_differs_by_nothing_and_a_worse_one_by_an_interval_below_zero():
    rng = np.random.default_rng(0)
    good = _labelled(rng)
    _, a = cv_paired.overlaps(good)
    same = cv_paired.paired([a], [a], draws=200)
    assert all(s["difference"] == 0 and s["interval"] == [0, 0] for s in same["pooled"].values())
    worse = {name: (np.where(np.random.default_rng(1).random(t.shape) < 0.3, 0, p), t)
             for name, (p, t) in good.items()}
    _, b = cv_paired.overlaps(worse)
    result = cv_paired.paired([a, a], [b, b], draws=200)
    for protocol in ("per_case", "pooled"):
        mean = result[protocol]["mean"]
        assert mean["first"] == pytest.approx(1.0) and mean["second"] < 0.95
        assert mean["difference"] == pytest.approx(mean["second"] - mean["first"], abs=1e-4)
        assert mean["interval"][0] <= mean["difference"] <= mean["interval"][1] < 0
        assert mean["seed_sd"] == 0   # two seeds, the same difference
    assert "| pooled | 1.000 |" in cv_paired.table(result)
