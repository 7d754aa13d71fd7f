"""training/: config paths, seed run folders, the seed summary (mean ± sd) behind RESULTS.md, ensemble member choice."""

from __future__ import annotations

import importlib
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str, file: str):
    """A module of the training package (training/<file>, importable as training.<name>)."""
    return importlib.import_module(f"training.{Path(file).stem}")


@pytest.fixture(scope="module")
def runner():
    return _script("run", "run.py")


def test_configs_resolve_paths_and_seed_folders(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("LVSEG_EMIDEC_DIR", str(tmp_path / "emidec"))
    config = runner.load_config(ROOT / "training/configs/seg_mixed.json")
    assert config["data"] == [str(tmp_path / "emidec"), str(ROOT / "training/runs/synthetic")]
    assert config["split"] == str(ROOT / "training/split.json")
    path = ROOT / "training/configs/seg_real.json"
    assert runner.run_folder(path) == runner.run_folder(path, 0) == ROOT / "training/runs/seg_real"
    assert runner.run_folder(path, 2) == ROOT / "training/runs/seg_real_seed2"


def test_every_config_names_known_options(runner):
    from napari_lvseg.engine import TrainOptions
    from training.config import is_task_base

    known = set(TrainOptions.__dataclass_fields__) | {"description", "synthetic", "base"}
    for path in sorted((ROOT / "training/configs").glob("*.json")):
        config = json.loads(path.read_text())
        assert set(config) <= known, (path.name, set(config) - known)
        if is_task_base(path):
            continue
        fields = TrainOptions.__dataclass_fields__
        TrainOptions(**{k: v for k, v in runner.load_config(path).items() if k in fields}).validate()


def test_an_ensemble_member_exports_as_a_model_of_its_own(runner, tmp_path):
    import torch

    from napari_lvseg.models.registry import load_model
    from napari_lvseg.widgets._testing import save_tiny_segmentation_model

    members = [save_tiny_segmentation_model(tmp_path, name=f"net{i}", seed=i) for i in range(2)]
    runner.ensemble(tmp_path / "ens", members)
    runner.export_member(tmp_path / "ens", 1, tmp_path / "second")
    net, card = load_model(tmp_path / "second", task="segmentation")
    original, _ = load_model(members[1])
    assert card.architecture == "AttentionResUNet" and card.name == "ens-member1"
    assert card.training["name"] == "net1" and card.training["source"] == str(members[1])
    x = torch.rand(1, 1, 128, 128)
    assert torch.equal(net(x), original(x))
    with pytest.raises(SystemExit, match="no member 2"):
        runner.export_member(tmp_path / "ens", 2, tmp_path / "third")


def test_the_last_epoch_of_a_generator_run_exports_as_a_model(runner, tmp_path):
    import torch

    from napari_lvseg.engine import TrainOptions, train
    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.widgets._testing import phantom_pair_folder

    pairs = phantom_pair_folder(tmp_path / "pairs", n_pairs=2, n_slices=2).root
    list(train(TrainOptions(task="synthesis", data=[str(pairs)], out=str(tmp_path / "gan"), epochs=1,
                            samples_per_epoch=2, batch_size=2, width=4, disc_width=8, threads=1, device="cpu")))
    runner.export_last(tmp_path / "gan", tmp_path / "last")
    net, card = load_model(tmp_path / "last", task="synthesis")
    state = load_checkpoint(tmp_path / "gan" / "last.pt")["task"]["generator"]
    assert card.name == "gan-last" and all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def _metrics(run: Path, cavity: float, no_reflow: float):
    run.mkdir(parents=True)
    study = {"cavity": cavity, "myocardium": 0.8, "infarct": 0.5, "no_reflow": no_reflow,
             "mean": (cavity + 0.8 + 0.5 + no_reflow) / 4}
    emidec = {"dice_myocardium": 0.85, "dice_infarct": 0.6, "dice_no_reflow": no_reflow}
    (run / "test_metrics_tta.json").write_text(json.dumps({"study": [study], "pooled": study, "emidec": [emidec]}))


def test_summary_gives_each_run_and_mean_sd_over_seeds(runner, tmp_path):
    _metrics(tmp_path / "seg_mixed", 0.90, 0.40)
    _metrics(tmp_path / "seg_mixed_seed1", 0.94, 0.60)
    _metrics(tmp_path / "seg_real", 0.92, 0.30)
    text = runner.summary([tmp_path / "seg_mixed", tmp_path / "seg_mixed_seed1", tmp_path / "seg_real"])
    lines = text.splitlines()
    assert "| seg_mixed_seed1 | pooled | 0.940 | 0.800 | 0.500 | 0.600 | 0.710 |" in lines
    # mean ± sample sd over the two seeds of seg_mixed; the single seg_real run gets no summary row
    assert ("| **seg_mixed, 2 seeds** | per case | 0.920 ± 0.028 | 0.800 ± 0.000 | 0.500 ± 0.000 | 0.500 ± 0.141 "
            "| 0.680 ± 0.042 |") in lines
    assert not any("seg_real, " in line for line in lines)
    assert "| **seg_mixed, 2 seeds** | EMIDEC | 0.850 ± 0.000 | 0.600 ± 0.000 | 0.500 ± 0.141 |" in lines


def test_postprocess_tuning_tries_class_weights_first_and_keeps_no_change_on_ties(runner):
    import numpy as np

    truth = np.zeros((2, 12, 12), np.uint8)
    truth[:, 2:10, 2:10] = 2
    truth[:, 4:8, 4:8] = 1
    truth[:, 2:4, 2:10] = 3                       # an infarct the network ranks second (0.35 against 0.45)
    prob = np.zeros((2, 5, 12, 12), np.float32)
    np.put_along_axis(prob, np.where(truth == 3, 2, truth)[:, None].astype(np.int64), 0.45, axis=1)
    prob[:, 3][truth == 3] = 0.35
    scores = runner.postprocess_scores({"c": (prob, truth)})
    assert len(scores) == np.prod([len(v) for v in runner.POSTPROCESS_GRID.values()])
    assert scores[0][1] == {"infarct_weight": 1.0, "no_reflow_weight": 1.0, "min_infarct_voxels": 0,
                            "min_no_reflow_voxels": 0}
    assert scores[0][0] < 1.0
    best_score, best = max(scores, key=lambda item: item[0])
    # 0.35 x 1.5 > 0.45: the smallest infarct weight that finds it, and every other option left unchanged
    assert best_score == 1.0 and best == {**scores[0][1], "infarct_weight": 1.5}


@pytest.fixture(scope="module")
def chooser():
    return _script("choose_ensemble", "choose_ensemble.py")


def _cached_run(folder: Path, predictions: dict) -> Path:
    """A run folder holding only cached probabilities (val and test alike): ``{case: (labels, confidence)}``."""
    import numpy as np

    folder.mkdir(parents=True)
    probs = {}
    for name, (labels, confidence) in predictions.items():
        p = np.full((labels.shape[0], 5) + labels.shape[1:], (1 - confidence) / 4, np.float32)
        np.put_along_axis(p, labels[:, None].astype(np.int64), confidence, axis=1)
        probs[name] = p.astype(np.float16)
    for split in ("val", "test"):
        np.savez(_script("choose_ensemble", "choose_ensemble.py").probabilities_cache(folder, split), **probs)
    return folder


def test_greedy_selection_adds_runs_while_validation_rises(chooser, monkeypatch, tmp_path):
    import numpy as np

    truth = np.zeros((2, 8, 8), np.uint8)
    truth[:, 2:6, 2:6] = 2
    truth[:, 3:5, 3:5] = 1
    wrong = np.where(truth == 2, 1, truth).astype(np.uint8)  # the myocardium called cavity
    cases = {"c1": (truth.astype(np.float32), truth), "c2": (truth.astype(np.float32), truth)}
    # a and b are each sure and right on one case, unsure and wrong on the other: together they are right
    # on both; c is sure and wrong everywhere
    a = _cached_run(tmp_path / "a", {"c1": (truth, 0.9), "c2": (wrong, 0.6)})
    b = _cached_run(tmp_path / "b", {"c1": (wrong, 0.6), "c2": (truth, 0.9)})
    c = _cached_run(tmp_path / "c", {"c1": (wrong, 0.9), "c2": (wrong, 0.9)})
    runs = [str(a), str(b), str(c)]
    monkeypatch.setattr(chooser, "weights_mb", lambda run: 30.0 if Path(run).name == "b" else 5.0)

    path = chooser.greedy(runs, cases, cases, max_members=5, max_mb=40.0)
    assert [[Path(m).name for m in step["members"]] for step in path] == [["a"], ["a", "b"]]
    assert path[0]["val_per_case_mean"] < 1.0 and path[1]["val_per_case_mean"] == 1.0
    assert path[1]["test_per_case_mean"] == path[1]["test_pooled_mean"] == 1.0
    assert path[1]["mb_float16"] == 35.0
    # b over the size limit: adding c lowers validation, so the selection stops at a alone
    path = chooser.greedy(runs, cases, cases, max_members=5, max_mb=21.0)
    assert [[Path(m).name for m in step["members"]] for step in path] == [["a"]]
    assert chooser.greedy(runs, cases, cases, max_members=1, max_mb=40.0)[-1]["members"] == [str(a)]


def test_class_weight_check_scores_both_choices_on_the_test_split(tmp_path):
    import numpy as np

    checker = _script("check_class_weights", "check_class_weights.py")
    truth = np.zeros((2, 12, 12), np.uint8)
    truth[:, 2:10, 2:10] = 2
    truth[:, 4:8, 4:8] = 1
    truth[:, 2:4, 2:10] = 3
    prob = np.zeros((2, 5, 12, 12), np.float32)
    np.put_along_axis(prob, np.where(truth == 3, 2, truth)[:, None].astype(np.int64), 0.45, axis=1)
    prob[:, 3][truth == 3] = 0.35             # the infarct ranked second everywhere
    run = tmp_path / "run"
    run.mkdir()
    for split in ("val", "test"):
        np.savez(_script("choose_ensemble", "choose_ensemble.py").probabilities_cache(run, split),
                 c=prob.astype(np.float16))
    cases = {"c": (truth.astype(np.float32), truth)}
    row = checker.check(str(run), cases, cases)
    plain, weighted = row["volumes only"], row["weights + volumes"]
    assert plain["post"]["infarct_weight"] == 1.0 and plain["test_per_case"] < 1.0
    assert weighted["post"]["infarct_weight"] == 1.5 and weighted["test_per_case"] == weighted["test_pooled"] == 1.0


def test_cached_probabilities_are_recomputed_when_the_weights_are_newer(chooser, tmp_path):
    import os

    import numpy as np

    from napari_lvseg.errors import LvsegError

    labels = np.zeros((1, 4, 4), np.uint8)
    run = _cached_run(tmp_path / "run", {"c1": (labels, 0.9)})
    cases = {"c1": (labels.astype(np.float32), labels)}
    assert chooser.cached_probabilities(run, "val", cases)["c1"].shape == (1, 5, 4, 4)
    weights = run / "model.safetensors"
    weights.write_bytes(b"retrained")  # newer than the cache: the cache must not be used
    cache_time = chooser.probabilities_cache(run, "val").stat().st_mtime
    os.utime(weights, (cache_time + 10, cache_time + 10))
    with pytest.raises(LvsegError, match="not a model directory"):  # it went to the weights
        chooser.cached_probabilities(run, "val", cases)


@pytest.fixture(scope="module")
def cross_validation():
    return _script("cross_validate", "cross_validate.py")


def test_committed_folds_are_a_stratified_deal_of_the_development_cases(cross_validation, emidec_dir, tmp_path):
    split = json.loads((ROOT / "training/split.json").read_text())
    paths = cross_validation.make_folds(4, data=emidec_dir, splits=tmp_path)
    folds = [json.loads(p.read_text()) for p in paths]
    # the committed files are what make_folds gives
    assert folds == [json.loads((ROOT / "training/splits" / p.name).read_text()) for p in paths]
    vals = [f["val"] for f in folds]
    assert sorted(c for v in vals for c in v) == sorted(split["train"] + split["val"])
    for fold in folds:
        assert not set(fold["train"]) & set(fold["val"]) and fold["test"] == split["test"]
        assert sorted(fold["train"] + fold["val"]) == sorted(split["train"] + split["val"])
    normals = [sum(c.startswith("Case_N") for c in v) for v in vals]
    assert max(normals) - min(normals) <= 1


def test_committed_five_folds_deal_all_60_cases(cross_validation, emidec_dir, tmp_path):
    split = json.loads((ROOT / "training/split.json").read_text())
    every = sorted(split["train"] + split["val"] + split["test"])
    paths = cross_validation.make_folds(5, data=emidec_dir, splits=tmp_path)
    folds = [json.loads(p.read_text()) for p in paths]
    assert folds == [json.loads((ROOT / "training/splits" / p.name).read_text()) for p in paths]
    assert sorted(c for f in folds for c in f["val"]) == every and len(every) == 60
    for fold in folds:
        assert sorted(fold["train"] + fold["val"]) == every and fold["test"] == [] and len(fold["val"]) == 12
        assert sum(c.startswith("Case_N") for c in fold["val"]) == 4   # 20 normal cases, 4 per fold


def test_a_fold_run_trains_without_its_fold_and_validates_on_it(cross_validation, emidec_dir, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("LVSEG_EMIDEC_DIR", str(emidec_dir))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"task": "segmentation", "data": ["${EMIDEC}"], "out": str(tmp_path / "unused"),
                                  "split": "training/split.json", "epochs": 2, "samples_per_epoch": 8,
                                  "batch_size": 4, "width": 4, "depth": 2, "threads": 2, "augment": "none"}))
    run = cross_validation.run_fold(config, 4, 3, cv_runs=tmp_path / "cv", threads=1)   # two runs share two cores
    assert run == tmp_path / "cv" / "tiny_cv4f3"
    fold = json.loads((ROOT / "training/splits/cv4_fold3.json").read_text())
    options = json.loads((run / "options.json").read_text())
    assert options["split"] == str(ROOT / "training/splits/cv4_fold3.json") and options["threads"] == 1
    start = json.loads((run / "events.jsonl").read_text().splitlines()[0])
    assert f"from {len(fold['val'])} cases" in start["message"]
    scores = cross_validation.fold_scores(run)
    assert scores["epochs"] == 2 and scores["best_epoch"] in (1, 2) and scores["best"] >= scores["last"]
    table = cross_validation.summary([config], 4, cv_runs=tmp_path / "cv").splitlines()
    assert table[-1].startswith("| tiny | 1 of 4 | 2 | ")
    config.write_text(config.read_text().replace('"epochs": 2', '"epochs": 3'))   # now the run is one epoch short
    table = cross_validation.summary([config], 4, cv_runs=tmp_path / "cv").splitlines()
    assert table[-1] == "| tiny | 0 of 4 (1 training) | | | | | |"
    # the fold scores and cards kept for RESULTS.md: a fold still training is kept too, folds without a run are not
    saved = cross_validation.save_fold_results(config, 4, out=tmp_path / "results", cv_runs=tmp_path / "cv")
    assert saved == tmp_path / "results" / "tiny_cv4_fold_scores.json"
    assert json.loads(saved.read_text()) == {"fold3": scores}
    assert (tmp_path / "results/tiny_cv4f3/card.json").read_bytes() == (run / "card.json").read_bytes()


