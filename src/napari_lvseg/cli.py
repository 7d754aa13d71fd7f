"""The ``lvseg`` command. Each subcommand is a thin call into the core; user errors print one line.

Subcommands import their heavy libraries lazily, so ``lvseg --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .cli_args import (
    add_model,
    add_options,
    given_options,
    input_path,
    output_folder,
    output_path,
    positive_int,
    set_threads,
)
from .errors import LvsegError

MAX_BOOTSTRAP = 100_000   # draws x cases x 8 counts in memory at once


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lvseg", description="LV segmentation and synthesis for LGE cardiac MRI.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__import__('napari_lvseg').__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="open napari with the sample phantom and every lvseg widget docked")
    p.add_argument("--screenshot", metavar="FILE", help="render the window headless to this PNG and exit")
    p.add_argument("--no-segment", action="store_true", help="do not run the default model on the phantom")

    p = sub.add_parser("segment", help="segment an image (NIfTI/TIFF/DICOM, 2-D or stack), a folder of EMIDEC cases "
                                      "or a folder of NIfTI/TIFF images and DICOM series")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True,
                   help="labels file (NIfTI or TIFF; .dcm: a DICOM SEG of a DICOM series), or a folder when INPUT "
                        "is a folder of cases or images")
    add_model(p)
    p.add_argument("--tta", action="store_true",
                   help="average predictions over the 4 rotations (test-time augmentation, 4x slower)")
    p.add_argument("--uncertainty", metavar="FILE",
                   help="also write the per-pixel uncertainty (normalised entropy; 0 outside the model's square view)")
    p.add_argument("--center", nargs=2, type=float, metavar=("Y", "X"), help="LV centre instead of automatic detection")
    p.add_argument("--no-shading-correction", dest="shading", action="store_false",
                   help="never divide out a receive coil's shading found on the heart or in the field of view (by "
                        "default a shaded image is read again without it)")
    p.add_argument("--threads", type=positive_int, default=None)

    p = sub.add_parser("train", help="train a segmentation or synthesis model (resumable, torchrun-ready)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped, with "
                   "its saved options (--epochs, --threads, --workers and --device may change)")
    p.add_argument("--register", action="store_true", help="copy the finished model into the user model folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--options", metavar="JSON", help="every training option from this file (as a run's "
                   "options.json; '-': the first line of stdin); the other training options here are not read")
    p.add_argument("--events", choices=("text", "jsonl"), default="text",
                   help="jsonl: one event per line on stdout, and stop requests read from stdin, one per line (for "
                        "front ends: the Train panel runs training this way)")
    from .engine.options import TrainOptions

    add_options(p, TrainOptions)   # every training option, as engine/options.py declares it

    p = sub.add_parser("evaluate", help="Dice tables (per case, pooled, EMIDEC; 95%% intervals) of predictions "
                                       "against truth")
    p.add_argument("--pred", required=True, metavar="DIR",
                   help="predicted labels: Case_X.nii.gz files or EMIDEC layout")
    p.add_argument("--truth", required=True, metavar="DIR", help="truth labels: EMIDEC layout or Case_X.nii.gz files")
    p.add_argument("--out", metavar="PREFIX", help="write PREFIX.csv and PREFIX.json (default: DIR/evaluation)")
    p.add_argument("--csv", metavar="FILE", help="the CSV table here instead (one row a case, then the means, the "
                   "pooled Dice and the intervals)")
    p.add_argument("--json", metavar="FILE", help="the JSON report here instead (every table, the intervals and "
                   "each case's voxel counts; evaluation.Report.from_json reads it back)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="95%% intervals of every per-case and pooled figure from N draws of the cases, with "
                        "replacement (0: none; needs 2 cases or more)")

    sub.add_parser("models", help="list the bundled and user models")
    from . import synthesis_cli

    synthesis_cli.add_parsers(sub, add_model)
    from . import report_cli
    report_cli.add_parsers(sub, add_model)
    for name, func in {"demo": cmd_demo, "segment": cmd_segment, "train": cmd_train, "evaluate": cmd_evaluate,
                       "models": cmd_models}.items():
        sub.choices[name].set_defaults(func=func)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()   # here, so that a reader who left (`lvseg models | head -1`) is seen below
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at exit
        return 141   # as a shell reports a pipe's writer stopped by SIGPIPE
    except LvsegError as exc:
        if getattr(args, "events", None) == "jsonl":   # a front end's child: the error as data, for its own words
            from .engine.process import error_line

            print(error_line(exc), file=sys.stderr)
        else:
            print(f"lvseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # a folder that cannot be written, a full disk: the file and the reason, no traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lvseg {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lvseg {args.command}: interrupted", file=sys.stderr)
        return 130


# -- subcommands ------------------------------------------------------------------------------------
def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(screenshot=args.screenshot, segment=not args.no_segment)


def cmd_segment(args) -> int:
    from .inference import segment_steps
    from .io import image_kind, read_image, write_image, write_labels
    from .locate import pixel_size_mm

    set_threads(args.threads)
    src = input_path(args.input)
    if _is_seg(args.output):   # -o labels.dcm: a DICOM SEG of the DICOM series segmented
        return _segment_to_seg(args, src)
    one_file = image_kind(args.output) in ("nifti", "tiff")   # -o names a labels file, not a folder
    # a DICOM folder is one series, and a case folder one stack when -o names a file; other folders are many
    if src.is_dir() and image_kind(src) != "dicom" and not (one_file and image_kind(src) == "emidec-case"):
        items, skipped = _folder_items(src) if one_file else (None, [])   # an empty or foreign folder: said so
        if items is not None and len(items) > 1:
            raise LvsegError(f"-o {args.output} names one file, but this folder holds {len(items)} images: give an "
                             "output folder", src)
        if skipped:   # beside the one image: the user may have meant another
            raise LvsegError(skipped[0][1], skipped[0][0])
        if items is None:
            return _segment_folder(args, src)
        src = Path(items[0][1])   # a folder of one image: that image into the file
    output = output_path(args.output, [src])    # output problems too are reported before any work
    uncertainty = (output_path(args.uncertainty, [src], outputs=[output], what="an image file") if args.uncertainty
                   else None)
    image = read_image(src)
    # segment_steps() checks the image and --center before it loads the model
    result = _with_progress(segment_steps(image.data, args.model, tta=args.tta, uncertainty=uncertainty is not None,
                                          center=args.center, name=str(src), pixel_size=pixel_size_mm(image.spacing),
                                          shading_correction=args.shading), f"segmenting {src.name}")
    from .io.atomic import atomic_paths

    # labels and uncertainty replace their files together, or (a failed write) neither: never new labels beside an
    # old uncertainty map, or labels replaced by a command that then fails
    outputs = [output] + ([uncertainty] if uncertainty else [])
    with atomic_paths(*outputs) as temps:
        _write_as(write_labels, temps[0], output, result.labels, image.meta)
        if uncertainty:
            _write_as(write_image, temps[1], uncertainty, result.uncertainty, image.meta)
    print(output)
    _warn_search(src, result, "--center Y X")
    if uncertainty:
        print(uncertainty)
    return 0


def _is_seg(output) -> bool:
    return str(output).lower().endswith(".dcm")


def _segment_to_seg(args, src: Path) -> int:
    """``segment DICOM-SERIES -o labels.dcm``: the labels as a DICOM SEG referencing the series' images."""
    from .cli_args import new_file_path, outside_inputs
    from .inference import segment_steps
    from .io import image_kind, read_image
    from .io.dicom_seg import check_seg, write_seg
    from .locate import pixel_size_mm

    output = Path(args.output)
    if image_kind(src) not in ("dicom", "dicom-file"):
        raise LvsegError("a DICOM SEG (.dcm) is written only for a DICOM series input (give -o labels.nii.gz)",
                         output)
    if args.uncertainty:
        raise LvsegError("--uncertainty goes with a NIfTI or TIFF labels file, not a DICOM SEG", args.uncertainty)
    outside_inputs(new_file_path(output, "a DICOM SEG file (.dcm)"), [src])
    image = read_image(src)
    check_seg(image.meta, output)   # highdicom there, the series placed in patient space: before the model runs
    result = _with_progress(segment_steps(image.data, args.model, tta=args.tta, center=args.center, name=str(src),
                                          pixel_size=pixel_size_mm(image.spacing), shading_correction=args.shading),
                            f"segmenting {src.name}")
    write_seg(output, result.labels, image.meta, model=result.model)
    print(output)
    _warn_search(src, result, "--center Y X")
    return 0


