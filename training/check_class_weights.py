"""Do the infarct / no-reflow class weights chosen on validation carry over to the test split?

    python training/check_class_weights.py training/results/class_weights_check.jsonl RUN [RUN+RUN ...]

For each run (or ensemble, members joined by "+"), the post-processing is tuned on the validation split twice,
as `run.py tune` does: once over the minimum volumes alone (class weights fixed at 1, the grid before the weights
existed) and once over the whole grid (weights and volumes). Both choices are then scored on the test split.
Reads the TTA probabilities `choose_ensemble.py` caches in each run folder (computing them where missing). One JSON
line per run, printed and appended to OUT.
"""

from __future__ import annotations

if __name__ == "__main__" and not __package__:   # `python training/x.py`: as `python -m training.x`
    import _script

    _script.run_as_module(__file__)

import argparse
import json
import sys

from . import choose_ensemble as chooser, run as runner


def check(run: str, val: dict, test: dict) -> dict:
    members = run.split("+")
    val_probs = [chooser.cached_probabilities(m, "val", val) for m in members]
    test_probs = [chooser.cached_probabilities(m, "test", test) for m in members]
    truths = {split: {name: labels for name, (_, labels) in cases.items()} for split, cases in
              (("val", val), ("test", test))}
    scores = runner.postprocess_scores({name: (chooser.mean_probabilities(val_probs, name), truth)
                                        for name, truth in truths["val"].items()})
    unweighted = [s for s in scores if s[1]["infarct_weight"] == s[1]["no_reflow_weight"] == 1.0]
    row = {"run": run}
    for tag, (val_score, post) in (("volumes only", max(unweighted, key=lambda s: s[0])),
                                   ("weights + volumes", max(scores, key=lambda s: s[0]))):
        per_case, pooled, _ = chooser.score(test_probs, truths["test"], post)
        row[tag] = {"post": post, "val_per_case": round(val_score, 4), "test_per_case": round(per_case, 4),
                    "test_pooled": round(pooled, 4)}
    return row


def main(argv=None, prog=None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args(argv)
    val, test = chooser.split_cases("val"), chooser.split_cases("test")
    for run in args.runs:
        line = json.dumps(check(run, val, test))
        print(line, flush=True)
        with open(args.out, "a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