def test_slice_split_makes_one_case_per_slice_and_splits_all_slices(emidec_cases, tmp_path):
    from napari_lvseg.io import emidec

    slice_split = _script("slice_split", "slice_split.py")
    case = emidec.find_cases(emidec_cases[-1])[0]
    image, labels = emidec.read_case(case)
    out = slice_split.make(data=emidec_cases[-1], out=tmp_path)
    slices = emidec.find_cases(out / "data")
    assert [c.name for c in slices] == [f"{case.name}_z{z:02d}" for z in range(len(labels.data))]
    for z, one in enumerate(slices):
        image_z, labels_z = emidec.read_case(one)
        assert labels_z.data.shape == (1,) + labels.data.shape[1:]
        assert (labels_z.data[0] == labels.data[z]).all() and (image_z.data[0] == image.data[z]).all()
    split = json.loads((out / "split.json").read_text())
    parts = [split[k] for k in ("train", "val", "test")]
    assert sorted(sum(parts, [])) == [c.name for c in slices]
    assert len(split["test"]) == round(0.2 * len(slices)) and len(split["val"]) == round(0.1 * len(slices))
    # another seed: a second split file beside the first, over the same slices
    assert slice_split.make(data=emidec_cases[-1], out=tmp_path, seed=2027) == out
    second = json.loads((out / "split_seed2027.json").read_text())
    assert sorted(sum((second[k] for k in ("train", "val", "test")), [])) == [c.name for c in slices]
    assert json.loads((out / "split.json").read_text()) == split
    from napari_lvseg.widgets._testing import save_tiny_segmentation_model

    run = save_tiny_segmentation_model(tmp_path, "run")
    (run / "options.json").write_text(json.dumps({"data": [str(out / "data")], "split": str(out / "split.json")}))
    assert slice_split.held_out(run) == (str(out / "data"), split["test"])
    scored = slice_split.evaluate(run)   # its held-out slices, pooled; all from one heart, so no interval
    assert scored["held_out"] == scored["slices"] == len(split["test"]) and scored["hearts"] == 1
    assert scored["bootstrap"] is None
    assert json.loads((run / "held_out_pooled.json").read_text())["pooled"]["cavity"] == scored["pooled"]["cavity"]
    # slices of two hearts: the interval draws the hearts (each alone at the extremes), not the slices
    two = tmp_path / "two"
    two.mkdir()
    for case in emidec_cases[-2:]:
        (two / case.name).symlink_to(case, target_is_directory=True)
    both = slice_split.make(data=two, out=tmp_path / "both")
    names = [c.name for c in emidec.find_cases(both / "data")]
    (both / "all.json").write_text(json.dumps({"test": names}))
    (run / "options.json").write_text(json.dumps({"data": [str(both / "data")], "split": str(both / "all.json")}))
    scored = slice_split.evaluate(run)
    assert scored["slices"] == len(names) and scored["hearts"] == 2
    low, high = scored["bootstrap"]["cavity"]
    assert 0.0 <= low < high <= 1.0 and low <= scored["pooled"]["cavity"] <= high
    # two runs on the same slices: the second's lead, with a paired interval over the same drawn hearts
    other = save_tiny_segmentation_model(tmp_path, "other", seed=1)
    (other / "options.json").write_text((run / "options.json").read_text())
    compared = slice_split.compare(run, other)
    first, second = compared["pooled"]
    assert first["cavity"] == scored["pooled"]["cavity"] and compared["hearts"] == 2
    assert not math.isnan(compared["difference"]["mean"][0])
    for key, (lead, low, high) in compared["difference"].items():
        if not math.isnan(first[key] - second[key]):
            assert lead == pytest.approx(second[key] - first[key]) and low <= lead <= high
    assert json.loads((other / "held_out_vs_run.json").read_text())["hearts"] == 2
    itself = slice_split.compare(run, run)["difference"]["cavity"]
    assert itself == pytest.approx((0.0, 0.0, 0.0))
    (other / "options.json").write_text(json.dumps({"data": [str(both / "data")], "split": str(out / "split.json")}))
    with pytest.raises(SystemExit, match="hold out different slices"):
        slice_split.compare(run, other)
    # the slices both splits hold out: slice-level test slices of the case-level test cases only
    test_case = json.loads((ROOT / "training/split.json").read_text())["test"][0]
    (out / "split.json").write_text(json.dumps({"test": [f"{test_case}_z00", f"{test_case}_z03", "Case_X_z01"]}))
    assert slice_split.common_slices(out / "split.json") == [f"{test_case}_z00", f"{test_case}_z03"]
    (out / "split_seed2027.json").write_text(json.dumps({"test": [f"{test_case}_z01", "Case_X_z01"]}))
    assert slice_split.common_slices(out / "split_seed2027.json") == [f"{test_case}_z01"]