def _with_progress(steps, description: str):
    """Run a generator of (done, total) steps (`steps.result_of`), with a progress bar on a terminal: a large image
    (a 1024 x 1024 x 40 stack) takes minutes, and silence looks like a hang."""
    from .steps import result_of

    if not sys.stderr.isatty():
        return result_of(steps)
    from tqdm import tqdm

    with tqdm(total=1, desc=description, unit="pass", leave=False, dynamic_ncols=True) as bar:
        def advance(step):
            done, total = step
            bar.total = max(total, bar.total)
            bar.update(done - bar.n)

        return result_of(steps, advance)


def _write_as(write, temp: Path, path: Path, data, meta) -> None:
    """``write`` ``data`` into the ``temp`` file that will become ``path``; a failure names ``path``, the user's."""
    try:
        write(temp, data, meta)
    except LvsegError as exc:
        raise LvsegError(exc.message, path) from None


def _warn_search(source, result, how: str) -> None:
    """The LV search's word to the user (`SegmentationResult.search_note`), with ``how`` to give the centre."""
    if result.search_note():
        print(f"lvseg segment: warning: {source}: {result.search_note()} ({how})", file=sys.stderr)


def _folder_items(src: Path) -> tuple[list, list]:
    """(name, source, labels file name) for what a folder holds: an image keeps its file name, a case folder or
    DICOM series becomes <folder>.nii.gz (a series further down <its path joined by _>.nii.gz); and (path, why) of
    what it leaves out (`folder_walk`)."""
    from .io import folder_walk

    sources, skipped = folder_walk(src)
    if not sources and len(skipped) == 1:   # e.g. the folder itself a case without its Images folder
        raise LvsegError(skipped[0][1], skipped[0][0])
    if not sources:
        found = "; ".join(f"{p.name}: {why}" for p, why in skipped)
        raise LvsegError(f"nothing to segment: {found}" if skipped else
                         "folder holds no EMIDEC Case_* folders, DICOM series, NIfTI or TIFF images", src)
    items = []
    for p in sources:   # a series further down is named by its path: DICOM/S1 -> DICOM_S1.nii.gz
        parts = p.relative_to(src).parts
        items.append(("/".join(parts), p, p.name if p.is_file() else f"{'_'.join(parts)}.nii.gz"))
    return items, skipped


