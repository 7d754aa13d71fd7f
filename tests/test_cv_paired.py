"""training/cv_paired.py: paired differences of two recipes on the same held-out hearts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_lvseg.postprocess import DEFAULT_POSTPROCESS
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


def test_fold_counts_are_kept_so_a_fold_whose_run_is_gone_still_counts(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    folds = {1: _labelled(rng, 3), 2: _labelled(rng, 3)}
    renamed = {k: {f"f{k}_{name}": case for name, case in cases.items()} for k, cases in folds.items()}
    # out_of_fold gives probabilities; a one-hot of the labels post-processes back to the labels themselves
    as_probs = {k: {n: (np.eye(5)[lab].transpose(3, 0, 1, 2).astype(np.float32), t) for n, (lab, t) in c.items()}
                for k, c in renamed.items()}
    monkeypatch.setattr(cv_paired, "RESULTS", tmp_path)
    monkeypatch.setattr(cv_paired, "_labelled", lambda cases, post: {n: (p.argmax(0), t) for n, (p, t) in
                                                                     cases.items()})
    monkeypatch.setattr(cv_paired, "out_of_fold", lambda config, k, seed, last: as_probs)
    first = cv_paired.fold_counts("configs/a.json", 5, 1, {}, True)
    store = cv_paired.counts_file("configs/a.json", 5, 1, dict(DEFAULT_POSTPROCESS), True)
    assert store.exists() and store.name.startswith("a_cv5_seed1_last_post")
    monkeypatch.setattr(cv_paired, "out_of_fold", lambda config, k, seed, last: {})   # the run folders are gone
    again = cv_paired.fold_counts("configs/a.json", 5, 1, {}, True)
    assert sorted(again) == [1, 2] and all(np.array_equal(again[k][n], first[k][n]) for k in again for n in again[k])
    _, direct = cv_paired.overlaps(renamed[1])
    assert np.array_equal(np.stack([again[1][n] for n in sorted(again[1])]), direct)