def test_a_run_on_all_development_cases_keeps_its_last_epoch_and_borrows_post_processing(runner, emidec_dir,
                                                                                          tmp_path, monkeypatch):
    import numpy as np

    from napari_lvseg.engine.checkpoint import load_checkpoint
    from napari_lvseg.models.card import read_card
    from napari_lvseg.models.weights import save_model

    split = json.loads((ROOT / "training/split.json").read_text())
    all_dev = json.loads((ROOT / "training/splits/all_dev.json").read_text())
    assert all_dev["train"] == sorted(split["train"] + split["val"]) and all_dev["val"] == []
    assert all_dev["test"] == split["test"]
    monkeypatch.setenv("LVSEG_EMIDEC_DIR", str(emidec_dir))
    config = tmp_path / "tiny_all.json"
    config.write_text(json.dumps({"task": "segmentation", "data": ["${EMIDEC}"], "out": str(tmp_path / "run"),
                                  "split": "training/splits/all_dev.json", "epochs": 2, "samples_per_epoch": 8,
                                  "batch_size": 4, "width": 4, "depth": 2, "threads": 1, "augment": "none"}))
    run = runner.train(config)
    card = read_card(run)
    assert card.training["train_cases"] == all_dev["train"] and card.training["val_cases"] == []
    assert card.training["epochs"] == 2 and '"kind": "validation"' not in (run / "events.jsonl").read_text()

    # the last epoch of a run as a model folder: the weights of last.pt
    last = runner.export_last(run, tmp_path / "last")
    net, last_card = runner.load_on(last)
    state = load_checkpoint(run / "last.pt")["task"]["model"]
    assert all(np.array_equal(v.numpy(), state[k].numpy()) for k, v in net.state_dict().items())
    assert last_card.training["epochs"] == 2

    with pytest.raises(SystemExit, match="no tuned post-processing"):
        runner.adopt_postprocess(run, last)
    last_card.extra["postprocess"] = {"min_infarct_voxels": 50, "min_no_reflow_voxels": 25,
                                      "tuned_on": "validation split"}
    save_model(last, net, last_card)
    runner.adopt_postprocess(run, last)
    assert read_card(run).extra["postprocess"] == {"min_infarct_voxels": 50, "min_no_reflow_voxels": 25,
                                                   "tuned_on": "validation split, by last"}