def _check_folder_outputs(items: list, out: Path) -> None:
    """Before any work: no two sources write the same file (a series folder P1/ beside P1.nii.gz), and no output
    lands on an input (an image, or a file inside a case or series folder, e.g. -o Case_X/Contours)."""
    taken = {}
    for name, source, out_name in items:
        target = (out / out_name).resolve()
        if target in taken:
            raise LvsegError(f"{taken[target]} and {name} would both be written to {out_name}: segment them apart",
                             out)
        taken[target] = name
        source = source.resolve()
        if target == source or source in target.parents:
            raise LvsegError(f"would overwrite the input {name} with its labels: choose another output folder", out)


def _segment_folder(args, src: Path) -> int:
    """Every case or image of a folder into OUTPUT/, named as its source; a bad one is reported, the rest run."""
    from .inference import segment
    from .io import read_image, write_labels
    from .locate import pixel_size_mm
    from .models.registry import load_model

    if args.uncertainty or args.center:
        raise LvsegError("--uncertainty and --center apply to one image, not to a folder", args.input)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise LvsegError("is a file: a folder is segmented into a folder", out)
    output_folder(out)
    if out.resolve() == src.resolve():
        raise LvsegError("is the input folder: choose another output, the images would be overwritten", out)
    items, skipped = _folder_items(src)
    _check_folder_outputs(items, out)
    model = load_model(args.model, task="segmentation")
    failed = []
    for path, why in skipped:   # each left out said before the others run, and counted below
        print(f"lvseg segment: error: {path}: {why}", file=sys.stderr)
        failed.append(path.name)
    for name, path, out_name in items:
        try:
            image = read_image(path)    # an EMIDEC case's truth labels are not needed here
            if path.is_file() and _is_label_map(image.data):   # e.g. `segment img -o <this folder>/img_seg.tif`
                print(f"lvseg segment: warning: {path}: a label map (whole numbers 0..4 only), as lvseg writes its "
                      "results: skipped, not segmented", file=sys.stderr)
                continue
            result = segment(image.data, model, tta=args.tta, name=str(path), pixel_size=pixel_size_mm(image.spacing),
                             shading_correction=args.shading)
            print(f"{name}: {write_labels(out / out_name, result.labels, image.meta)}")
            _warn_search(path, result, "segment it alone with --center Y X")
        except LvsegError as exc:
            print(f"lvseg segment: error: {exc}", file=sys.stderr)
            failed.append(name)
    if failed:
        print(f"lvseg segment: {len(failed)} of {len(items) + len(skipped)} not segmented: {', '.join(failed)}",
              file=sys.stderr)
    return 2 if failed else 0


