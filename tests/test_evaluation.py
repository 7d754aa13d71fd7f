"""evaluation.evaluate_cases and its Report: hand-computed figures, intervals, files, and the callers' numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from napari_lvseg import evaluation
from napari_lvseg.errors import LvsegError
from napari_lvseg.evaluation import Report, evaluate_cases

CAV, MYO, INF, NR = 1, 2, 3, 4
REFERENCE = Path(__file__).with_name("evaluation_reference.json")
ROOT = Path(__file__).resolve().parents[1]


def known_predictions(emidec_dir: Path) -> tuple[dict, dict]:
    """({case: (prediction, truth)}, {case: spacing}) of five real EMIDEC cases with a known, deterministic
    prediction: the truth shifted one pixel along x, infarct read as myocardium on odd slices, no-reflow as infarct
    on the first; one case (P002) predicted empty. One case gets an anisotropic spacing (volumes, Hausdorff in mm)."""
    from napari_lvseg.io import emidec

    names = ("Case_N013", "Case_P001", "Case_P002", "Case_P003", "Case_P004")
    cases, spacing = {}, {}
    for case in emidec.find_cases(emidec_dir):
        if case.name not in names:
            continue
        truth = emidec.read_case(case)[1]
        pred = np.roll(truth.data, 1, axis=2)
        odd = pred[1::2]
        odd[odd == INF] = MYO
        pred[0][pred[0] == NR] = INF
        if case.name == "Case_P002":
            pred = np.zeros_like(pred)
        cases[case.name] = (pred, truth.data)
        spacing[case.name] = (8.0, 1.25, 1.25) if case.name == "Case_P001" else truth.spacing
    assert sorted(cases) == list(names)
    return cases, spacing


def _same(a, b) -> bool:
    """Equal to the last bit, NaN (or JSON's null) equal to NaN."""
    def nan(x):
        return x is None or (isinstance(x, float) and math.isnan(x))
    return (nan(a) and nan(b)) or a == b


def _plain(value):
    """``value`` as JSON gives it back: NaN as None, tuples as lists (NaN != NaN would fail plain equality)."""
    from napari_lvseg.io.atomic import json_safe

    return json.loads(json.dumps(json_safe(value)))


def _rows_equal(first: list, second: list) -> None:
    assert [r["case"] for r in first] == [r["case"] for r in second]
    for a, b in zip(first, second, strict=True):
        assert a.keys() == b.keys()
        assert all(_same(a[k], b[k]) for k in a), (a, b)


# --- hand-computed figures --------------------------------------------------------------------


def test_dice_per_case_and_mean_skip_an_absent_class():
    truth = np.array([[[1, 1, 2, 2], [1, 1, 2, 3], [0, 0, 0, 0]]])
    pred = np.array([[[1, 1, 1, 2], [1, 1, 2, 2], [0, 0, 0, 0]]])
    report = evaluate_cases({"a": (pred, truth)}, emidec=False)
    row = report.cases[0]
    assert row["cavity"] == 2 * 4 / (5 + 4) and row["myocardium"] == 2 * 2 / (3 + 3)
    assert row["infarct"] == 0.0 and math.isnan(row["no_reflow"])          # in truth only; absent from both
    assert row["mean"] == pytest.approx(np.mean([8 / 9, 2 / 3, 0.0]))      # over its present classes
    assert report.intervals is None                                        # one case: nothing to draw


def test_class_means_over_the_cases_that_hold_the_class():
    no_infarct = np.array([[[1, 2, 0, 0]]])
    with_infarct = np.array([[[1, 2, 3, 3]]])
    half_infarct = np.array([[[1, 2, 3, 2]]])                              # infarct Dice 2*1/(1+2)
    report = evaluate_cases([("a", no_infarct, no_infarct), ("b", half_infarct, with_infarct)], emidec=False)
    assert report.names == ["a", "b"] and report.cases[0]["mean"] == 1.0
    assert report.per_case["infarct"] == pytest.approx(2 / 3)             # case a counts neither as 0 nor as 1
    assert report.per_case["myocardium"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert math.isnan(report.per_case["no_reflow"])
    assert report.per_case["mean"] == pytest.approx(np.mean([1.0, report.per_case["myocardium"], 2 / 3]))
    assert [r["case"] for r in report.study_rows] == ["a", "b", "mean"]


def test_pooled_differs_from_the_per_case_mean():
    big = np.zeros((1, 10, 10), np.uint8)
    big[0] = INF                                                           # 100 px, found perfectly
    small_truth, small_pred = np.zeros_like(big), np.zeros_like(big)
    small_truth[0, 0, :2] = INF
    small_pred[0, 9, :2] = INF                                             # 2 px, disjoint
    report = evaluate_cases([(big, big), (small_pred, small_truth)], emidec=False)   # unnamed pairs: by position
    assert report.names == ["0", "1"]
    assert report.pooled["infarct"] == pytest.approx(2 * 100 / 204) and report.per_case["infarct"] == 0.5
    assert math.isnan(report.pooled["cavity"]) and report.pooled["mean"] == report.pooled["infarct"]


def test_emidec_regions_empty_in_both_score_one_and_volumes_follow_the_spacing():
    truth = np.zeros((2, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = MYO
    truth[0, 2:4, 2:4] = INF                                               # 4 infarct voxels, no no-reflow
    pred = truth.copy()
    pred[0, 2:4, 2:4] = MYO                                                # infarct missed
    report = evaluate_cases([("a", pred, truth, (10.0, 1.0, 0.5))])
    row = report.cases[0]
    assert row["dice_myocardium"] == 1.0 and row["dice_infarct"] == 0.0
    assert row["dice_no_reflow"] == 1.0                                    # EMIDEC: empty in both is a match
    assert math.isnan(row["no_reflow"])                                    # the study's Dice leaves it out
    assert row["vol_err_infarct_pct"] == pytest.approx(100 * 4 / 32)
    assert row["true_ml_myocardium"] == pytest.approx(32 * 5.0 / 1000) and row["pred_ml_infarct"] == 0.0
    assert row["true_ml_infarct"] == pytest.approx(4 * 5.0 / 1000)
    assert report.emidec["dice_infarct"] == 0.0 and report.volume_rows[0]["case"] == "a"
    assert "true_ml_cavity" not in evaluate_cases([("b", pred, truth)]).cases[0]   # no spacing: no volumes


def test_bad_input_names_the_case():
    with pytest.raises(LvsegError, match="case b: .*shape"):
        evaluate_cases({"a": (np.zeros((1, 4, 4)), np.zeros((1, 4, 4))), "b": (np.zeros((1, 4, 4)),
                                                                               np.zeros((1, 4, 5)))})
    with pytest.raises(LvsegError, match="case a: .*not label classes"):
        evaluate_cases({"a": (np.full((1, 4, 4), 7), np.zeros((1, 4, 4)))})
    with pytest.raises(LvsegError, match="repeat"):
        evaluate_cases([("a", np.zeros((1, 2, 2)), np.zeros((1, 2, 2)))] * 2)


# --- intervals --------------------------------------------------------------------------------


def test_bootstrap_intervals_known_extremes():
    big = np.zeros((1, 10, 10), np.uint8)
    big[0] = INF
    missed = big.copy()
    missed[0, :5] = 0                                                      # Dice 2/3
    none = np.zeros_like(big)
    report = evaluate_cases({"a": (big, big), "b": (missed, big), "c": (big, big), "d": (none, none)},
                            emidec=False, bootstrap=500, seed=1)
    assert report.pooled["infarct"] == pytest.approx(500 / 550)
    assert report.intervals["per_case"]["infarct"] == pytest.approx((2 / 3, 1.0))   # b alone; a and c alone
    low, high = report.intervals["pooled"]["infarct"]
    assert 2 / 3 <= low < report.pooled["infarct"] < high <= 1.0
    assert all(math.isnan(v) for v in report.intervals["pooled"]["cavity"])         # a class no case has
    assert (report.intervals["n"], report.intervals["level"], report.intervals["seed"]) == (500, 0.95, 1)
    assert evaluate_cases({"a": (big, big), "b": (missed, big)}, bootstrap=0).intervals is None


def _noisy_cases(n: int, seed: int) -> list:
    """``n`` one-slice cases, each a ring whose prediction misses a random share of the myocardium."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((1, 24, 24), np.uint8)
    truth[0, 4:20, 4:20] = MYO
    truth[0, 8:16, 8:16] = CAV
    cases = []
    for k in range(n):
        pred = truth.copy()
        pred[0, 4:4 + int(rng.integers(1, 12)), 4:20] = 0
        cases.append((f"c{k}", pred, truth))
    return cases


def test_intervals_hold_the_estimate_and_shrink_with_more_cases():
    few = evaluate_cases(_noisy_cases(6, 0), emidec=False)
    many = evaluate_cases(_noisy_cases(60, 0), emidec=False)
    for report in (few, many):
        for group, figures in (("per_case", report.per_case), ("pooled", report.pooled)):
            low, high = report.intervals[group]["myocardium"]
            assert low <= figures["myocardium"] <= high
    width = {name: np.subtract(*r.intervals["pooled"]["myocardium"][::-1]) for name, r in (("few", few),
                                                                                         ("many", many))}
    assert 0 < width["many"] < 0.6 * width["few"]
    np.testing.assert_equal(evaluate_cases(_noisy_cases(6, 0), emidec=False).intervals, few.intervals)   # fixed seed


def test_emidec_intervals_hold_the_emidec_means():
    report = evaluate_cases(_noisy_cases(8, 3), bootstrap=300)
    low, high = report.intervals["emidec"]["dice_myocardium"]
    assert low <= report.emidec["dice_myocardium"] <= high < 1.0


def test_pooled_difference_interval_is_paired():
    big = np.zeros((1, 10, 10), np.uint8)
    big[0] = INF
    half = big.copy()
    half[0, :5] = 0                                                        # Dice 2/3
    first = evaluate_cases({k: (half, big) for k in "abc"}, emidec=False, bootstrap=0)
    second = evaluate_cases({"a": (big, big), "b": (half, big), "c": (big, big)}, emidec=False, bootstrap=0)
    out = evaluation.pooled_difference_interval(first, second, n=500, seed=1)
    d, low, high = out["infarct"]
    assert d == pytest.approx(second.pooled["infarct"] - first.pooled["infarct"]) and d > 0
    assert low == pytest.approx(0.0) and high == pytest.approx(1 - 2 / 3)  # the tied case alone; the better ones
    assert all(math.isnan(v) for v in out["cavity"]) and out["mean"][0] == pytest.approx(d)
    assert evaluation.pooled_difference_interval(first, first, n=50)["infarct"] == pytest.approx((0.0, 0.0, 0.0))
    counts = [first.counts[k] for k in "abc"]
    assert _plain(evaluation.pooled_difference_interval(counts, [second.counts[k] for k in "abc"], n=500, seed=1)) \
        == _plain(out)
    with pytest.raises(LvsegError, match="3 and 2 cases"):
        evaluation.pooled_difference_interval(counts, counts[:2])


# --- files ------------------------------------------------------------------------------------


def test_json_round_trip_and_csv(tmp_path):
    truth = np.zeros((2, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = MYO
    truth[:, 3:5, 3:5] = CAV
    truth[0, 2, 2:6] = INF
    pred = np.roll(truth, 1, axis=2)
    report = evaluate_cases({"a": (pred, truth, (8.0, 1.0, 1.0)), "b": (truth, truth, (8.0, 1.0, 1.0))},
                            bootstrap=100, meta={"run": "x"})
    back = Report.from_json(report.to_json(tmp_path / "r.json"))
    _rows_equal(back.cases, report.cases)
    assert all(_same(back.per_case[k], v) for k, v in report.per_case.items())
    assert all(_same(back.pooled[k], v) for k, v in report.pooled.items())
    assert _plain(back.emidec) == _plain(report.emidec) and _plain(back.intervals) == _plain(report.intervals)
    assert back.meta == {"run": "x"}
    assert all(np.array_equal(back.counts[k], report.counts[k]) for k in report.counts)
    assert _plain(back.to_dict()) == json.loads((tmp_path / "r.json").read_text())   # written again: the same
    assert json.loads((tmp_path / "r.json").read_text())["study"][0]["no_reflow"] is None   # NaN: null

    rows = list(csv.DictReader(open(report.to_csv(tmp_path / "r.csv"), encoding="utf-8")))
    assert [r["case"] for r in rows] == ["a", "b", "mean", "pooled", "mean 95% low", "mean 95% high",
                                         "pooled 95% low", "pooled 95% high"]
    assert float(rows[0]["myocardium"]) == pytest.approx(report.cases[0]["myocardium"], rel=1e-5)
    assert float(rows[2]["dice_infarct"]) == pytest.approx(report.emidec["dice_infarct"], rel=1e-5)
    assert float(rows[3]["mean"]) == pytest.approx(report.pooled["mean"], rel=1e-5) and rows[0]["no_reflow"] == ""
    assert float(rows[4]["dice_myocardium"]) == pytest.approx(report.intervals["emidec"]["dice_myocardium"][0],
                                                              rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv", "r.json"]   # no temp file left
    text = report.summary()
    assert "2 case(s)" in text and f"{report.pooled['mean']:.3f}" in text and "EMIDEC" in text
    assert "Study protocol" in report.tables() and "Volumes (ml)" in report.tables()


def test_result_files_written_before_the_module_read_back(tmp_path):
    """training/results/ holds `run.py evaluate`'s files (study/emidec tables with their mean rows, pooled); the
    scripts read them back, and so does `Report.from_json`."""
    path = ROOT / "training/results/ens_A/test_metrics_tta.json"
    data = json.loads(path.read_text())
    report = Report.from_json(path)
    assert report.per_case["mean"] == data["study"][-1]["mean"] and report.pooled == data["pooled"]
    assert report.emidec["dice_no_reflow"] == data["emidec"][-1]["dice_no_reflow"]
    assert len(report.cases) == data["cases"] and report.meta["tta"] is True and report.counts is None
    assert _plain(report.to_dict()["study"]) == data["study"]
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(LvsegError, match="not an evaluation report"):
        Report.from_json(tmp_path / "x.json")


# --- the callers use it, with the numbers they had ---------------------------------------------


def test_same_numbers_as_the_old_code_path_on_real_cases(emidec_dir):
    """tests/evaluation_reference.json holds what metrics.study_table, pooled_dice, emidec_table and
    bootstrap_intervals (n=2000, seed 0) gave on `known_predictions` before evaluation.py replaced them (commit
    7000910); the report gives the same figures, to the last bit."""
    reference = json.loads(REFERENCE.read_text())
    cases, spacing = known_predictions(emidec_dir)
    report = evaluate_cases(cases, spacing=spacing)
    written = _plain(report.to_dict())
    _rows_equal(written["study"], reference["study"])
    _rows_equal(written["emidec"], reference["emidec"])
    assert written["pooled"] == reference["pooled"]
    for group in ("per_case", "pooled"):
        assert written["bootstrap"][group] == reference["bootstrap"][group]


def test_the_engines_validation_reports_the_evaluation_figures(monkeypatch):
    """`SegmentationTask.validate` scores its validation cases with `evaluate_cases`: the same figures, the keys the
    training events (and cross_validate.fold_scores) read."""
    from napari_lvseg import inference
    from napari_lvseg.engine.segmentation import SegmentationTask

    cases = dict((name, (pred, truth)) for name, pred, truth in _noisy_cases(3, 5))
    truths = iter(cases.values())

    class Volumes:
        def volumes(self):
            return [(name, None, truth) for name, (_, truth) in cases.items()]

    class Model:
        def train(self):
            pass

    task = SegmentationTask.__new__(SegmentationTask)
    task.data, task.model, task.device = type("Data", (), {"val_sets": [Volumes()]})(), Model(), "cpu"
    monkeypatch.setattr(inference, "predict_labels", lambda model, images, device=None: next(truths)[0])
    metrics = task.validate()
    expected = evaluate_cases(cases, emidec=False, bootstrap=0).metrics()
    assert list(metrics)[:-1] == list(expected) == ["cavity", "myocardium", "infarct", "no_reflow", "mean",
                                                   "pooled_cavity", "pooled_myocardium", "pooled_infarct",
                                                   "pooled_no_reflow", "pooled_mean"]
    assert all(_same(metrics[k], v) for k, v in expected.items()) and "seconds" in metrics


def test_lvseg_evaluate_writes_the_csv_and_the_json_of_the_report(tmp_path, capsys):
    from napari_lvseg.cli import main
    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.io import read_labels
    from napari_lvseg.io.nifti import write_nifti

    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    for k, name in enumerate(("Case_A", "Case_B", "Case_C")):
        _, truth = make_phantom(n_slices=3, seed=k)
        write_nifti(tmp_path / "truth" / f"{name}.nii.gz", truth)
        write_nifti(tmp_path / "pred" / f"{name}.nii.gz", np.roll(truth, k, axis=2))
    (tmp_path / "out").mkdir()
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"),
                 "--csv", str(tmp_path / "out/table.csv"), "--json", str(tmp_path / "out/report.json")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json", "table.csv"]
    printed = capsys.readouterr().out
    assert "Study protocol" in printed and "95% intervals over 2000 draws" in printed and "Volumes (ml)" in printed
    cases = []
    for name in ("Case_A", "Case_B", "Case_C"):
        truth = read_labels(tmp_path / "truth" / f"{name}.nii.gz")
        cases.append((name, read_labels(tmp_path / "pred" / f"{name}.nii.gz").data, truth.data, truth.spacing))
    expected = evaluate_cases(cases)
    written = json.loads((tmp_path / "out/report.json").read_text())
    assert written == _plain({**expected.to_dict(), "pred": str(tmp_path / "pred"),
                              "truth": str(tmp_path / "truth")})
    rows = list(csv.DictReader(open(tmp_path / "out/table.csv", encoding="utf-8")))
    assert [r["case"] for r in rows[:4]] == ["Case_A", "Case_B", "Case_C", "mean"]
    assert float(rows[3]["mean"]) == pytest.approx(expected.per_case["mean"], rel=1e-5)
    # --csv alone: the JSON goes to the --out prefix
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--bootstrap", "0",
                 "--out", str(tmp_path / "ev"), "--csv", str(tmp_path / "only.csv")]) == 0
    assert (tmp_path / "only.csv").is_file() and (tmp_path / "ev.json").is_file() and not (tmp_path / "ev.csv").exists()
    capsys.readouterr()
    for flags, said in ((["--csv", str(tmp_path / "out")], "out: is a folder: give a .csv file"),
                        (["--json", str(tmp_path / "nowhere/r.json")], "nowhere: folder does not exist"),
                        (["--csv", str(tmp_path / "x"), "--json", str(tmp_path / "x")], "name the same file")):
        assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), *flags]) == 2
        assert said in capsys.readouterr().err
