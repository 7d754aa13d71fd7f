"""A larger judge than the 6 validation cases: K-fold cross-validation over the 48 development cases (4 folds) or
over all 60 cases (5 folds, the shipped default's recipe and its out-of-fold headline).

Six validation cases ranked the wide 2.5-D networks first, and the test split ranked them below width 12 (RESULTS.md).
Cross-validation scores a *setting* (a config) on every development case: fold k trains the config on the other
folds and validates on fold k. With 4 folds the test cases stay out of every fold.

    python training/cross_validate.py folds [--folds 4]                  # training/splits/cv4_fold{1..4}.json
    python training/cross_validate.py folds --folds 5                    # training/splits/cv5_fold{1..5}.json, 60 cases
    python training/cross_validate.py run CONFIG [--folds 4] [--fold K] [--seed S] [--device cuda] [--workers N]
                                              [--deadline T] [--threads N] [--parallel]
    python training/cross_validate.py summary CONFIG... [--folds 4] [--seed S] [--save]   # --save: training/results/cv
    python training/cross_validate.py postprocess CONFIG[@SEED]... [--folds 4] [--seed S]   # judge the post-processing
    python training/cross_validate.py score CONFIG[@SEED]... [--post JSON] [--tag T]
        # finished folds, fixed post-processing
    python training/cross_validate.py compare FIRST.json SECOND.json   # per-fold differences of two postprocess results
    python training/cross_validate.py ship CONFIG OUT --folds 5 [--members 1,2,3] [--name N] [--bundle]
        # the fold models as one ensemble with the post-processing `postprocess` chose on all folds

Fold runs train into training/runs/cv/<config>_cv<K>f<k>[_seed<S>]; a config with synthetic pairs gets a synthetic set
per fold, made from that fold's training cases only. The score of a fold is the engine's per-epoch validation check
(no TTA, no post-processing): at the epoch it keeps (the best; biased upwards alike for every setting with the same
number of epochs) and at its last epoch (unbiased).

`postprocess` judges `run.py tune`'s post-processing rule on the finished folds' out-of-fold probabilities (TTA):
for each fold, the rule chooses on the other folds' cases, once over the minimum volumes alone and once over the
whole grid (class weights too), and both choices are scored on the fold itself. Six validation cases could not tell
whether the class weights help (RESULTS.md, "Class weights"); this asks the same question of 36 cases at a time.
Several configs (each CONFIG@SEED at its own seed) are judged as one ensemble: each fold's members' probabilities
are averaged, as `run.py ensemble` does, over the folds every member finished.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import subprocess
import sys
from pathlib import Path

from . import run as runner  # training/run.py: configs, the EMIDEC folder, the engine driver
from .config import read_config

ROOT = runner.ROOT
SPLIT = ROOT / "training/split.json"
SPLITS = ROOT / "training/splits"
CV_RUNS = ROOT / "training/runs/cv"
RESULTS = ROOT / "training/results/cv"


def fold_path(folds: int, k: int, splits=SPLITS) -> Path:
    return Path(splits) / f"cv{folds}_fold{k}.json"


def _relative(path: Path) -> str:
    """A path as configs write it: relative to the repository root where it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def every_case(folds: int) -> bool:
    """5 folds are over all 60 cases, test split included (issue "Any scanner"); 4 folds over the 48 development
    cases."""
    return folds == 5


