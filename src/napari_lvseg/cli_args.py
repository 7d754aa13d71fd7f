"""Argument helpers shared by the ``lvseg`` subcommands (cli.py, synthesis_cli.py, report_cli.py): argparse types,
the ``--model`` option, the training options' flags (from their schema, engine/schema.py), checks of input and
output paths made before any work, and torch's thread count."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import LvsegError


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a random seed, 0 .. 2**32 - 1 (what numpy and torch both take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {2 ** 32 - 1}, not {text!r}")
    return value


def ratios(text: str) -> list:
    """argparse type: numbers separated by ':' (``1:1``, ``1:7:11:26:90``)."""
    try:
        return [float(v) for v in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by ':' like 1:1, not {text!r}") from None


ARG_TYPES = {"int": int, "float": float, "str": str, "list": ratios}


def add_options(parser, options_class) -> None:
    """A flag for each option of ``options_class`` (a `TrainOptions`), in a section per group, as its schema
    declares it. Options not given are left out of the parsed arguments (`given_options`): their defaults are the
    schema's."""
    from .engine.schema import schema

    groups = {}
    for opt in schema(options_class):
        if opt.group not in groups:
            groups[opt.group] = parser.add_argument_group(f"{opt.group} options")
        kwargs = {"default": argparse.SUPPRESS, "help": opt.help or None}
        if opt.kind == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif opt.name == "data":   # each folder its own --data
            kwargs.update(action="append", metavar=opt.metavar)
        else:
            kwargs.update(type=ARG_TYPES[opt.kind], metavar=opt.metavar)
            if opt.choices:
                kwargs["choices"] = opt.choices
        groups[opt.group].add_argument(opt.flag, dest=opt.name, **kwargs)


def given_options(args, options_class) -> dict:
    """{option name: value} of the training options given on the command line."""
    from .engine.schema import schema

    return {opt.name: getattr(args, opt.name) for opt in schema(options_class) if hasattr(args, opt.name)}


def output_folder(folder) -> Path:
    """A folder outputs go into, checked before any work: no file stands where it or a missing parent must be made
    (missing folders are made when the outputs are written), and this process may write there."""
    from .io.atomic import check_output_folder

    check_output_folder(folder, "is a file, not a folder: the output cannot be written inside it")
    return Path(folder)


def new_file_path(path, what: str) -> Path:
    """A file to be written, checked before any work: not a folder, and its folder one `output_folder` allows."""
    path = Path(path)
    if path.is_dir():
        raise LvsegError(f"is a folder: give {what}", path)
    output_folder(path.parent)
    return path


def input_path(path) -> Path:
    """An input, checked first: a missing one is the problem to name, not what the outputs would be."""
    path = Path(path)
    if not path.exists():
        raise LvsegError("no such file or folder", path)
    return path


def input_folders(source) -> list:
    """The folders an input is read from as a whole: the input itself when a folder, the case folder of an EMIDEC
    case's image or truth file, the series folder of a DICOM file (it reads its whole folder)."""
    from .io import image_kind
    from .io.emidec import is_case_folder

    source = Path(source)
    if source.is_dir():
        return [source]
    if image_kind(source) == "dicom-file":
        return [source.parent]
    return [source.parent.parent] if is_case_folder(source.parent.parent) else []


def output_path(path, inputs=(), kinds=("nifti", "tiff"), outputs=(), what="a labels file") -> Path:
    """An output file checked before any work: a writable format, not one of the input files or inside their
    folders (`outside_inputs`), not another output. ``what`` it holds, for the messages."""
    from .io import image_kind

    path = new_file_path(path, f"{what} (.nii.gz, .nii, .tif or .tiff)")
    if image_kind(path) not in kinds:
        raise LvsegError("cannot write this kind of file (use .nii.gz, .nii, .tif or .tiff)", path)
    outside_inputs(path, inputs)
    for other in outputs:
        if path.resolve() == Path(other).resolve():
            raise LvsegError("is already the labels output: give the uncertainty map its own file", path)
    return path


def outside_inputs(path, inputs) -> Path:
    """An output that is none of the input files and lies inside none of their folders (`input_folders`)."""
    path = Path(path)
    for source in inputs:
        for folder in input_folders(source):   # a case folder's image or truth, a DICOM series
            if folder.resolve() in path.resolve().parents:
                raise LvsegError(f"lies inside the input folder {folder.resolve().name}: choose an output outside "
                                 "it, its files would be overwritten or mixed into the input", path)
        if path.resolve() == Path(source).resolve():
            raise LvsegError("is the input file: choose another output, the input would be overwritten", path)
    return path


def add_model(p, task="segmentation"):
    p.add_argument("--model", default=None,
                   help=f"{task} model: a registry name (see `lvseg models`), a model or run folder, "
                   "or a weights file with card.json beside it (default: the bundled default)")


def set_threads(n) -> None:
    """torch intra-op threads for this process (None: torch's default)."""
    if n:
        import torch

        torch.set_num_threads(n)