def test_post_processing_is_chosen_on_the_other_folds_and_scored_on_each_fold(cross_validation, monkeypatch):
    import numpy as np

    runner = cross_validation.runner   # a smaller grid of the same form keeps the test quick
    monkeypatch.setattr(runner, "WEIGHT_GRID", {"infarct_weight": [1.0, 1.5, 2.0], "no_reflow_weight": [1.0, 2.0]})
    monkeypatch.setattr(runner, "VOLUME_GRID", {"min_infarct_voxels": [0, 50], "min_no_reflow_voxels": [0, 10]})

    truth = np.zeros((2, 12, 12), np.uint8)
    truth[:, 2:10, 2:10] = 2
    truth[:, 4:8, 4:8] = 1
    truth[:, 2:4, 2:10] = 3
    ranked_second = np.zeros((2, 5, 12, 12), np.float32)   # the infarct ranked second (0.35 against 0.45)
    np.put_along_axis(ranked_second, np.where(truth == 3, 2, truth)[:, None].astype(np.int64), 0.45, axis=1)
    ranked_second[:, 3][truth == 3] = 0.35
    normal = np.where(truth == 3, 2, truth).astype(np.uint8)
    confident = np.zeros_like(ranked_second)             # a normal case, sure of itself: no weight can hurt it
    np.put_along_axis(confident, normal[:, None].astype(np.int64), 1.0, axis=1)
    oof = {1: {"a": (ranked_second, truth)}, 2: {"b": (ranked_second, truth), "n": (confident, normal)}}

    result = cross_validation.judge_postprocess(oof)
    assert [f["fold"] for f in result["folds"]] == [1, 2] and result["cases"] == 3
    for fold in result["folds"]:
        assert fold["LV component only"]["post"]["infarct_weight"] == 1.0
        assert fold["LV component only"]["per_case"] < 1.0 and fold["volumes only"]["per_case"] < 1.0
        assert fold["weights + volumes"]["post"]["infarct_weight"] == 1.5
        assert fold["weights + volumes"]["per_case"] == fold["weights + volumes"]["pooled"] == 1.0
    assert result["mean"]["weights + volumes"] == {"per_case": 1.0, "per_case_sd": 0.0, "pooled": 1.0,
                                                   "pooled_sd": 0.0}
    assert result["chosen_on_all"]["infarct_weight"] == 1.5
    # all three cases at once, each as its fold chose: the study's table, per case and pooled
    everything = result["all_cases"]["weights + volumes"]
    assert everything["per_case"]["mean"] == everything["pooled"]["mean"] == everything["pooled"]["infarct"] == 1.0
    assert result["all_cases"]["LV component only"]["pooled"]["infarct"] == 0.0
    assert result["all_cases"]["LV component only"]["pooled"]["cavity"] == 1.0
    table = cross_validation.postprocess_table(result).splitlines()
    assert table[2].startswith("| 1 | 1 | ") and table[2].endswith("| x1.5 / x1 |")
    assert table[-1] == "| weights + volumes | pooled | 1.000 | 1.000 | 1.000 | nan | 1.000 |"
    with pytest.raises(SystemExit, match="at least 2"):
        cross_validation.judge_postprocess({1: oof[1]})
    # one fold is enough for a post-processing fixed in advance
    weighted = cross_validation.score_fixed({1: oof[1]}, {"infarct_weight": 1.5})
    assert {k: v for k, v in weighted["folds"][0].items() if k != "classes"} == {"fold": 1, "cases": 1,
                                                                                 "per_case": 1.0, "pooled": 1.0}
    assert weighted["folds"][0]["classes"]["pooled"]["infarct"] == 1.0   # each fold's whole study table
    assert weighted["post"]["infarct_weight"] == 1.5 and weighted["post"]["largest_component"] is True
    bare = cross_validation.score_fixed(oof, {})
    assert [f["fold"] for f in bare["folds"]] == [1, 2] and bare["cases"] == 3
    assert json.dumps(bare["all_cases"]) == json.dumps(result["all_cases"]["LV component only"])   # NaN == NaN
    table = cross_validation.score_table(bare).splitlines()
    assert table[2].startswith("| 1 | 1 | ") and table[-1].startswith("| pooled | 1.000 | ")


