"""``lvseg report``: the one-page AHA report of a case (PDF or PNG, with a CSV beside it)."""

from __future__ import annotations

from pathlib import Path

from .errors import LvsegError


def add_parsers(sub, add_model) -> None:
    """Register ``report`` on the ``lvseg`` sub-parser collection."""
    from .cli_args import positive_int

    p = sub.add_parser("report", help="one-page AHA 17-segment report of a case (PDF or PNG + CSV)")
    p.add_argument("case", metavar="CASE", help="an image (NIfTI/TIFF/DICOM folder) or an EMIDEC case folder")
    p.add_argument("-o", "--output", required=True, help="report.pdf or report.png; the CSV goes beside it (.csv)")
    p.add_argument("--labels", metavar="FILE", help="use these labels instead of segmenting (a labels file, or an "
                   "EMIDEC case folder for its Contours)")
    add_model(p)
    p.add_argument("--tta", action="store_true", help="segment with test-time augmentation (4 rotations)")
    p.add_argument("--insertion", nargs="+", type=float, metavar="V",
                   help="anterior RV insertion: an angle in degrees on screen (0 right, 90 up), or a point Y X (or "
                        "Z Y X) (default: estimated from the image)")
    p.add_argument("--levels", metavar="LETTERS", help="level of each slice in stack order: b basal, m mid, "
                   "a apical, x apex cap, - none (default: thirds of the slices with myocardium)")
    p.add_argument("--spacing", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size in mm where the file's is unknown (for the masses)")
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from .analysis import mass, report
    from .cli_args import input_path, new_file_path, outside_inputs, set_threads
    from .io import image_kind, read_image, read_labels

    source = input_path(args.case)
    output = new_file_path(args.output, "a .pdf or .png file")
    if output.suffix.lower() not in report.FORMATS:
        raise LvsegError("a report is written as .pdf or .png", output)
    csv_path = output.with_suffix(".csv")
    inputs = [source] + ([input_path(args.labels)] if args.labels else [])
    for path in (output, csv_path):
        outside_inputs(path, inputs)
    if args.insertion is not None and len(args.insertion) not in (1, 2, 3):
        raise LvsegError("--insertion takes an angle, a point Y X or a point Z Y X")
    spacing = mass.check_spacing_option(args.spacing) if args.spacing else None
    if image_kind(source) == "emidec-dataset":
        raise LvsegError("folder holds several EMIDEC cases; give one Case_* folder", source)
    set_threads(args.threads)
    image = read_image(source)
    if args.labels:
        labels = read_labels(args.labels).data
        model = f"labels from {Path(args.labels).name}"
        if labels.shape != image.data.shape:
            raise LvsegError(f"label shape {labels.shape} differs from the image's {image.data.shape}", args.labels)
    else:
        from .inference import segment

        result = segment(image.data, args.model, tta=args.tta, name=str(source))
        labels, model = result.labels, f"model {result.model}" + (" (TTA)" if args.tta else "")
    insertion = args.insertion[0] if args.insertion and len(args.insertion) == 1 else args.insertion
    case = source.name if source.is_dir() else source.name.split(".")[0]
    built = report.build(image.data, labels, case, model, spacing or image.spacing, levels=args.levels,
                         insertion=insertion)
    page, table = report.write(built, output)
    s = built.summary()
    print(f"{case}: infarct {s['infarct_pct']:.1f} % of LV myocardium, no-reflow {s['no_reflow_pct']:.1f} %, "
          f"myocardial mass {mass.format_mass(s['myocardium_g'])}; {built.aha.insertion.describe()}")
    print(page)
    print(table)
    return 0