def _is_label_map(data) -> bool:
    """Labels, not an image: our own earlier results in the folder being segmented are not segmented again."""
    from .io.nifti import looks_like_labels
    from .labels import N_CLASSES

    return data.size > 0 and 0 <= float(data.min()) and float(data.max()) < N_CLASSES and looks_like_labels(data)


def cmd_train(args) -> int:
    if args.options:
        return _train_with(_options_file(args), args)
    return _train_with(options_from_args(args), args)


def options_from_args(args):
    """The `TrainOptions` of the flags given; the others keep their defaults (a resume without --epochs: the run's
    own, `prepare_run`)."""
    from .engine.options import TrainOptions

    given = given_options(args, TrainOptions)
    if "out" not in given:
        raise LvsegError("give the run folder with --out RUN")
    if not args.resume and not given.get("data"):
        raise LvsegError("give the training data with --data DIR (or --resume a run)")
    if args.register and given.get("name"):   # refused before the training, not after it
        from .models.registry import check_free_model_name

        check_free_model_name(given["name"])
    options = TrainOptions(**given)
    if args.resume and "epochs" not in given:
        options.epochs = None
    return options


def _options_file(args):
    """The `TrainOptions` of ``--options``: a file, or the first line of stdin."""
    from .engine import TrainOptions

    if args.options == "-":
        return TrainOptions.from_text(sys.stdin.readline(), "--options -")
    return TrainOptions.load(args.options)


def _train_with(options, args) -> int:
    from .engine import StopToken, train

    stop = StopToken()
    if args.events == "jsonl":   # a front end's child process (engine/process.py): events out, stop requests in
        from .engine.process import read_control

        read_control(stop)
    bar = None
    last = None
    trained = False   # a resumed run that had already reached its epochs trains nothing
    for event in train(options, stop=stop, resume=args.resume):
        last = event
        trained = trained or event.kind == "step"
        if args.events == "jsonl":
            print(event.to_json(), flush=True)
            continue
        if event.kind in ("start", "stopped", "done", "best", "message", "warning") or event.kind == "validation":
            if bar is not None:
                bar.clear()
            print(_describe(event), flush=True)
        if event.kind == "start" and not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True)
        if event.kind == "step" and bar is not None:
            bar.update(event.step - bar.n)
            bar.set_postfix(epoch=f"{event.epoch}/{event.epochs}", loss=f"{event.losses.get('loss', 0):.3f}",
                            sps=f"{event.samples_per_s or 0:.1f}")
    if bar is not None:
        bar.close()
    rank0 = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes
    if args.register and rank0 and last is not None and last.kind == "done":
        out = options.out
        from .models.registry import register_model, registered_copy

        copy = None if trained or options.name else registered_copy(out)   # a new --name: a copy under it
        if copy is not None:   # a finished run resumed again: its model is in the registry already
            print(f"nothing left to train: the run's model is already registered as {copy.name}")
        else:   # an explicit --name is free (checked above); the run folder's name is never taken from another model
            name = register_model(out, name=options.name, unique=options.name is None).name
            print(f"registered as {name}" if trained else
                  f"nothing left to train: the run's model registered as {name}")
    return 0 if last is not None and last.kind == "done" else 1


