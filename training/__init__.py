"""The study's experiments, as a package with one entry: ``python -m training SUBCOMMAND ...`` (training/__main__.py).

    python -m training --help                                   # every subcommand
    python -m training train training/configs/seg_real.json     # run.py's steps: train run synthetic tune evaluate
                                                                #   ensemble summary last member scenario
    python -m training cv run training/configs/seg_context_scanner.json --folds 5 --fold 3   # K-fold studies
    python -m training choose-ensemble training/runs/ens_greedy RUN RUN ...
    python -m training slice-split make

The scripts keep working as they were written (``python training/run.py train CONFIG``,
``python training/cross_validate.py run CONFIG --folds 5 --fold K ...``): run by its path, a script hands over to the
same module run as ``training.<name>`` (training/_script.py, the one bootstrap). The modules import each other
relatively (``from . import run as runner``); none edits ``sys.path``.

Modules: run (configs, the engine driver, tuning, evaluation, ensembles, scenarios), config (base configs and
override files), cross_validate (K-fold), cv_paired (two configs' folds, paired), choose_ensemble (greedy member
choice), check_class_weights, slice_split, judge_synthesis, measure_realism, realism_controls, figure_generators,
bundle (a run into the package's weights).

Configs (training/configs/, `training.config`): a base config per task (base_segmentation.json,
base_synthesis.json) and one small override file per experiment (``{"base": ..., what differs}``); a config's file
name is its run's name.

Folders, one layout (paths from the repository root):

    training/configs/<config>.json              an experiment
    training/split.json, training/splits/       the case split; the K-fold and all-development-case splits
    training/runs/<config>[_seed<k>]/           a run: weights, checkpoints, events, metrics (git-ignored)
    training/runs/<study>/...                   a study's own runs and derived data: cv/<config>_cv<K>f<k>[_seed<S>]
                                                (cv/configs/: each fold's flat config), slice_split/ (git-ignored)
    training/results/<config>[_seed<k>]/        a reported run's committed figures: card.json, options.json,
                                                test_metrics*.json, ... (no weights)
    training/results/<study>/<name>...          a study's committed figures: cv/<config>_cv<K>[_seed<S>]_*.json and
                                                cv/<fold run>/card.json, realism/<name>.json, ...
    training/RESULTS.md                         what they show, and the commands that made them
"""
