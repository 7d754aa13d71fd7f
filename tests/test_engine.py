"""The training engine: events, run folder, atomic checkpoints, exact resume, stop, bad data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_lvseg.data.phantom import make_phantom
from napari_lvseg.engine import StopToken, TrainOptions, train
from napari_lvseg.errors import LvsegError
from napari_lvseg.io.pairs import PairFolder


def options(data, out, **kw):
    base = dict(data=[str(data)], out=str(out), epochs=2, samples_per_epoch=8, batch_size=4, size=64,
                width=4, depth=3, seed=3, threads=1, val_fraction=0.4, checkpoint_every=1, augment="light")
    return TrainOptions(**{**base, **kw})


def weights(run) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


def test_train_writes_run_folder_and_events(phantom_pairs, tmp_path):
    events = list(train(options(phantom_pairs, tmp_path / "run")))
    # before the run starts it says what it is doing (shown, not logged: the folder may not exist yet)
    said = [e.message for e in events if e.kind == "message"]
    assert said[:2] == ["building the network", "setting up the augmentation (MONAI)"]
    assert said[2].startswith(f"reading {phantom_pairs.name} (") and said[3].startswith("first step: a batch of")
    assert [e.kind for e in events[:5]] == ["message"] * 3 + ["start", "message"]
    events = [e for e in events if e.kind != "message"]
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.count("step") == 4 and kinds.count("validation") == 2
    steps = [e.step for e in events if e.kind == "step"]
    assert steps == [1, 2, 3, 4]
    val = [e for e in events if e.kind == "validation"][0].metrics
    assert set(val) >= {"cavity", "myocardium", "infarct", "no_reflow", "mean"}
    run = tmp_path / "run"
    for name in ("options.json", "events.jsonl", "last.pt", "best.pt", "card.json", "model.safetensors"):
        assert (run / name).is_file(), name
    logged = [json.loads(line)["kind"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert logged == kinds
    card = json.loads((run / "card.json").read_text())
    assert card["task"] == "segmentation" and card["normalization"]["method"] == "percentile"
    assert set(card["training"]["val_cases"]).isdisjoint(card["training"]["train_cases"])
    assert not list(run.glob("*.tmp*")), "temp files left behind"


def test_card_names_real_cases_and_counts_synthetic_pairs(phantom_pairs, tmp_path):
    synthetic = PairFolder(tmp_path / "synthetic")
    for seed in range(3):
        image, labels = make_phantom(n_slices=1, size=64, seed=10 + seed)
        synthetic.add(image, labels, origin="synthetic", source="simulated", name=f"syn{seed}")
    run = options(phantom_pairs, tmp_path / "run", epochs=1)
    run.data.append(str(tmp_path / "synthetic"))
    list(train(run))
    training = json.loads((tmp_path / "run" / "card.json").read_text())["training"]
    assert training["synthetic_pairs"] == 3
    assert training["train_cases"] and not any(c.startswith("syn") for c in training["train_cases"])
    run.out, run.mix, run.samples_per_epoch = str(tmp_path / "run0"), [1, 0], None   # synthetic at ratio 0
    list(train(run))
    training = json.loads((tmp_path / "run0" / "card.json").read_text())["training"]
    assert training["synthetic_pairs"] == 0 and training["mix"] == [1]
    assert training["samples_per_epoch"] == 3 * len(training["train_cases"])   # 3 slices per phantom case


def test_pairs_made_from_validation_cases_are_left_out_of_training(phantom_pairs, tmp_path):
    """A correction of a validation case (or a synthetic pair drawn from one) must not train: the same heart
    would be on both sides of the split. Pairs from training cases, or of unknown source, train."""
    from napari_lvseg.data.datasets import load_source, mentions_case
    from napari_lvseg.engine.data import split_sources

    derived = PairFolder(tmp_path / "derived")
    for seed in range(5):
        image, labels = make_phantom(n_slices=1, size=64, seed=20 + seed)
        derived.add(image, labels, origin="corrected", source=f"/data/phantom{seed}/image.nii.gz", name=f"fix{seed}")
    derived.add(image, labels, origin="synthetic", source="phantom3 slice 0", source_case="phantom3", name="syn3")
    derived.add(image, labels, origin="synthetic", source="a drawn ring", name="drawn")
    run = options(phantom_pairs, tmp_path / "run")
    sets = [load_source(p, 64) for p in (phantom_pairs, tmp_path / "derived")]
    train_sets, val_sets, left_out = split_sources(run, sets)
    val_cases = set(val_sets[0].case_names())
    assert len(val_cases) == 2 and not val_sets[1].case_names()
    held = {f"fix{c[-1]}" for c in val_cases} | ({"syn3"} if "phantom3" in val_cases else set())
    assert set(left_out) == held
    assert set(train_sets[1].case_names()) == {"fix0", "fix1", "fix2", "fix3", "fix4", "syn3", "drawn"} - held
    assert mentions_case("/d/Case_N012/Images/Case_N012.nii.gz", ["Case_N012"])
    assert not mentions_case("/d/Case_N0123/x.tif", ["Case_N012"])


def test_run_folder_is_a_model(phantom_pairs, tmp_path):
    from napari_lvseg.inference import segment

    list(train(options(phantom_pairs, tmp_path / "run", epochs=1)))
    image, _ = make_phantom(n_slices=2, size=64, seed=9)
    labels = segment(image, str(tmp_path / "run")).labels
    assert labels.shape == image.shape and labels.dtype == np.uint8 and labels.max() <= 4


def test_stop_then_resume_equals_uninterrupted(phantom_pairs, tmp_path):
    list(train(options(phantom_pairs, tmp_path / "full")))
    stop = StopToken()
    seen = []
    for event in train(options(phantom_pairs, tmp_path / "parts"), stop=stop):
        seen.append(event)
        if event.kind == "step" and event.step == 3:  # mid-epoch 2
            stop.stop("paused")
    assert seen[-1].kind == "stopped" and "checkpoint kept" in seen[-1].message
    resumed = [e for e in train(options(phantom_pairs, tmp_path / "parts"), resume=True) if e.kind != "message"]
    assert resumed[0].kind == "start" and "resuming" in resumed[0].message and resumed[0].step == 3
    assert [e.step for e in resumed if e.kind == "step"] == [4]
    full, parts = weights(tmp_path / "full"), weights(tmp_path / "parts")
    assert full.keys() == parts.keys()
    for key in full:
        assert torch.equal(full[key], parts[key]), key


def test_data_workers_give_the_same_run_and_resume_mid_epoch(phantom_pairs, tmp_path):
    """Worker processes build the same batches as the training process, also after a mid-epoch resume."""
    list(train(options(phantom_pairs, tmp_path / "inline", augment="default")))
    stop = StopToken()
    for event in train(options(phantom_pairs, tmp_path / "workers", augment="default", workers=2), stop=stop):
        if event.kind == "step" and event.step == 3:
            stop.stop("paused")
    list(train(options(phantom_pairs, tmp_path / "workers", augment="default", workers=2), resume=True))
    inline, workers = weights(tmp_path / "inline"), weights(tmp_path / "workers")
    for key in inline:
        assert torch.equal(inline[key], workers[key]), key
    losses = [[json.loads(line)["losses"]["loss"] for line in (tmp_path / run / "events.jsonl").read_text().splitlines()
               if json.loads(line)["kind"] == "step"] for run in ("inline", "workers")]
    assert losses[0] == losses[1] and len(set(losses[0])) == 4


def test_resume_extends_epochs_total(phantom_pairs, tmp_path):
    list(train(options(phantom_pairs, tmp_path / "run", epochs=1)))
    events = list(train(options(phantom_pairs, tmp_path / "run", epochs=2), resume=True))
    assert [e.epoch for e in events if e.kind == "step"] == [2, 2]


def test_resume_with_fewer_epochs_than_done_is_refused_and_leaves_the_run_alone(phantom_pairs, tmp_path):
    run = tmp_path / "run"
    list(train(options(phantom_pairs, run, epochs=2)))
    before = (run / "options.json").read_text()
    with pytest.raises(LvsegError, match=r"run: --epochs: the run has 2 epoch\(s\) done: 1 is fewer .* give 2 or more"):
        list(train(options(phantom_pairs, run, epochs=1), resume=True))
    assert (run / "options.json").read_text() == before
    stop = StopToken()   # stopped within its third epoch: that epoch counts too
    for event in train(options(phantom_pairs, run, epochs=3), stop=stop, resume=True):
        if event.kind == "step":
            stop.stop()
    with pytest.raises(LvsegError, match=r"run has 2 epoch\(s\) done and part of the next: .* give 3 or more"):
        list(train(options(phantom_pairs, run, epochs=2), resume=True))


def test_a_bad_value_in_a_runs_options_is_reported_with_its_file(phantom_pairs, tmp_path):
    run = tmp_path / "run"
    list(train(options(phantom_pairs, run, epochs=1)))
    saved = json.loads((run / "options.json").read_text())
    (run / "options.json").write_text(json.dumps({**saved, "width": "x"}))
    with pytest.raises(LvsegError, match=r"options\.json: --width: must be int or None, not 'x'"):
        list(train(options(phantom_pairs, run, epochs=2), resume=True))


def test_fine_tuning_keeps_the_init_models_postprocessing_and_lv_size_and_trains_enough(phantom_pairs, tmp_path):
    """The fine-tuning recipe: the tuned card keeps what was chosen for its --init model (class weights, minimum
    lesion volumes) and the LV size it expects; a few cases' one pass is raised to the recipe's epoch length."""
    from napari_lvseg.engine.segmentation import FINE_TUNE_MIN_SAMPLES

    list(train(options(phantom_pairs, tmp_path / "base", epochs=1)))
    card_file = tmp_path / "base" / "card.json"
    card = json.loads(card_file.read_text())
    post = {"infarct_weight": 3.0, "no_reflow_weight": 3.0, "min_infarct_voxels": 100, "min_no_reflow_voxels": 100}
    card["postprocess"] = post
    card["expects"] = {"lv_diameter_px": 30.0, "lv_diameter_range_px": [26.0, 34.0]}
    card_file.write_text(json.dumps(card))
    events = list(train(options(phantom_pairs, tmp_path / "tuned", epochs=1, samples_per_epoch=None,
                                init=str(tmp_path / "base"))))
    tuned = json.loads((tmp_path / "tuned" / "card.json").read_text())
    assert tuned["postprocess"] == post and tuned["expects"] == card["expects"]
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == FINE_TUNE_MIN_SAMPLES // 4   # batch 4: the phantom pairs' one pass is far fewer slices
    # only the shallow layers train (the input stage and the norms); the deeper ones stay as they were
    before, after = weights(tmp_path / "base"), weights(tmp_path / "tuned")
    assert before.keys() == after.keys() and tuned["training"]["trained"] == "shallow"
    moved = {key for key in before if not np.array_equal(before[key].numpy(), after[key].numpy())}
    assert any(key.startswith("stem.conv") for key in moved) and any("norm" in key for key in moved)
    assert all(key.startswith(("stem.", "encoder.0.")) or "norm" in key for key in moved), moved


def test_fine_tuning_takes_the_init_models_context_and_refuses_another(phantom_pairs, tmp_path):
    list(train(options(phantom_pairs, tmp_path / "flat", epochs=1)))   # 2-D
    with pytest.raises(LvsegError, match=r"flat: --context: 1 asked for, but the model fine-tuned from reads 0 "):
        list(train(options(phantom_pairs, tmp_path / "tuned", epochs=1, init=str(tmp_path / "flat"), context=1)))
    assert not (tmp_path / "tuned").exists()
    list(train(options(phantom_pairs, tmp_path / "deep", epochs=1, context=1)))   # 2.5-D
    list(train(options(phantom_pairs, tmp_path / "tuned", epochs=1, init=str(tmp_path / "deep"))))
    assert json.loads((tmp_path / "tuned" / "options.json").read_text())["context"] == 1
    assert json.loads((tmp_path / "flat" / "options.json").read_text())["context"] == 0


def test_existing_run_needs_resume(phantom_pairs, tmp_path):
    list(train(options(phantom_pairs, tmp_path / "run", epochs=1)))
    with pytest.raises(LvsegError, match="--resume"):
        list(train(options(phantom_pairs, tmp_path / "run", epochs=1)))
    with pytest.raises(LvsegError, match="nothing to resume"):
        list(train(options(phantom_pairs, tmp_path / "new"), resume=True))
    (tmp_path / "run" / "last.pt").unlink()   # a model folder (card + weights) without a run in it
    model_before = (tmp_path / "run" / "model.safetensors").read_bytes()
    with pytest.raises(LvsegError, match="already holds a model"):
        list(train(options(phantom_pairs, tmp_path / "run", epochs=1)))
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == model_before


def test_training_gives_back_the_thread_count_it_found(phantom_pairs, tmp_path):
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        list(train(options(phantom_pairs, tmp_path / "run", epochs=1, threads=1)))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_checkpoints_refuse_foreign_pickles(tmp_path):
    from napari_lvseg.engine.checkpoint import load_checkpoint

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    path = tmp_path / "last.pt"
    torch.save({"format": "x", "obj": Evil()}, path)
    with pytest.raises(LvsegError, match="last.pt"):
        load_checkpoint(path)
    path.write_bytes(b"garbage")
    with pytest.raises(LvsegError, match="not a readable checkpoint"):
        load_checkpoint(path)
    torch.save({"format": "lvseg-checkpoint-1", "w": torch.ones(2)}, path)
    assert load_checkpoint(path)["format"] == "lvseg-checkpoint-1"  # plain data is fine
    torch.save({"weights": torch.ones(2)}, path)
    with pytest.raises(LvsegError, match="not a napari-lvseg training checkpoint"):
        load_checkpoint(path)


def test_bad_labels_stop_with_file_and_value(tmp_path):
    import tifffile

    folder = PairFolder(tmp_path / "pairs")
    image, labels = make_phantom(n_slices=2, size=64, seed=1)
    folder.add(image, labels, origin="real", name="good")
    bad = labels.copy()
    bad[0, 0, 0] = 7
    tifffile.imwrite(tmp_path / "pairs" / "masks" / "good.tif", bad)
    with pytest.raises(LvsegError, match=r"good.*7"):
        list(train(options(tmp_path / "pairs", tmp_path / "run")))


def test_options_validation(tmp_path):
    with pytest.raises(LvsegError, match="--mix"):
        list(train(TrainOptions(data=["a", "b"], mix=[1], out=str(tmp_path / "r"))))
    with pytest.raises(LvsegError, match="no training data"):
        list(train(TrainOptions(data=[], out=str(tmp_path / "r"))))
    saved = tmp_path / "options.json"
    for text, words in (("[1]", "options file is not a JSON object"), ('{"data": []', "cannot read options")):
        saved.write_text(text)
        with pytest.raises(LvsegError, match=rf"options\.json: {words}"):
            TrainOptions.load(saved)


def test_resume_from_a_checkpoint_of_another_model_is_refused(phantom_pairs, tmp_path):
    import shutil

    list(train(options(phantom_pairs, tmp_path / "small", epochs=1)))
    list(train(options(phantom_pairs, tmp_path / "big", epochs=1, width=8)))
    shutil.copy(tmp_path / "small" / "last.pt", tmp_path / "big" / "last.pt")
    with pytest.raises(LvsegError, match="does not fit this run"):
        list(train(options(phantom_pairs, tmp_path / "big", epochs=2, width=8), resume=True))


def test_context_run_reads_neighbours_from_the_same_case_only(phantom_pairs, tmp_path):
    from napari_lvseg.data.augment import augment_sample, build_augmentation
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.inference import segment

    slices = load_source(phantom_pairs, size=64)
    first_of_second_case = slices.cases.index(slices.case_names()[1])
    stacked = slices.input(first_of_second_case, 1)
    assert stacked.shape == (3, 64, 64)
    # the slice below belongs to the other case: the case's own first slice repeats instead
    assert np.array_equal(stacked[0], stacked[1])
    assert np.array_equal(stacked[2], slices.images[first_of_second_case + 1])
    # spatial augmentation moves the channels together
    image, label = augment_sample(build_augmentation("light"), np.repeat(slices.images[:1], 3, 0), slices.labels[0], 5)
    assert image.shape == (3, 64, 64) and np.array_equal(image[0], image[2]) and label.shape == (64, 64)

    list(train(options(phantom_pairs, tmp_path / "run", epochs=1, context=1)))
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["params"]["in_channels"] == 3 and card["training"]["context_slices"] == 1
    image, _ = make_phantom(n_slices=2, size=64, seed=9)
    assert segment(image, str(tmp_path / "run")).labels.shape == image.shape
    assert segment(image[0], str(tmp_path / "run")).labels.shape == image.shape[1:]
    with pytest.raises(LvsegError, match="--context: must be 0..3"):
        TrainOptions(data=["x"], context=5).validate()


def test_scanner_augmentation_spans_the_pixel_sizes_real_scanners_give():
    """'scanner' draws LV sizes over 0.6x-1.7x (areas about 0.36x-2.9x) where the default stays within +-15 % a side;
    image and labels move together."""
    from napari_lvseg.data.augment import augment_sample, build_augmentation
    from napari_lvseg.data.normalize import normalize_slices

    image, labels = make_phantom(n_slices=1, size=128, seed=4)
    image, labels = normalize_slices(image[0]), labels[0]
    area = np.count_nonzero(labels)

    def area_ratios(strength):
        transform = build_augmentation(strength)
        ratios = []
        for seed in range(40):
            img, lab = augment_sample(transform, image, labels, seed)
            assert img.shape == lab.shape == (128, 128)
            ratios.append(np.count_nonzero(lab) / area)
        return np.array(ratios)

    scanner, default = area_ratios("scanner"), area_ratios("default")
    assert scanner.min() < 0.6 and scanner.max() > 2.0
    img, lab = augment_sample(build_augmentation("scanner"), image, labels, 7)   # the labels stay on their pixels:
    assert img[lab == 1].mean() > img[lab == 0].mean() + 0.2   # the bright blood pool under the cavity label
    assert 0.55 < default.min() and default.max() < 1.6


def test_cards_record_the_lv_size_of_their_training_cases_and_fine_tuning_keeps_its_models(phantom_pairs, tmp_path):
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.locate import expected_lv_size, lv_diameter, lv_size_expectation
    from napari_lvseg.models.registry import load_model

    list(train(options(phantom_pairs, tmp_path / "new", epochs=1, val_fraction=0.0)))
    low, mid, high = expected_lv_size(load_model(str(tmp_path / "new"))[1])
    sizes = [lv_diameter(labels) for _, _, labels in load_source(phantom_pairs, size=64).volumes()]
    assert mid == pytest.approx(np.median(sizes), abs=0.1)
    assert low <= mid / 1.12 + 0.1 and high >= mid * 1.12 - 0.1   # five phantoms: the range is kept 12 % wide
    assert lv_size_expectation([np.zeros((2, 8, 8), np.uint8)]) is None

    card = json.loads((tmp_path / "new" / "card.json").read_text())
    card["expects"] = {"lv_diameter_px": 40.0, "lv_diameter_range_px": [35.0, 45.0]}
    (tmp_path / "new" / "card.json").write_text(json.dumps(card))
    list(train(options(phantom_pairs, tmp_path / "tuned", epochs=1, val_fraction=0.0, init=str(tmp_path / "new"))))
    assert expected_lv_size(load_model(str(tmp_path / "tuned"))[1]) == (35.0, 40.0, 45.0)
    from napari_lvseg.models.ensemble import combine

    _, card = combine([str(tmp_path / "new"), str(tmp_path / "tuned")], "both")   # an ensemble keeps what they expect
    assert expected_lv_size(card) == (35.0, 40.0, 45.0)


def test_a_few_corrected_cases_have_no_validation_unless_one_is_held_out(tmp_path):
    """Three corrected cases: --val-fraction's share rounds to none, the run says the last model is kept; with
    --hold-out 1 one corrected case validates (and never trains) and the warning is gone."""
    from napari_lvseg.engine.core import NO_VALIDATION

    folder = PairFolder(tmp_path / "corrections")
    for seed in range(3):
        image, labels = make_phantom(n_slices=2, size=64, seed=seed)
        folder.add(image, labels, origin="corrected", name=f"site{seed}")
    events = list(train(options(folder.root, tmp_path / "plain", epochs=1, val_fraction=0.15)))
    warnings = [e.message for e in events if e.kind == "warning"]
    assert warnings == [NO_VALIDATION] and "validation" not in [e.kind for e in events]
    logged = [json.loads(line) for line in (tmp_path / "plain" / "events.jsonl").read_text().splitlines()]
    assert [e["message"] for e in logged if e["kind"] == "warning"] == [NO_VALIDATION]
    events = list(train(options(folder.root, tmp_path / "held", epochs=1, val_fraction=0.15, hold_out=1)))
    assert "warning" not in [e.kind for e in events] and "validation" in [e.kind for e in events]
    card = json.loads((tmp_path / "held" / "card.json").read_text())
    assert len(card["training"]["val_cases"]) == 1 and len(card["training"]["train_cases"]) == 2
    assert set(card["training"]["val_cases"]).isdisjoint(card["training"]["train_cases"])
    # never all of them: one case at least trains
    events = list(train(options(folder.root, tmp_path / "all", epochs=1, hold_out=5)))
    card = json.loads((tmp_path / "all" / "card.json").read_text())
    assert len(card["training"]["train_cases"]) == 1