def _describe(event) -> str:
    if event.kind in ("message", "warning"):
        return event.message if event.kind == "message" else f"warning: {event.message}"
    if event.kind == "validation":
        parts = [f"{k} {v:.3f}" for k, v in event.metrics.items() if not k.startswith("pooled_") and k != "seconds"]
        return f"epoch {event.epoch}/{event.epochs} validation: " + ", ".join(parts)
    return f"[{event.kind}] {event.message}"


def _label_files(folder: Path) -> dict:
    """Case name -> labels file, for a flat folder of Case_X.nii.gz or an EMIDEC layout."""
    from .io import emidec

    folder = Path(folder)
    if not folder.is_dir():
        raise LvsegError("not a folder", folder)
    found = {c.name: c.labels_path for c in emidec.find_cases(folder) if c.labels_path is not None}
    for f in sorted(folder.glob("*.nii*")) + sorted(folder.glob("*.tif*")):
        name = f.name.split(".")[0]
        if name in found:   # which one is the prediction? Taking either would be a silent guess
            raise LvsegError(f"{found[name].relative_to(folder)} and {f.name} both hold labels of {name}: keep one",
                             folder)
        found[name] = f
    if not found:
        raise LvsegError("no label files (Case_X.nii.gz or EMIDEC Contours) found", folder)
    return found


def cmd_evaluate(args) -> int:
    from .evaluation import evaluate_cases
    from .io import read_labels

    if not 0 <= args.bootstrap <= MAX_BOOTSTRAP:
        raise LvsegError(f"--bootstrap must be 0 to {MAX_BOOTSTRAP}, not {args.bootstrap}")
    pred, truth = _label_files(args.pred), _label_files(args.truth)
    csv_path, json_path = _evaluation_outputs(args)   # checked before the cases are read and scored
    common = sorted(set(pred) & set(truth))
    if not common:
        raise LvsegError(f"no prediction has a truth case of its name in {args.truth} (predictions: "
                         f"{', '.join(sorted(pred)[:5])}{' ...' if len(pred) > 5 else ''})", args.pred)
    for name in sorted(set(pred) - set(truth)):   # said, one line each: a misnamed case would drop out silently
        print(f"lvseg evaluate: warning: {pred[name]}: no truth of {name} in {args.truth}: left out of every table",
              file=sys.stderr)
    cases = []
    for name in common:
        p, t = read_labels(pred[name]), read_labels(truth[name])
        if p.data.shape != t.data.shape:
            raise LvsegError(f"prediction shape {p.data.shape} differs from truth {t.data.shape}", pred[name])
        cases.append((name, p.data, t.data, t.spacing))
    report = evaluate_cases(cases, bootstrap=args.bootstrap, meta={"pred": str(args.pred), "truth": str(args.truth)})
    print(report.tables())
    if args.bootstrap and not report.intervals:
        print("\n(no intervals: one case cannot be drawn in more than one way)")
    report.to_csv(csv_path)
    report.to_json(json_path)
    print(f"\nwritten: {csv_path}, {json_path}")
    missing = sorted(set(truth) - set(pred))
    if missing:
        print(f"note: {len(missing)} truth case(s) without a prediction: {', '.join(missing[:5])}")
    return 0