def make_folds(folds: int = 4, seed: int = 2026, data=None, splits=SPLITS) -> list:
    """Split the cases into ``folds`` stratified folds (`every_case`); write one split file each."""
    import numpy as np

    from napari_lvseg.io.atomic import write_json_atomic

    split = json.loads(SPLIT.read_text())
    development = set(split["train"]) | set(split["val"]) | (set(split["test"]) if every_case(folds) else set())
    strata: dict = {}   # normal / infarct with no-reflow / infarct without, as training/split.json was stratified
    for name, (_, labels) in runner.read_cases(development, data).items():
        stratum = "normal" if name.startswith("Case_N") else "no_reflow" if (labels.data == 4).any() else "infarct"
        strata.setdefault(stratum, []).append(name)
    found = sum(len(v) for v in strata.values())
    if found != len(development):
        raise SystemExit(f"{data or runner.emidec_dir()}: {found} of the {len(development)} development cases found")
    rng = np.random.default_rng(seed)
    members: list = [[] for _ in range(folds)]
    dealt = 0
    for name in sorted(strata):   # deal each stratum round-robin, continuing where the last one stopped
        for case in rng.permutation(sorted(strata[name])):
            members[dealt % folds].append(str(case))
            dealt += 1
    paths = []
    for k, val in enumerate(members, 1):
        train = sorted(c for other in members if other is not val for c in other)
        path = fold_path(folds, k, splits)
        path.parent.mkdir(parents=True, exist_ok=True)
        strata = f"stratified by normal / infarct with no-reflow / infarct without (numpy default_rng({seed}))"
        if every_case(folds):
            description, test = f"Fold {k} of {folds}: all 60 cases (the test split's too), {strata}.", []
        else:
            description = (f"Fold {k} of {folds}: training/split.json's train + val cases, {strata}; test cases "
                           "unchanged and never used here.")
            test = split["test"]
        write_json_atomic(path, {"description": description, "train": train, "val": sorted(val), "test": test})
        paths.append(path)
    return paths


def fold_config(config_path, folds: int, k: int, splits=SPLITS, cv_runs=CV_RUNS) -> Path:
    """The config for fold k, written into <cv_runs>/configs/ (other paths as in the original)."""
    config = read_config(config_path)   # flat: bases resolved
    name = f"{Path(config_path).stem}_cv{folds}f{k}"
    config["split"] = _relative(fold_path(folds, k, splits))
    config["out"] = _relative(Path(cv_runs) / name)
    if "synthetic" in config:   # synthetic pairs from this fold's training masks only
        config["data"][1] = _relative(Path(cv_runs) / f"synthetic_{name}")
    path = Path(cv_runs) / "configs" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=1))
    return path


def run_fold(config_path, folds, k, seed=None, device=None, workers=None, deadline=None, epochs=None,
             splits=SPLITS, cv_runs=CV_RUNS, threads=None) -> Path:
    if not fold_path(folds, k, splits).exists():
        make_folds(folds, splits=splits)
    path = fold_config(config_path, folds, k, splits, cv_runs)
    if "synthetic" in json.loads(path.read_text()):
        runner.make_synthetic(path, device)
    return runner.train(path, epochs=epochs, seed=seed, workers=workers, device=device, deadline=deadline,
                        threads=threads)


def fold_scores(run) -> dict | None:
    """Per-case and pooled validation mean of a fold run: at its best epoch and at its last (None: no check yet)."""
    checks = [json.loads(line) for line in (Path(run) / "events.jsonl").read_text().splitlines()
              if '"validation"' in line]
    checks = [c for c in checks if c.get("kind") == "validation"]
    if not checks:
        return None
    best = max(checks, key=lambda c: c["metrics"]["mean"])
    last = max(checks, key=lambda c: c["epoch"])
    return {"epochs": last["epoch"], "best_epoch": best["epoch"],
            "best": best["metrics"]["mean"], "last": last["metrics"]["mean"],
            "last_pooled": last["metrics"]["pooled_mean"], "last_no_reflow": last["metrics"]["no_reflow"]}


def fold_state(config_path, folds, k, seed=None, splits=SPLITS, cv_runs=CV_RUNS) -> tuple:
    """(run folder, `fold_scores` or None, whether it reached the config's last epoch) of fold k."""
    config = fold_config(config_path, folds, k, splits, cv_runs)
    run = runner.run_folder(config, seed)
    score = fold_scores(run) if (run / "events.jsonl").exists() else None
    return run, score, bool(score) and score["epochs"] >= runner.load_config(config)["epochs"]