def test_an_ensemble_is_judged_on_its_mean_probabilities_over_the_folds_all_members_finished(cross_validation):
    import numpy as np

    truth = np.zeros((1, 4, 4), np.uint8)
    first, second = np.zeros((1, 5, 4, 4), np.float16), np.zeros((1, 5, 4, 4), np.float16)
    first[:, 1], second[:, 1], second[:, 2] = 1.0, 0.5, 0.5
    members = [{1: {"a": (first, truth)}, 2: {"b": (first, truth)}},   # fold 3 unfinished for this member
               {1: {"a": (second, truth)}, 2: {"b": (second, truth)}, 3: {"c": (second, truth)}}]
    oof = cross_validation.ensemble_out_of_fold(members)
    assert sorted(oof) == [1, 2] and sorted(oof[1]) == ["a"]
    probs, kept = oof[1]["a"]
    assert kept is truth and probs.dtype == np.float32
    assert np.allclose(probs[:, 1], 0.75) and np.allclose(probs[:, 2], 0.25) and np.allclose(probs[:, 0], 0)
    assert cross_validation._member("training/configs/x.json@2") == ("training/configs/x.json", 2)
    assert cross_validation._member("training/configs/x.json", 1) == ("training/configs/x.json", 1)


def test_compare_gives_per_fold_differences_on_the_folds_both_results_hold(cross_validation):
    def result(scores):   # {fold: (volumes-only per case, weights + volumes per case)}; pooled = per case + 0.1
        return {"folds": [{"fold": k, "volumes only": {"per_case": v, "pooled": v + 0.1},
                           "weights + volumes": {"per_case": w, "pooled": w + 0.1}} for k, (v, w) in scores.items()]}

    table = cross_validation.compare(result({1: (0.5, 0.6), 2: (0.6, 0.6), 3: (0.7, 0.7)}),
                                     result({2: (0.7, 0.5), 3: (0.7, 0.8)})).splitlines()
    assert table[2] == "| 2 | +0.100 | +0.100 | -0.100 | -0.100 |"
    assert table[3] == "| 3 | +0.000 | +0.000 | +0.100 | +0.100 |"
    assert table[4] == "| **mean ± sd** | +0.050 ± 0.071 | +0.050 ± 0.071 | +0.000 ± 0.141 | +0.000 ± 0.141 |"


