"""training/ as a package: base configs and override files resolve to exactly the flat configs they replaced
(tests/training_configs_reference.json, frozen from the flat files); `python -m training` and the scripts' own
command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import config as configs, cross_validate, run as runner

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "training/configs"
REFERENCE = json.loads((ROOT / "tests/training_configs_reference.json").read_text())["configs"]


def _exact(value) -> str:
    """JSON with sorted keys: equal only where every value is, types too (2.0 is not 2)."""
    return json.dumps(value, sort_keys=True)


def _rooted(value, root: Path):
    return json.loads(json.dumps(value).replace("<ROOT>", str(root)))


def test_every_frozen_config_is_still_there_and_a_new_one_is_an_override_named_as_its_run():
    names = {path.name for path in CONFIGS.glob("*.json")}
    assert set(REFERENCE) | set(configs.TASK_BASES) <= names
    for name in names - set(REFERENCE) - set(configs.TASK_BASES):
        own = json.loads((CONFIGS / name).read_text())
        assert "base" in own, f"{name}: a flat copy; name a base and set only what differs"
        resolved = configs.read_config(CONFIGS / name)
        assert resolved["description"] and Path(resolved["out"]).name == Path(name).stem, name


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_config_resolves_to_its_frozen_flat_options(name, monkeypatch):
    own = json.loads((CONFIGS / name).read_text())
    assert "base" in own, f"{name}: a flat copy; name a base and set only what differs"
    assert len(own) < len(REFERENCE[name]["options"])
    assert _exact(configs.read_config(CONFIGS / name)) == _exact(REFERENCE[name]["options"])

    monkeypatch.setenv("LVSEG_EMIDEC_DIR", "/EMIDEC")
    assert _exact(runner.load_config(CONFIGS / name)) == _exact(_rooted(REFERENCE[name]["loaded"], ROOT))
    assert str(runner.run_folder(CONFIGS / name)) == _rooted(REFERENCE[name]["run_folder"], ROOT)
    assert str(runner.run_folder(CONFIGS / name, 3)) == _rooted(REFERENCE[name]["run_folder_seed3"], ROOT)
    assert Path(REFERENCE[name]["options"]["out"]).name == Path(name).stem   # the run folder is the config's name


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_each_fold_config_is_the_flat_one_cross_validation_wrote(name, tmp_path, monkeypatch):
    """`cross_validate.fold_config` writes the same flat config as before, at the same place (relative to the root)."""
    monkeypatch.setattr(cross_validate, "ROOT", tmp_path)   # so that nothing is written into training/runs/cv
    for fold, frozen in REFERENCE[name]["cv_fold_configs"].items():
        folds, k = map(int, fold[2:].split("f"))
        path = cross_validate.fold_config(CONFIGS / name, folds, k, splits=tmp_path / "training/splits",
                                          cv_runs=tmp_path / "training/runs/cv")
        assert str(path) == _rooted(frozen["path"], tmp_path)
        assert _exact(json.loads(path.read_text())) == _exact(frozen["options"])
        assert "base" not in json.loads(path.read_text())


def test_a_chain_of_overrides_merges_dicts_and_replaces_lists(tmp_path):
    (tmp_path / "bases").mkdir()
    (tmp_path / "bases/task.json").write_text(json.dumps(
        {"task": "segmentation", "data": ["a", "b"], "width": 12, "synthetic": {"n": 2000, "seed": 0}}))
    (tmp_path / "bases/mid.json").write_text(json.dumps({"base": "task.json", "width": 20, "synthetic": {"n": 300}}))
    (tmp_path / "leaf.json").write_text(json.dumps({"base": "bases/mid.json", "data": ["c"], "context": 1,
                                                    "synthetic": {"stacks": True}}))
    assert configs.read_config(tmp_path / "leaf.json") == {
        "task": "segmentation", "data": ["c"], "width": 20, "synthetic": {"n": 300, "seed": 0, "stacks": True},
        "context": 1}
    assert configs.read_config(tmp_path / "bases/mid.json")["width"] == 20      # a base is read as it is


def test_a_bad_base_is_one_line_naming_it(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"base": "nowhere.json", "width": 20}))
    with pytest.raises(SystemExit, match=r"a\.json: its base 'nowhere\.json' is not a file") as error:
        configs.read_config(tmp_path / "a.json")
    assert "\n" not in str(error.value)
    (tmp_path / "b.json").write_text(json.dumps({"base": "c.json"}))
    (tmp_path / "c.json").write_text(json.dumps({"base": "b.json"}))
    with pytest.raises(SystemExit, match="leads back to itself"):
        configs.read_config(tmp_path / "b.json")
    (tmp_path / "d.json").write_text("{not json")
    (tmp_path / "e.json").write_text(json.dumps({"base": "d.json"}))
    with pytest.raises(SystemExit, match=r"d\.json: not a readable JSON config"):
        configs.read_config(tmp_path / "e.json")


def test_a_task_base_is_not_a_run(monkeypatch):
    monkeypatch.setenv("LVSEG_EMIDEC_DIR", "/EMIDEC")
    for name in configs.TASK_BASES:
        assert configs.is_task_base(CONFIGS / name)
        with pytest.raises(SystemExit, match="a task base"):
            runner.load_config(CONFIGS / name)


def _command(*args, cwd=ROOT):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_python_m_training_lists_its_subcommands():
    result = _command("-m", "training", "--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert {"train", "run", "synthetic", "tune", "evaluate", "ensemble", "summary", "last", "member", "scenario",
            "cv", "choose-ensemble", "check-class-weights", "slice-split", "judge-synthesis", "realism",
            "figure-generators", "bundle", "config", "gpu-batch"} <= listed
    assert _command("-m", "training").returncode == 2
    wrong = _command("-m", "training", "nonsense")
    assert wrong.returncode == 2 and "no subcommand 'nonsense'" in wrong.stderr


def test_subcommands_and_the_old_script_command_lines_reach_the_same_parsers():
    cv = _command("-m", "training", "cv", "run", "--help")
    assert cv.returncode == 0 and cv.stdout.startswith("usage: python -m training cv run")
    assert "--folds" in cv.stdout and "--threads" in cv.stdout
    train = _command("-m", "training", "train", "--help")
    assert train.returncode == 0 and train.stdout.startswith("usage: python -m training train")
    # run by its path, from the root or from elsewhere, a script is the same module
    for script, words in (("training/cross_validate.py", ("run", "--help")), ("training/run.py", ("train", "--help")),
                          ("training/slice_split.py", ("--help",)), ("training/choose_ensemble.py", ("--help",)),
                          ("training/check_class_weights.py", ("--help",)), ("training/bundle.py", ("--help",)),
                          ("training/judge_synthesis.py", ("--help",)), ("training/measure_realism.py", ("--help",)),
                          ("training/figure_generators.py", ("--help",))):
        result = _command(script, *words)
        assert result.returncode == 0, (script, result.stderr)
        assert result.stdout.startswith(f"usage: {Path(script).name}"), (script, result.stdout[:200])
    elsewhere = _command(str(ROOT / "training/cross_validate.py"), "run", "--help", cwd="/")
    assert elsewhere.returncode == 0 and "--parallel" in elsewhere.stdout


def test_python_m_training_config_prints_the_resolved_options():
    result = _command("-m", "training", "config", "training/configs/seg_context_scanner.json")
    assert result.returncode == 0, result.stderr
    assert _exact(json.loads(result.stdout)) == _exact(REFERENCE["seg_context_scanner.json"]["options"])
