"""Metrics on hand-made arrays with known answers, plus one real EMIDEC case."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from napari_lvseg import metrics
from napari_lvseg.errors import LvsegError

CAV, MYO, INF, NR = 1, 2, 3, 4


def ring(size=64, inner=10, outer=18):
    """One (Y, X) slice: cavity disk r < inner, myocardium ring inner <= r < outer, centred between pixels.

    Returns the slice and the radius/angle grids (angle 0 points along +x).
    """
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius, angle = np.hypot(yy, xx), np.degrees(np.arctan2(yy, xx))
    labels = np.zeros((size, size), np.uint8)
    labels[radius < inner] = CAV
    labels[(radius >= inner) & (radius < outer)] = MYO
    return labels, radius, angle


# --- dice -------------------------------------------------------------------------------------


def test_dice_identical_disjoint_and_known_overlap():
    a = np.zeros((4, 4), bool)
    a[0, :] = True  # 4 px
    assert metrics.dice(a, a) == 1.0
    assert metrics.dice(a, np.roll(a, 2, axis=0)) == 0.0
    b = np.zeros((4, 4), bool)
    b[0, 1:] = True
    b[1, :3] = True  # 6 px, 3 of them in a
    assert metrics.dice(a, b) == pytest.approx(2 * 3 / (4 + 6))
    assert math.isnan(metrics.dice(np.zeros(5), np.zeros(5)))


# --- study protocol ---------------------------------------------------------------------------


def test_study_dice_per_case_known_values_and_absent_class():
    truth = np.array([[[1, 1, 2, 2], [1, 1, 2, 3], [0, 0, 0, 0]]])
    pred = np.array([[[1, 1, 1, 2], [1, 1, 2, 2], [0, 0, 0, 0]]])
    scores = metrics.study_dice_per_case(pred, truth)
    assert scores["cavity"] == pytest.approx(2 * 4 / (5 + 4))
    assert scores["myocardium"] == pytest.approx(2 * 2 / (3 + 3))
    assert scores["infarct"] == 0.0  # in truth only
    assert math.isnan(scores["no_reflow"])  # absent in both
    assert set(scores) == {"cavity", "myocardium", "infarct", "no_reflow"}
    assert scores["cavity"] == metrics.dice(pred == CAV, truth == CAV)   # from the counts, to the last bit


def test_bad_input_raises_lvseg_error():
    with pytest.raises(LvsegError, match="shape"):
        metrics.study_dice_per_case(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(LvsegError, match="not label classes"):
        metrics.quantify(np.full((1, 4, 4), 7))


# --- EMIDEC protocol --------------------------------------------------------------------------


def test_emidec_both_empty_regions_score_one_and_volume_errors():
    truth = np.zeros((2, 10, 10), np.uint8)
    truth[:, 2:8, 2:8] = MYO  # 72 voxels of myocardium region
    pred = truth.copy()
    pred[0, 2:4, 2:5] = INF  # 6 infarct voxels predicted, none true
    result = metrics.emidec_case_metrics(pred, truth)
    assert result["dice_no_reflow"] == 1.0  # empty in both
    assert result["dice_infarct"] == 0.0
    assert result["dice_myocardium"] == 1.0  # infarct belongs to the myocardium region
    assert result["vol_err_infarct_pct"] == pytest.approx(6 / 72 * 100)
    assert result["vol_diff_infarct_pct"] == pytest.approx(6 / 72 * 100)
    assert result["vol_err_no_reflow_pct"] == 0.0
    under = metrics.emidec_case_metrics(truth, pred)  # prediction now misses them
    assert under["vol_diff_infarct_pct"] == pytest.approx(-6 / 72 * 100)
    assert under["vol_err_infarct_pct"] == pytest.approx(6 / 72 * 100)
    assert result["hd_myocardium"] == 0.0


def test_emidec_hausdorff_of_shifted_squares_is_shift_times_spacing():
    truth = np.zeros((5, 24, 24), np.uint8)
    truth[1:4, 6:14, 6:14] = MYO
    pred = np.zeros_like(truth)
    pred[1:4, 6:14, 9:17] = MYO  # 3 voxels along x
    result = metrics.emidec_case_metrics(pred, truth, spacing=(8.0, 1.25, 0.7))
    assert result["hd_myocardium"] == pytest.approx(3 * 0.7)
    assert metrics.emidec_case_metrics(pred, truth, spacing=None)["hd_myocardium"] == pytest.approx(3.0)
    assert result["hd95_myocardium"] == pytest.approx(3 * 0.7)
    pred_y = np.zeros_like(truth)
    pred_y[1:4, 8:16, 6:14] = MYO  # 2 voxels along y
    assert metrics.emidec_case_metrics(pred_y, truth, spacing=(8.0, 1.25, 0.7))["hd_myocardium"] \
        == pytest.approx(2 * 1.25)


def test_emidec_empty_prediction_gives_nan_hausdorff_and_the_mean_skips_it():
    truth = np.zeros((3, 12, 12), np.uint8)
    truth[1, 3:9, 3:9] = MYO
    empty = np.zeros_like(truth)
    result = metrics.emidec_case_metrics(empty, truth)
    assert math.isnan(result["hd_myocardium"]) and math.isnan(result["hd95_myocardium"])
    assert result["dice_myocardium"] == 0.0
    shifted = np.roll(truth, 1, axis=2)
    from napari_lvseg.evaluation import evaluate_cases

    rows = evaluate_cases({"miss": (empty, truth), "shift": (shifted, truth)},
                          spacing={"miss": (1, 1, 1), "shift": (1, 1, 2.0)}).emidec_rows
    assert [row["case"] for row in rows] == ["miss", "shift", "mean"]
    assert rows[1]["hd_myocardium"] == pytest.approx(2.0)
    assert rows[-1]["hd_myocardium"] == pytest.approx(2.0)  # NaN of the missed case skipped
    assert rows[-1]["dice_myocardium"] == pytest.approx(rows[1]["dice_myocardium"] / 2)


# --- clinical quantification ------------------------------------------------------------------


@pytest.mark.parametrize("outer_label_radius, expected", [(18, 100.0), (14, 50.0), (10, 0.0)])
def test_transmurality_of_wedges(outer_label_radius, expected):
    labels, radius, angle = ring()
    wedge = (np.abs(angle) < 20) & (radius >= 10) & (radius < outer_label_radius)
    labels[wedge] = INF
    labels[wedge & (radius >= 16)] = NR  # no-reflow counts as infarct (only reached by the full wedge)
    value = metrics.max_transmurality(labels)
    if expected == 50.0:
        assert 40.0 <= value <= 60.0
    else:
        assert value == expected
    q = metrics.quantify(labels[None])
    assert q["slices"][0]["transmurality_pct"] == value
    assert q["total"]["transmurality_pct"] == value


def test_transmurality_without_cavity_and_without_myocardium():
    labels, radius, angle = ring()
    labels[labels == CAV] = 0  # apical slice: centre falls back to the myocardium centroid
    labels[(np.abs(angle) < 20) & (labels == MYO)] = INF
    assert metrics.max_transmurality(labels) == 100.0
    assert math.isnan(metrics.max_transmurality(np.zeros((8, 8), np.uint8)))


def test_quantify_quarter_infarct_ring_with_spacing():
    labels, radius, angle = ring()
    quarter = (labels == MYO) & (angle > 0) & (angle < 90)
    labels[quarter] = INF
    labels[quarter & (radius >= 16)] = NR
    n_myo = int(((radius >= 10) & (radius < 18)).sum())
    n_nr = int((quarter & (radius >= 16)).sum())
    stack = np.stack([labels, np.zeros_like(labels)])  # second slice has no myocardium
    q = metrics.quantify(stack, spacing=(8.0, 1.5, 2.0))
    first, empty = q["slices"]
    assert first["slice"] == 0 and first["myocardium_px"] == n_myo
    assert first["myocardium_mm2"] == pytest.approx(n_myo * 3.0)
    assert first["infarct_pct"] == pytest.approx(25.0)  # ring symmetric about the pixel grid
    assert first["no_reflow_pct"] == pytest.approx(100 * n_nr / n_myo)
    assert empty["myocardium_px"] == 0 and math.isnan(empty["infarct_pct"])
    assert math.isnan(empty["transmurality_pct"])
    total = q["total"]
    assert total["myocardium_mm3"] == pytest.approx(n_myo * 24.0)
    assert total["myocardium_g"] == pytest.approx(n_myo * 24.0 * 1.05e-3)   # 1.05 g/ml
    assert total["infarct_mm3"] == pytest.approx(int(quarter.sum()) * 24.0)  # no-reflow counts as infarct
    assert total["no_reflow_mm3"] == pytest.approx(n_nr * 24.0)
    assert total["infarct_pct"] == pytest.approx(25.0)
    assert total["transmurality_pct"] == 100.0
    assert "myocardium_mm2" not in metrics.quantify(stack)["slices"][0]
    assert not {"myocardium_mm3", "myocardium_g", "infarct_mm3"} & set(metrics.quantify(stack)["total"])


def test_a_slice_with_its_pixel_size_gets_areas_and_no_volumes():
    labels, radius, _ = ring()
    n_myo = int(((radius >= 10) & (radius < 18)).sum())
    q = metrics.quantify(labels, spacing=(1.5, 2.0))
    assert q["slices"][0]["myocardium_mm2"] == pytest.approx(n_myo * 3.0)
    assert q["total"]["myocardium_mm2"] == pytest.approx(n_myo * 3.0)
    assert not {"myocardium_mm3", "myocardium_g", "infarct_mm3"} & set(q["total"])
    with pytest.raises(LvsegError, match=r"2 positive numbers \(y, x\)"):
        metrics.quantify(labels, spacing=(1.5, 0.0))
    with pytest.raises(LvsegError, match=r"a stack of 2 slices needs its spacing as \(z, y, x\)"):
        metrics.quantify(np.stack([labels, labels]), spacing=(1.5, 2.0))


def test_quantification_rows_written_as_csv(tmp_path):
    labels, radius, angle = ring()
    labels[(labels == MYO) & (angle > 0) & (angle < 90)] = INF
    q = metrics.quantify(np.stack([labels, np.zeros_like(labels)]))
    rows = metrics.quantification_rows(q)
    assert [row["slice"] for row in rows] == [0, 1, "total"]
    path = metrics.write_csv(rows, tmp_path / "quant.csv")
    with open(path, newline="") as handle:
        read = list(csv.DictReader(handle))
    assert [r["slice"] for r in read] == ["0", "1", "total"]
    assert float(read[2]["infarct_pct"]) == pytest.approx(25.0)
    assert read[1]["infarct_pct"] == ""  # NaN -> empty cell
    assert int(read[0]["myocardium_px"]) == q["slices"][0]["myocardium_px"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quant.csv"]  # no temp file left
    with pytest.raises(LvsegError, match="folder does not exist"):
        metrics.write_csv(rows, tmp_path / "missing" / "q.csv")


def test_format_table_aligns_columns():
    rows = [{"case": "Case_P001", "dice": 0.91234, "n": 7}, {"case": "mean", "dice": float("nan"), "n": 12}]
    text = metrics.format_table(rows, ["case", "dice", "n"])
    lines = text.splitlines()
    assert lines[0].split() == ["case", "dice", "n"]
    assert lines[2].split() == ["Case_P001", "0.912", "7"]
    assert lines[3].split() == ["mean", "n/a", "12"]
    assert len({len(line) for line in lines}) == 1  # every line as wide: columns line up
    assert lines[3].endswith(" 12")  # numbers right-aligned


# --- real data --------------------------------------------------------------------------------


def test_real_emidec_case(emidec_cases):
    nib = pytest.importorskip("nibabel")
    case = next(p for p in emidec_cases if p.name.startswith("Case_P"))
    truth = np.asarray(nib.load(case / "Contours" / f"{case.name}.nii.gz").dataobj).transpose(2, 1, 0)
    with open(case.parent / "cases.csv", newline="") as handle:
        counts = next(row for row in csv.DictReader(handle) if row["case"] == case.name)
    # cases.csv counts each label value on its own: px_myocardium is label 2 only.
    assert int(counts["px_myocardium"]) == int((truth == MYO).sum())
    myo, inf, nr = (int(counts[k]) for k in ("px_myocardium", "px_infarction", "px_no_reflow"))

    study = metrics.study_dice_per_case(truth, truth)
    assert all(v == 1.0 for k, v in study.items() if not (k == "no_reflow" and nr == 0))
    emidec = metrics.emidec_case_metrics(truth, truth)
    assert emidec["dice_myocardium"] == emidec["dice_infarct"] == emidec["dice_no_reflow"] == 1.0
    assert emidec["hd_myocardium"] == 0.0 and emidec["vol_err_infarct_pct"] == 0.0

    total = metrics.quantify(truth)["total"]
    assert total["myocardium_px"] == myo + inf + nr
    assert total["infarct_pct"] == pytest.approx(100 * (inf + nr) / (myo + inf + nr))
    assert total["no_reflow_pct"] == pytest.approx(100 * nr / (myo + inf + nr))
    assert 0.0 < total["transmurality_pct"] <= 100.0


def test_transmurality_survives_a_stray_infarct_pixel_outside_the_wall():
    from napari_lvseg.metrics import max_transmurality, quantify

    labels = np.zeros((40, 40), np.uint8)
    labels[10:20, 10:20] = 2
    labels[13:17, 13:17] = 1
    labels[38, 38] = 3  # painted by mistake, far from the ring
    labels[37, 38] = 2
    assert np.isfinite(max_transmurality(labels))
    assert quantify(labels[None])["total"]["infarct_px"] == 1
