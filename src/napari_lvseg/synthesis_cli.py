"""``lvseg`` subcommands of the synthesis engine (Pix2Pix): synthesize, synthesize-dataset, evaluate-synthesis.

Training is ``lvseg train --task synthesis`` (cli.py, through the shared engine).
"""

from __future__ import annotations

from pathlib import Path

from .errors import LvsegError

FILL_HELP = ("with --context and --context-labels: what the generator redraws. lv: the whole LV region (default); "
             "changes: only the pixels whose label MASK changes against --context-labels, blended over 3 pixels "
             "around them, so the rest of that heart stays the real one")
NO_GRAIN_HELP = ("with a context: leave the generator's fill-in smooth (default: given the context's own noise "
                 "texture, measured over the pixels it replaces; with --fill changes, those pixels' own fine texture)")


def add_parsers(sub, add_model) -> None:
    """Register the synthesis subcommands on the ``lvseg`` sub-parser collection."""
    from .cli_args import positive_int, seed_int
    from .synthesis import FILLS  # light: no torch

    p = sub.add_parser("synthesize", help="render a synthetic LGE image from a label mask (NIfTI/TIFF, 2-D or stack)")
    p.add_argument("mask", help="labels 0..4 (NIfTI or TIFF, a slice or a stack)")
    p.add_argument("-o", "--output", required=True, help="image file; same shape as MASK (NIfTI keeps its header)")
    add_model(p, "synthesis")
    p.add_argument("--seed", type=seed_int, default=0, help="noise seed: same seed, same image")
    p.add_argument("--context", metavar="IMAGE",
                   help="a real image of MASK's shape to render into: the LV region is filled in, every pixel "
                        "outside it stays this image's (default model then: the context generator)")
    p.add_argument("--context-labels", metavar="LABELS",
                   help="the context image's own labels, where known: its LV is blanked out too")
    p.add_argument("--donors", metavar="DIR",
                   help="without --context: real cases (EMIDEC folder or pair folder) to take each slice's "
                        "surroundings from, the slice whose LV size is nearest the mask's")
    p.add_argument("--donor", default="0", metavar="RANK|NAME",
                   help="with --donors: the donor by rank of LV size (0: the nearest) or by name ('Case_P001 slice 3')")
    p.add_argument("--fill", choices=FILLS, default="lv", help=FILL_HELP)
    p.add_argument("--no-grain", action="store_true", help=NO_GRAIN_HELP)
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("synthesize-dataset", help="write a pair folder of simulated masks and synthetic images")
    p.add_argument("--masks-from", required=True, metavar="DIR", help="EMIDEC case/dataset folder or pair folder")
    p.add_argument("--n", type=int, required=True, help="number of pairs to write")
    p.add_argument("--out", required=True, metavar="DIR", help="pair folder (created or added to)")
    add_model(p, "synthesis")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--cases", nargs="+", metavar="CASE", help="only these source cases / pairs")
    p.add_argument("--no-simulate", action="store_true", help="use the source masks unchanged (no mask simulator)")
    p.add_argument("--stacks", action="store_true",
                   help="each pair a whole synthetic case (Z, Y, X) with one lesion through neighbouring slices, "
                        "for 2.5-D training (--context); --n counts cases")
    p.add_argument("--slice-seeds", action="store_true",
                   help="with --stacks: each slice of a synthetic case gets its own noise seed (the mask still "
                        "carries one lesion through the stack)")
    p.add_argument("--edits", nargs="+", metavar="KIND",
                   help="real cases' masks edited instead of simulated, each rendered with its real image as the "
                        "context where the generator takes one (default model then: the context generator): grow, "
                        "shrink, move, add_no_reflow, remove_no_reflow, new_infarct, clear, fusion (a donor case's "
                        "lesion in the nearest LV of another case), or all; "
                        "unchanged: the real masks as they are, re-rendered (train on synthetic, test on real)")
    p.add_argument("--fill", choices=FILLS, default="lv",
                   help="with --edits and a context generator: lv redraws each case's whole LV region (default); "
                        "changes only the pixels the edit changed, blended over 3 pixels around them")
    p.add_argument("--no-grain", action="store_true", help=NO_GRAIN_HELP)
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=cmd_synthesize_dataset)

    p = sub.add_parser("evaluate-synthesis", help="PSNR, SSIM, class contrasts and feature distances (our segmentation "
                                                  "encoder's features, not Inception's) of a synthesis model")
    add_model(p, "synthesis")
    p.add_argument("--data", required=True, metavar="DIR", help="EMIDEC folder or pair folder with real images")
    p.add_argument("--cases", nargs="+", metavar="CASE", help="only these cases / pairs (e.g. the held-out ones)")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--out", metavar="FILE.json", help="also write the full result (with per-pair rows) here")
    p.add_argument("--threads", type=positive_int, default=None)
    p.set_defaults(func=cmd_evaluate_synthesis)


def _threads(n) -> None:
    from .cli_args import set_threads

    set_threads(n)


