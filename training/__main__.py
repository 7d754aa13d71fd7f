"""``python -m training SUBCOMMAND ...``: every experiment step and study of training/ behind one command.

run.py's steps are subcommands of their own (``python -m training train CONFIG`` is ``python training/run.py train
CONFIG``); each study script is one subcommand taking the script's own arguments (``python -m training cv run CONFIG
--folds 5 --fold 3`` is ``python training/cross_validate.py run CONFIG --folds 5 --fold 3``).
``python -m training SUBCOMMAND --help`` gives a subcommand's arguments.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

PROG = "python -m training"
# run.py's subcommands, passed on to run.main as they are
RUN_STEPS = {
    "train": "train (or resume) a config's run",
    "run": "train, tune and evaluate one segmentation config",
    "synthetic": "a config's synthetic pair folder, made once",
    "tune": "choose the post-processing on the validation split (or --from another run)",
    "evaluate": "test-split tables of a run -> RUN/test_metrics[_tta].json",
    "ensemble": "average several runs' networks into one model folder",
    "summary": "test Dice of several runs, mean ± sd over seeds",
    "last": "a run's last-epoch network as a model folder",
    "member": "one network of an ensemble model as a model folder",
    "scenario": "every step of scenario A, B, L, C or all, in order",
}
# study subcommands: (module, help); the rest of the command line is the module's own
STUDIES = {
    "cv": ("cross_validate", "K-fold cross-validation: folds | run | summary | postprocess | score | compare"),
    "cv-paired": ("cv_paired", "two configs' cross-validations on the same held-out hearts: paired differences"),
    "choose-ensemble": ("choose_ensemble", "greedy choice of an ensemble's members on the validation split"),
    "check-class-weights": ("check_class_weights", "do class weights chosen on validation carry over to test?"),
    "slice-split": ("slice_split", "the slice-level split study: make | evaluate | compare"),
    "judge-synthesis": ("judge_synthesis", "networks trained on real images read a generator's images"),
    "realism": ("measure_realism", "real-vs-synthetic two-sample test and LGE physics checks of generators"),
    "realism-controls": ("realism_controls", "the same test on real slices changed in known ways (blur, grain)"),
    "figure-generators": ("figure_generators", "a picture of generators side by side (or synthetic stacks)"),
    "bundle": ("bundle", "copy a trained run into the package as a bundled model"),
    "config": ("config", "a config's resolved options (bases and overrides applied)"),
}
GPU_BATCH = "one timed batch on a lent GPU machine (bash training/gpu_batch.sh ...)"


def usage() -> str:
    width = max(map(len, [*RUN_STEPS, *STUDIES, "gpu-batch"])) + 2
    lines = [f"usage: {PROG} SUBCOMMAND [ARGS ...]", "", (__doc__ or "").strip(), "", "run steps (run.py):"]
    lines += [f"  {name:{width}}{text}" for name, text in RUN_STEPS.items()]
    lines += ["", "studies and tools:"]
    lines += [f"  {name:{width}}{text} ({module}.py)" for name, (module, text) in STUDIES.items()]
    lines += [f"  {'gpu-batch':{width}}{GPU_BATCH}"]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in RUN_STEPS:
        from . import run

        return run.main([command, *rest], prog=PROG)
    if command in STUDIES:
        module = importlib.import_module(f"{__package__ or 'training'}.{STUDIES[command][0]}")
        return module.main(rest, prog=f"{PROG} {command}")
    if command == "gpu-batch":
        return subprocess.call(["bash", str(Path(__file__).with_name("gpu_batch.sh")), *rest])
    print(f"{PROG}: no subcommand {command!r}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