def _evaluation_outputs(args) -> tuple[Path, Path]:
    """(CSV, JSON) paths of `evaluate`: ``--csv`` and ``--json`` as given, else PREFIX.csv and PREFIX.json
    (`_evaluation_prefix`); each one's folder checked."""
    prefix = _evaluation_prefix(args.out, args.pred) if not (args.csv and args.json) else None
    paths = []
    for given, ending in ((args.csv, ".csv"), (args.json, ".json")):
        path = Path(given) if given else Path(f"{prefix}{ending}")
        if given:
            if path.is_dir():
                raise LvsegError(f"is a folder: give a {ending} file", path)
            if not path.parent.is_dir():
                raise LvsegError("not a folder" if path.parent.exists() else "folder does not exist", path.parent)
            output_folder(path.parent)
        paths.append(path)
    if paths[0].resolve() == paths[1].resolve():
        raise LvsegError("--csv and --json name the same file", paths[0])
    return paths[0], paths[1]


def _evaluation_prefix(out, pred) -> Path:
    """Where `evaluate` writes PREFIX.csv and PREFIX.json: ``--out`` as given (a .csv or .json ending dropped), or
    inside it when it is a folder; by default DIR/evaluation beside the predictions."""
    prefix = Path(out) if out else Path(pred) / "evaluation"
    if prefix.is_dir() or not prefix.name.strip("."):   # --out . or --out results/: the files go inside
        prefix = prefix / "evaluation"
    if prefix.suffix.lower() in (".csv", ".json"):
        prefix = prefix.with_suffix("")
    if not prefix.parent.is_dir():
        raise LvsegError("not a folder" if prefix.parent.exists() else "folder does not exist", prefix.parent)
    output_folder(prefix.parent)
    return prefix


def _lookup(tree, *keys):
    """tree[k1][k2]... or None where a level is missing or not an object (a hand-edited card)."""
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _feature_distance(summary):
    """A synthesis summary's feature distance, under its new name or the old 'fid' of cards bundled before."""
    from .realism import result_value

    value = result_value(summary, "feature_distance") if isinstance(summary, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _model_score(metrics: dict) -> str:
    """The headline figure of a card: a segmentation model's mean Dice (out of fold where its recipe was
    cross-validated, else the test split's or validation's), a generator's PSNR and feature distance (our encoder's,
    not Inception's; the test split)."""
    def number(*keys):
        value = _lookup(metrics, *keys)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    test, val = number("test_metrics_tta", "study_mean", "mean"), number("validation", "mean")
    held_out, cases = number("out_of_fold", "per_case_mean"), number("out_of_fold", "cases")
    psnr = number("synthesis_test_split", "psnr")
    distance = _feature_distance(_lookup(metrics, "synthesis_test_split"))
    if held_out is not None:   # a cross-validated recipe: every case scored by a network that never saw it
        return f"  out-of-fold mean Dice {held_out:.3f}" + (f" ({cases:g} cases)" if cases is not None else "")
    if test is not None:
        return f"  test mean Dice {test:.3f}"
    if val is not None:
        return f"  validation mean Dice {val:.3f}"
    if psnr is not None:
        return f"  test PSNR {psnr:.1f} dB" + (f", feature distance (our encoder) {distance:.3f}"
                                               if distance is not None else "")
    return ""


def cmd_models(args) -> int:
    from .models.registry import default_model_name, scan_models
    from .models.weights import weights_problem

    entries, broken = scan_models()
    if not entries and not broken:
        print("no models found")
    for e in entries:
        default = " (default)" if e.name == default_model_name(e.task) else ""
        score = _model_score(e.card.metrics)
        problem = weights_problem(e.path)
        state = f"  UNUSABLE ({problem})" if problem else ""
        print(f"{e.name:32s} {e.task:13s} {e.source:8s}{default}{score}{state}  {e.path}")
    for problem in broken:
        print(f"UNUSABLE, left out of every model list: {problem}")
    return 0



if __name__ == "__main__":
    sys.exit(main())