def cmd_synthesize(args) -> int:
    from .cli_args import input_path, output_path
    from .io import read_image, read_labels, write_image
    from .synthesis import donor_contexts, synthesize

    if args.context and args.donors:
        raise LvsegError("give --context or --donors, not both (donors stand in for a missing context)")
    if args.context_labels and not args.context:
        raise LvsegError("--context-labels needs --context (the labels of that image)")
    if args.fill == "changes" and not args.context_labels:
        raise LvsegError("--fill changes needs --context and --context-labels: the edits are what MASK changes "
                         "against the context's own labels")
    _threads(args.threads)
    inputs = [input_path(p) for p in (args.mask, args.context, args.context_labels, args.donors) if p]
    output = output_path(args.output, inputs, what="an image file")
    mask = read_labels(args.mask)
    context = context_labels = None
    context_name = "context"
    if args.context:
        context, context_name = read_image(args.context).data, args.context
        if args.context_labels:
            context_labels = read_labels(args.context_labels).data
            if context_labels.shape != context.shape:
                raise LvsegError(f"labels of shape {context_labels.shape} for a context image of shape "
                                 f"{context.shape}", args.context_labels)
        if context.shape != mask.data.shape:
            raise LvsegError(f"context image has shape {context.shape}; the mask {args.mask} has "
                             f"{mask.data.shape}: they must match", args.context)
    elif args.donors:
        choice = int(args.donor) if args.donor.strip().lstrip("-").isdigit() else args.donor
        context, context_labels, names = donor_contexts(mask.data, args.donors, choice, args.mask)
        context_name = args.donors
        shown = sorted(set(names))
        print(f"donor{'s' if len(shown) > 1 else ''}: {', '.join(shown[:5])}{' ...' if len(shown) > 5 else ''}")
    image = synthesize(mask.data, args.model, seed=args.seed, name=args.mask, context=context,
                       context_labels=context_labels, context_name=context_name, grain=not args.no_grain,
                       fill=args.fill)
    # The mask's header (affine, spacing) goes with the image; only a NIfTI writer uses it.
    print(write_image(output, image, mask.meta))
    return 0


def cmd_synthesize_dataset(args) -> int:
    from .synthesis import synthesize_dataset

    if args.slice_seeds and not args.stacks:
        raise LvsegError("--slice-seeds needs --stacks (a lone synthetic slice has one seed anyway)")
    if args.edits:
        return _edited_dataset(args)
    if args.no_grain or args.fill != "lv":
        other = "--no-grain" if args.no_grain else "--fill"
        raise LvsegError(f"{other} concerns a context generator's fill-in of edited real cases: use it with --edits")
    _threads(args.threads)
    folder = synthesize_dataset(args.masks_from, args.n, args.out, model=args.model, seed=args.seed,
                                cases=args.cases, simulate=not args.no_simulate, stacks=args.stacks,
                                slice_seeds=args.slice_seeds)
    kind = "pairs (whole stacks)" if args.stacks else "pairs"
    print(f"{args.n} synthetic {kind} written to {folder.root} ({len(folder)} pairs in the folder)")
    return 0


def _grain_text(rendering: dict) -> str:
    if "grain" not in rendering:
        return ""
    text = ", the fill-in given its context's grain" if rendering["grain"] else ", the fill-in left smooth (--no-grain)"
    return text + (", only the edited pixels redrawn" if rendering.get("fill") == "changes" else "")


def _edited_dataset(args) -> int:
    from .data.edits import check_edits
    from .synthesis_edits import synthesize_edited_dataset

    if args.no_simulate or args.slice_seeds:
        other = "--no-simulate" if args.no_simulate else "--slice-seeds"
        raise LvsegError(f"--edits edits the real masks and renders each pair with one seed: leave out {other}")
    kinds = check_edits(args.edits)
    _threads(args.threads)
    folder, summary = synthesize_edited_dataset(args.masks_from, args.n, args.out, kinds, model=args.model,
                                                seed=args.seed, cases=args.cases, stacks=args.stacks,
                                                grain=not args.no_grain, fill=args.fill)
    made = ", ".join(f"{kind} {count}" for kind, count in sorted(summary["pairs"].items()))
    print(f"{args.n} edited {'stacks' if args.stacks else 'pairs'} written to {folder.root} ({len(folder)} pairs in "
          f"the folder): {made}; {summary['rendering']['how']}{_grain_text(summary['rendering'])}")
    if summary["rejections"]:
        reasons = "; ".join(f"{count}x {text}" for text, count in summary["rejection_reasons"].items())
        print(f"  {summary['rejections']} fusion(s) or move(s) rejected as anatomically impossible and drawn again: "
              f"{reasons}")
    return 0


def cmd_evaluate_synthesis(args) -> int:
    from .io.atomic import write_json_atomic
    from .realism import FEATURE_DISTANCE, KERNEL_DISTANCE, feature_distance_names
    from .synthesis import evaluate_synthesis

    _threads(args.threads)
    if args.out:   # checked before the evaluation, which takes minutes
        from .cli_args import new_file_path, outside_inputs

        if new_file_path(args.out, "a .json file").suffix.lower() != ".json":
            raise LvsegError("--out must name a .json file", args.out)
        outside_inputs(args.out, [args.data])
    # fid/kid renamed: distances between our own encoder's features, not Inception FID/KID (realism.py)
    result = feature_distance_names(evaluate_synthesis(args.model, args.data, cases=args.cases, seed=args.seed))
    print(f"{result['model']} on {result['n_slices']} slices of {result['data']}:")
    print(f"  L1 {result['l1']:.4f}  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}")
    print(f"  {FEATURE_DISTANCE} {result['feature_distance']:.4f}  {KERNEL_DISTANCE} {result['kernel_distance']:.5f} "
          f"+- {result['kernel_distance_std']:.5f}  (features: {result['feature_network']}; not Inception FID/KID: "
          "comparable only with each other)")
    synthetic, real = result["class_means_synthetic"], result["class_means_real"]
    print("  class means (normalised, synthetic / real): "
          + ", ".join(f"{k} {synthetic[k]:.3f}/{real[k]:.3f}" for k in synthetic))
    print(f"  infarct brighter than myocardium: {result['infarct_brighter_than_myocardium']}; "
          f"no-reflow darker than infarct: {result['no_reflow_darker_than_infarct']}")
    if args.out:
        write_json_atomic(Path(args.out), result)
        print(f"written: {args.out}")
    return 0