def test_synthesis_judge_scores_pooled_dice_per_class():
    import numpy as np

    judge = _script("judge_synthesis", "judge_synthesis.py")
    truth = np.array([[[1, 1, 2, 2], [3, 3, 0, 0]]])
    pred = np.array([[[1, 2, 2, 2], [3, 0, 0, 4]]])
    dice = judge.pooled_dice(pred, truth)
    assert dice["cavity"] == round(2 / 3, 3) and dice["myocardium"] == 0.8 and dice["infarct"] == round(2 / 3, 3)
    assert dice["no_reflow"] == 0.0                        # predicted, absent from the truth
    assert np.isnan(judge.pooled_dice(truth, truth * (truth < 3))["no_reflow"])   # absent from both


def test_fold_numbers_take_a_list_and_refuse_folds_outside_1_to_k(cross_validation):
    assert cross_validation.fold_numbers("3,4", 4) == [3, 4]
    assert cross_validation.fold_numbers("2", 4) == [2]
    with pytest.raises(SystemExit, match="folds are 1..4"):
        cross_validation.fold_numbers("0,5", 4)
    with pytest.raises(SystemExit, match="expected fold numbers"):
        cross_validation.fold_numbers("3-4", 4)


def test_the_fold_models_ship_as_one_ensemble_with_the_post_processing_chosen_out_of_fold(cross_validation,
                                                                                          monkeypatch, tmp_path):
    """`ship`: every fold's last-epoch network, averaged; the card carries the rule `postprocess --last` chose on all
    folds, the out-of-fold means, the members' LV size (median) and, bundled, the default mark. An unfinished fold
    or a missing judgement is refused."""
    import torch

    from napari_lvseg.models.card import read_card
    from napari_lvseg.models.registry import load_model
    from napari_lvseg.widgets._testing import save_tiny_segmentation_model

    runs = {}
    for k in (1, 2, 3):
        runs[k] = save_tiny_segmentation_model(tmp_path / "cv", name=f"tiny_cv3f{k}", seed=k)
        card = json.loads((runs[k] / "card.json").read_text())
        card["expects"] = {"lv_diameter_px": 60.0 + k, "lv_diameter_range_px": [50.0 + k, 70.0], "pixel_size_mm": None}
        (runs[k] / "card.json").write_text(json.dumps(card))
    finished = {1: True, 2: True, 3: True}
    monkeypatch.setattr(cross_validation, "fold_state", lambda config, folds, k, *a: (runs[k], {}, finished[k]))
    monkeypatch.setattr(cross_validation, "last_epoch_model", lambda run: run)
    with pytest.raises(SystemExit, match="no post-processing judged yet"):
        cross_validation.ship("tiny.json", 3, tmp_path / "out", "lvseg-seg", results=tmp_path / "results")
    rule = {"infarct_weight": 3.0, "no_reflow_weight": 1.0, "min_infarct_voxels": 50, "min_no_reflow_voxels": 0}
    (tmp_path / "results").mkdir()
    (tmp_path / "results/tiny_cv3_postprocess_last.json").write_text(json.dumps(
        {"chosen_on_all": rule, "cases": 36, "mean": {"weights + volumes": {"per_case": 0.6, "pooled": 0.7}}}))
    out = cross_validation.ship("tiny.json", 3, tmp_path / "out", "lvseg-seg", bundle=True,
                                results=tmp_path / "results")
    net, card = load_model(out, task="segmentation")
    assert card.architecture == "SegmentationEnsemble" and len(net.members) == 3 and card.is_default
    assert {k: card.extra["postprocess"][k] for k in rule} == rule and "36 cases" in card.extra["postprocess"][
        "tuned_on"]
    assert card.extra["expects"]["lv_diameter_px"] == 62.0 and card.extra["expects"]["lv_diameter_range_px"] == [
        52.0, 70.0]
    assert card.extra["cross_validation"]["out_of_fold"]["weights + volumes"]["pooled"] == 0.7
    x = torch.rand(1, 1, 128, 128)
    members = [load_model(runs[k])[0] for k in (1, 2, 3)]
    with torch.no_grad():
        expected = sum(torch.softmax(m(x), 1) for m in members) / 3
        assert torch.allclose(torch.softmax(net(x), 1), expected, atol=2e-2)   # float16 weights
    assert read_card(out / "card.json").name == "lvseg-seg"
    two = cross_validation.ship("tiny.json", 3, tmp_path / "two", "lvseg-seg", members=[1, 3],
                                results=tmp_path / "results")
    net, card = load_model(two, task="segmentation")
    assert len(net.members) == 2 and card.extra["cross_validation"]["members"] == [1, 3] and not card.is_default
    finished[2] = False
    with pytest.raises(SystemExit, match="fold 2 .* has not finished"):
        cross_validation.ship("tiny.json", 3, tmp_path / "again", "lvseg-seg", results=tmp_path / "results")