def summary(configs, folds: int = 4, seed=None, splits=SPLITS, cv_runs=CV_RUNS) -> str:
    """One row per config: mean ± sd over the folds of each fold score."""
    import numpy as np

    keys = ("best", "last", "last_pooled", "last_no_reflow")
    header = ("| config | folds | epochs | per case, best epoch | per case, last epoch | pooled, last epoch | "
              "no-reflow per case, last epoch |")
    rows = [header, "|---|---|---|---|---|---|---|"]
    for config_path in configs:
        scores, unfinished = [], 0
        for k in range(1, folds + 1):   # a fold still training is counted, not scored
            _, score, finished = fold_state(config_path, folds, k, seed, splits, cv_runs)
            if finished:
                scores.append(score)
            elif score:
                unfinished += 1
        count = f"{len(scores)} of {folds}" + (f" ({unfinished} training)" if unfinished else "")
        if not scores:
            rows.append(f"| {Path(config_path).stem} | {count} | | | | | |")
            continue
        a = np.array([[s[key] for key in keys] for s in scores], dtype=float)
        sd = a.std(0, ddof=1) if len(scores) > 1 else np.zeros(len(keys))
        epochs = ", ".join(str(s["epochs"]) for s in scores)
        rows.append(f"| {Path(config_path).stem} | {count} | {epochs} | "
                    + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(a.mean(0), sd)) + " |")
    return "\n".join(rows)


def save_fold_results(config_path, folds: int = 4, seed=None, out=RESULTS, splits=SPLITS, cv_runs=CV_RUNS) -> Path:
    """Write the fold scores of a config (`fold_scores` of every fold with a check, finished or not) to
    ``out/<config>_cv<K>[_seed<S>]_fold_scores.json`` and copy each fold run's card beside it; returns the json."""
    import shutil

    from napari_lvseg.io.atomic import write_json_atomic
    from napari_lvseg.models.card import card_path

    scores = {}
    for k in range(1, folds + 1):
        run, score, _ = fold_state(config_path, folds, k, seed, splits, cv_runs)
        if score:
            scores[f"fold{k}"] = score
            (Path(out) / run.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(card_path(run), Path(out) / run.name / "card.json")
    tag = f"_seed{seed}" if seed is not None else ""
    path = Path(out) / f"{Path(config_path).stem}_cv{folds}{tag}_fold_scores.json"
    write_json_atomic(path, scores)
    return path


def last_epoch_model(run) -> Path:
    """``<run>/last_epoch``: the run's network at its last epoch as a model folder (made once, remade when the run's
    ``last.pt`` is newer). A fold run keeps the epoch that scored best on its own held-out fold, which flatters that
    fold's out-of-fold figures; the last epoch was chosen by nothing but the recipe's epoch count."""
    out, last = Path(run) / "last_epoch", Path(run) / "last.pt"
    card = out / "card.json"
    if not last.is_file():   # a finished run carried without its checkpoint (branch cv-checkpoints) keeps its export
        if card.is_file():
            return out
        raise SystemExit(f"{last}: no last-epoch checkpoint")
    if not card.is_file() or card.stat().st_mtime < last.stat().st_mtime:
        try:
            runner.export_last(run, out)
        except FileNotFoundError:   # a second process exporting the same run tidied away this one's pending card
            runner.export_last(run, out)
    return out


def out_of_fold(config_path, folds: int = 4, seed=None, data=None, splits=SPLITS, cv_runs=CV_RUNS,
                last: bool = False) -> dict:
    """``{k: {case: (TTA probabilities, truth)}}`` of the finished fold runs on their own folds (cached in each run).
    ``last``: each fold's last-epoch network (`last_epoch_model`) instead of its best epoch's."""
    from . import choose_ensemble as chooser

    oof = {}
    for k in range(1, folds + 1):
        run, _, finished = fold_state(config_path, folds, k, seed, splits, cv_runs)
        if not finished:
            continue
        run = last_epoch_model(run) if last else run
        names = json.loads(fold_path(folds, k, splits).read_text())["val"]
        cases = {name: (image.data, labels.data) for name, (image, labels) in runner.read_cases(names, data).items()}
        probs = chooser.cached_probabilities(run, "val", cases)
        oof[k] = {name: (probs[name], truth) for name, (_, truth) in cases.items()}
    return oof


def ensemble_out_of_fold(members: list) -> dict:
    """The members' `out_of_fold` results as one: mean probabilities per case, on the folds all members finished."""
    from . import choose_ensemble as chooser

    ensemble = {}
    for k in sorted(set.intersection(*(set(oof) for oof in members))):
        probs = [{name: p for name, (p, _) in oof[k].items()} for oof in members]
        ensemble[k] = {name: (chooser.mean_probabilities(probs, name), truth)
                       for name, (_, truth) in members[0][k].items()}
    return ensemble


def fold_numbers(text: str, k: int) -> list:
    """``--fold 3,4`` -> [3, 4], each in 1..k."""
    try:
        folds = [int(part) for part in text.split(",")]
    except ValueError:
        raise SystemExit(f"--fold {text}: expected fold numbers like 3 or 3,4") from None
    if not all(1 <= fold <= k for fold in folds):
        raise SystemExit(f"--fold {text}: folds are 1..{k}")
    return folds


def _member(text: str, seed=None) -> tuple:
    """(config path, seed) of CONFIG or CONFIG@SEED."""
    path, _, own = text.partition("@")
    return path, int(own) if own else seed


def _per_case_mean(rows: dict, names) -> float:
    """The study table's mean row over some cases, from their rows ``{case: {class: Dice or NaN}}``."""
    import numpy as np

    from napari_lvseg.metrics import CLASS_KEYS

    scores = np.array([[rows[name][c] for c in CLASS_KEYS] for name in names], float)
    present = np.isfinite(scores)
    means = np.where(present, scores, 0).sum(0)[present.any(0)] / present.sum(0)[present.any(0)]
    return float(means.mean())


def _study_scores(labelled: dict) -> dict:
    """The per-case means and the pooled Dice of ``{case: (labels, truth)}`` (`evaluation.evaluate_cases`), rounded."""
    from napari_lvseg.evaluation import evaluate_cases

    def rounded(scores: dict) -> dict:
        return {key: round(value, 4) for key, value in scores.items()}

    report = evaluate_cases(labelled, emidec=False, bootstrap=0)
    return {"per_case": rounded(report.per_case), "pooled": rounded(report.pooled)}


def _labelled(cases: dict, post: dict) -> dict:
    """``{case: (probabilities, truth)}`` -> ``{case: (final labels under post, truth)}``."""
    from napari_lvseg.postprocess import postprocessed_labels

    return {name: (postprocessed_labels(p, post), truth) for name, (p, truth) in cases.items()}


def score_fixed(oof: dict, post: dict) -> dict:
    """Held-out scores of the finished folds ``{k: {case: (probabilities, truth)}}`` under one post-processing fixed
    in advance (`judge_postprocess` needs two folds to choose one; this scores even a single fold)."""
    from napari_lvseg.postprocess import DEFAULT_POSTPROCESS

    post = {**DEFAULT_POSTPROCESS, **post}
    held_out, folds = {}, []
    for k, cases in sorted(oof.items()):
        labelled = _labelled(cases, post)
        held_out.update(labelled)
        scores = _study_scores(labelled)
        folds.append({"fold": k, "cases": len(cases), "per_case": scores["per_case"]["mean"],
                      "pooled": scores["pooled"]["mean"], "classes": scores})
    return {"post": post, "folds": folds, "cases": len(held_out), "all_cases": _study_scores(held_out)}


def judge_postprocess(oof: dict) -> dict:
    """Nested choice and scoring of the post-processing over folds ``{k: {case: (probabilities, truth)}}``.

    Every option of the grid is applied to every case once; a fold's choice is the option with the best per-case mean
    over the other folds' cases (grid order breaks ties, as `run.py tune`). Returns per fold and on average the
    held-out per-case and pooled means of: no post-processing beyond the LV component, the volumes-only choice and
    the whole-grid choice; the same three over all cases at once ("all cases": each case post-processed as its fold
    chose; the per-case and pooled Dice of every class, the study's table); and the whole-grid choice over all cases
    (what `tune` would pick with every fold)."""
    import numpy as np

    from napari_lvseg.evaluation import evaluate_cases

    if len(oof) < 2:
        raise SystemExit(f"{len(oof)} finished fold run(s): the nested choice needs at least 2")
    everything = {name: case for fold in oof.values() for name, case in fold.items()}
    grid = [(options, {row["case"]: row for row in evaluate_cases(cases, emidec=False, bootstrap=0).cases})
            for options, cases in runner.postprocess_grid(everything)]
    unweighted = [g for g in grid if g[0]["infarct_weight"] == g[0]["no_reflow_weight"] == 1.0]
    choices = {"LV component only": lambda names: grid[0][0],
               "volumes only": lambda names: max(unweighted, key=lambda g: _per_case_mean(g[1], names))[0],
               "weights + volumes": lambda names: max(grid, key=lambda g: _per_case_mean(g[1], names))[0]}
    folds, means, held_out = [], {}, {tag: {} for tag in choices}
    for k, cases in sorted(oof.items()):
        others = [name for name in everything if name not in cases]
        row = {"fold": k, "cases": len(cases)}
        for tag, choose in choices.items():
            post = choose(others)
            labelled = _labelled(cases, post)
            held_out[tag].update(labelled)
            report = evaluate_cases(labelled, emidec=False, bootstrap=0)
            per_case, pooled = report.per_case["mean"], report.pooled["mean"]
            row[tag] = {"post": post, "per_case": round(per_case, 4), "pooled": round(pooled, 4)}
            means.setdefault(tag, []).append((per_case, pooled))
        folds.append(row)

    all_cases = {tag: _study_scores(labelled) for tag, labelled in held_out.items()}
    summary = {tag: {"per_case": round(float(np.mean([s[0] for s in v])), 4),
                     "per_case_sd": round(float(np.std([s[0] for s in v], ddof=1)), 4),
                     "pooled": round(float(np.mean([s[1] for s in v])), 4),
                     "pooled_sd": round(float(np.std([s[1] for s in v], ddof=1)), 4)} for tag, v in means.items()}
    return {"folds": folds, "mean": summary, "all_cases": all_cases, "cases": len(everything),
            "chosen_on_all": choices["weights + volumes"](list(everything))}


def postprocess_table(result: dict) -> str:
    from napari_lvseg.metrics import CLASS_KEYS

    rows = ["| held-out fold | cases | LV component only | volumes only | weights + volumes | weights chosen |",
            "|---|---|---|---|---|---|"]
    tags = ("LV component only", "volumes only", "weights + volumes")
    for fold in result["folds"]:
        post = fold["weights + volumes"]["post"]
        rows.append(f"| {fold['fold']} | {fold['cases']} | " + " | ".join(
            f"{fold[t]['per_case']:.3f} / {fold[t]['pooled']:.3f}" for t in tags)
            + f" | x{post['infarct_weight']:g} / x{post['no_reflow_weight']:g} |")
    m = result["mean"]
    rows.append("| **mean ± sd** | | " + " | ".join(
        f"{m[t]['per_case']:.3f} ± {m[t]['per_case_sd']:.3f} / {m[t]['pooled']:.3f} ± {m[t]['pooled_sd']:.3f}"
        for t in tags) + " | |")
    chosen = f"chosen on all {result['cases']} cases: {result['chosen_on_all']}"
    rows += ["", f"(per case / pooled mean Dice of the held-out fold) {chosen}", "",
             "| post-processing | protocol | cavity | myocardium | infarct | no-reflow | mean |", "|---" * 7 + "|"]
    for tag in tags:   # every case as its fold chose, the study's table
        for protocol, scores in result["all_cases"][tag].items():
            rows.append(f"| {tag} | {protocol.replace('_', ' ')} | "
                        + " | ".join(f"{scores[c]:.3f}" for c in CLASS_KEYS + ("mean",)) + " |")
    return "\n".join(rows)


def score_table(result: dict) -> str:
    """`score_fixed`'s result as Markdown: per fold, then the study's table over all its cases."""
    from napari_lvseg.metrics import CLASS_KEYS

    rows = ["| held-out fold | cases | per case | pooled | no-reflow per case / pooled |", "|---|---|---|---|---|"]
    rows += [f"| {f['fold']} | {f['cases']} | {f['per_case']:.3f} | {f['pooled']:.3f} | "
             f"{f['classes']['per_case']['no_reflow']:.3f} / {f['classes']['pooled']['no_reflow']:.3f} |"
             for f in result["folds"]]
    rows += ["", f"post-processing: {result['post']}", "",
             "| protocol | cavity | myocardium | infarct | no-reflow | mean |", "|---" * 6 + "|"]
    rows += [f"| {protocol.replace('_', ' ')} | " + " | ".join(f"{scores[c]:.3f}" for c in CLASS_KEYS + ("mean",))
             + " |" for protocol, scores in result["all_cases"].items()]
    return "\n".join(rows)


def compare(first: dict, second: dict) -> str:
    """Per-fold differences second - first of two `postprocess` results, on the folds both hold, and their mean ± sd."""
    import numpy as np

    tags = ("volumes only", "weights + volumes")
    folds = [(a, b) for a in first["folds"] for b in second["folds"] if a["fold"] == b["fold"]]
    if not folds:
        raise SystemExit("the two results have no fold in common")
    rows = ["| fold | " + " | ".join(f"{t}: per case | {t}: pooled" for t in tags) + " |", "|---" * 5 + "|"]
    diffs = np.array([[b[t][key] - a[t][key] for t in tags for key in ("per_case", "pooled")] for a, b in folds])
    for (a, _), d in zip(folds, diffs):
        rows.append(f"| {a['fold']} | " + " | ".join(f"{x:+.3f}" for x in d) + " |")
    sd = diffs.std(0, ddof=1) if len(folds) > 1 else np.zeros(diffs.shape[1])
    rows.append("| **mean ± sd** | " + " | ".join(f"{m:+.3f} ± {v:.3f}" for m, v in zip(diffs.mean(0), sd)) + " |")
    return "\n".join(rows)


def ship(config_path, folds: int, out, name: str, seed=None, bundle: bool = False, members=None, results=RESULTS,
         splits=SPLITS, cv_runs=CV_RUNS) -> Path:
    """Every fold model of a config at its last epoch as one ensemble model folder (the recipe's all-case model:
    together the folds trained on every case), with the post-processing `postprocess --last` chose on all folds'
    out-of-fold probabilities (``<config>_cv<K>_postprocess_last.json``: run that first). ``bundle``: stored as
    float16 and marked the default, as the package's own models are. ``members``: only these folds' networks (any
    two folds' networks together trained on every case; fewer networks read faster)."""
    from napari_lvseg.models.ensemble import combine
    from napari_lvseg.models.weights import save_model

    folds_used, runs = list(members or range(1, folds + 1)), []
    for k in folds_used:
        run, _, finished = fold_state(config_path, folds, k, seed, splits, cv_runs)
        if not finished:
            raise SystemExit(f"fold {k} of {config_path} has not finished ({run})")
        runs.append(last_epoch_model(run))
    seeded = f"_seed{seed}" if seed is not None else ""
    judged = Path(results) / f"{Path(config_path).stem}_cv{folds}{seeded}_postprocess_last.json"
    if not judged.is_file():
        raise SystemExit(f"{judged}: no post-processing judged yet "
                         f"(run `postprocess {config_path} --folds {folds} --last`)")
    result = json.loads(judged.read_text())
    net, card = combine(runs, name)
    card.extra["postprocess"] = {**result["chosen_on_all"], "tuned_on": f"out-of-fold probabilities of all "
                                 f"{result['cases']} cases ({_relative(judged)})"}
    card.extra["cross_validation"] = {"config": _relative(Path(config_path)), "folds": folds,
                                      "out_of_fold": result["mean"], "members": folds_used}
    if bundle:
        card.extra["default"] = True
    chosen = f"folds {', '.join(map(str, members))}" if members else f"all {folds} folds"
    card.notes = f"the networks of {chosen} of {Path(config_path).stem}'s {folds}-fold cross-validation, averaged"
    save_model(Path(out), net, card, half=bundle)
    return Path(out)


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("folds", help="write the fold split files")
    p.add_argument("--folds", type=int, default=4)
    p = sub.add_parser("run", help="train a config on every fold (or one)")
    p.add_argument("config")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--fold", help="only these folds (1..K), comma-separated: 3 or 3,4")
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--workers", type=int)
    p.add_argument("--deadline", type=float, help="Unix time at which training stops")
    p.add_argument("--threads", type=int, help="torch threads per fold run (default: the config's)")
    p.add_argument("--parallel", action="store_true", help="all folds at once, one process each (a GPU machine)")
    p = sub.add_parser("summary", help="the cross-validation table of several configs")
    p.add_argument("configs", nargs="+")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--seed", type=int)
    p.add_argument("--save", action="store_true", help="write the fold scores and cards into training/results/cv")
    p = sub.add_parser("postprocess", help="judge the post-processing rule on the finished folds (of an ensemble)")
    p.add_argument("members", nargs="+", metavar="CONFIG[@SEED]")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--seed", type=int)
    p.add_argument("--last", action="store_true", help="each fold's last epoch, not the one its own fold chose")
    p = sub.add_parser("score", help="held-out scores of the finished folds (even one) under a fixed post-processing")
    p.add_argument("members", nargs="+", metavar="CONFIG[@SEED]")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--seed", type=int)
    p.add_argument("--post", default="{}", help='post-processing options, JSON (default: the LV component only)')
    p.add_argument("--last", action="store_true", help="each fold's last epoch, not the one its own fold chose")
    p.add_argument("--tag", help="appended to the result's file name (one per post-processing)")
    p = sub.add_parser("ship", help="the fold models as one ensemble model folder, post-processing included")
    p.add_argument("config")
    p.add_argument("out")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--seed", type=int)
    p.add_argument("--name", default="lvseg-seg")
    p.add_argument("--bundle", action="store_true", help="float16 and marked the default (src/.../weights)")
    p.add_argument("--members", help="only these folds' networks, comma-separated (default: every fold's)")
    p = sub.add_parser("compare", help="per-fold differences of two postprocess results (json files)")
    p.add_argument("first")
    p.add_argument("second")
    args = parser.parse_args(argv)
    if args.cmd == "compare":
        print(compare(*(json.loads(Path(path).read_text()) for path in (args.first, args.second))))
    elif args.cmd in ("postprocess", "score"):
        from napari_lvseg.io.atomic import write_json_atomic

        try:   # before the costly part
            post = json.loads(args.post) if args.cmd == "score" else None
        except json.JSONDecodeError as error:
            raise SystemExit(f"--post: not JSON ({error})") from None
        members = [_member(text, args.seed) for text in args.members]
        oofs = [out_of_fold(path, args.folds, seed, last=args.last) for path, seed in members]
        oof = oofs[0] if len(oofs) == 1 else ensemble_out_of_fold(oofs)
        if args.cmd == "score":
            result = score_fixed(oof, post)
            table = score_table(result)
        else:
            result = judge_postprocess(oof)
            table = postprocess_table(result)
        tags = [(_relative(Path(path)), f"_seed{seed}" if seed is not None else "") for path, seed in members]
        if len(members) == 1:
            name, config = f"{Path(members[0][0]).stem}_cv{args.folds}{tags[0][1]}", tags[0][0]
        else:
            name = "ens_" + "+".join(Path(path).stem + seed for path, seed in tags) + f"_cv{args.folds}"
            config = [path + seed.replace("_seed", "@") for path, seed in tags]
        tag = ("_last" if args.last else "") + (f"_{args.tag}" if args.cmd == "score" and args.tag else "")
        out = RESULTS / f"{name}_{args.cmd}{tag}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, {"config": config, **result})
        print(table)
    elif args.cmd == "ship":
        members = fold_numbers(args.members, args.folds) if args.members else None
        print(_relative(ship(args.config, args.folds, args.out, args.name, args.seed, args.bundle, members)))
    elif args.cmd == "folds":
        for path in make_folds(args.folds):
            print(path.relative_to(ROOT))
    elif args.cmd == "summary":
        print(summary(args.configs, args.folds, args.seed))
        for config in args.configs if args.save else ():
            print(_relative(save_fold_results(config, args.folds, args.seed)))
    else:
        fold_list = fold_numbers(args.fold, args.folds) if args.fold else list(range(1, args.folds + 1))
        compute = {"seed": args.seed, "device": args.device, "workers": args.workers, "deadline": args.deadline,
                   "threads": args.threads}
        if not args.parallel:
            for k in fold_list:
                run_fold(args.config, args.folds, k, **compute)
            return 0
        if not fold_path(args.folds, 1).exists():
            make_folds(args.folds)   # once, before the fold processes start
        procs = []
        for k in fold_list:
            cmd = [sys.executable, __file__, "run", args.config, "--folds", str(args.folds), "--fold", str(k)]
            cmd += [x for flag, v in compute.items() if v is not None for x in (f"--{flag}", str(v))]
            log = CV_RUNS / f"{Path(args.config).stem}_cv{args.folds}f{k}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as out:   # the child keeps its own copy of the file
                procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))
        return max(p.wait() for p in procs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