def test_a_synthetic_set_of_edits_comes_from_the_training_cases_rendered_in_context(runner, tmp_path):
    import numpy as np

    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.engine import TrainOptions, train
    from napari_lvseg.io.pairs import PairFolder

    real = PairFolder(tmp_path / "real")
    for seed in range(3):
        image, labels = make_phantom(n_slices=2, seed=seed)
        real.add(image, labels, origin="real", name=f"phantom_P{seed}")
    generator = tmp_path / "ctx"
    list(train(TrainOptions(task="synthesis", data=[str(real.root)], out=str(generator), epochs=1,
                            samples_per_epoch=2, batch_size=2, width=4, disc_width=8, threads=1, device="cpu",
                            context_inpaint=True)))
    (tmp_path / "split.json").write_text(json.dumps({"train": ["phantom_P0", "phantom_P1"], "val": ["phantom_P2"],
                                                     "test": []}))
    config = tmp_path / "b.json"
    config.write_text(json.dumps({"task": "segmentation", "data": [str(real.root), str(tmp_path / "edits")],
                                  "out": str(tmp_path / "run"), "split": str(tmp_path / "split.json"),
                                  "synthetic": {"generator": str(generator), "n": 4, "seed": 0,
                                                "edits": ["grow", "clear"]}}))
    out = runner.make_synthetic(config)
    records = PairFolder(out).records()
    assert len(records) == 4 and {r["source_case"] for r in records} <= {"phantom_P0", "phantom_P1"}
    assert {r["edit"] for r in records} <= {"grow", "clear"} and all(r["context"] and r["grain"] for r in records)
    for record in records:   # outside the LV and a margin, each image is its source's
        image, mask = PairFolder(out).read(record["name"])
        source = real.read(record["source_case"])[0][record["source_slice"]]
        assert np.array_equal(image[:, :8], source[:, :8].astype(image.dtype))
    assert runner.make_synthetic(config) == out and len(PairFolder(out).records()) == 4   # made once
