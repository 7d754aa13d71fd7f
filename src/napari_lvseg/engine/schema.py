"""The options schema: each training option declared once, in its `TrainOptions` field, as an `Option`.

The CLI's flags (cli_args.add_options) and the Train panel's fields (widgets/option_fields.py) are built from it,
and `TrainOptions.validate` checks its ranges and choices. An `OptionError` names the option and the problem; each
front end words the name its own way (the CLI ``--batch-size``, the panel ``"batch size"``).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace

from ..errors import LvsegError


@dataclass(frozen=True)
class Option:
    help: str                      # the CLI's help (empty: none shown)
    label: str                     # the panel's name for it: its form row, and how panel errors name it
    group: str                     # the section of `lvseg train --help`
    tip: str = ""                  # the panel's tooltip (default: help)
    panel: bool = False            # the Train panel shows it (otherwise CLI and options file only)
    choices: tuple = ()            # the only values allowed
    suggestions: tuple = ()        # the panel's list for a free text (e.g. device: cuda:N is typed on the CLI)
    low: float | None = None       # range; low_open / high_open exclude the bound
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    unit: str = ""                 # of the range, in messages ("cases")
    metavar: str | None = None
    none_text: str = ""            # the panel shows None as this, at its spin box's minimum, 0
    check: str = ""                # the panel shows it as a check box with this text (0 or 1)
    step: float | None = None      # the panel's spin box step
    panel_default: object = None   # the panel's starting value where not the default (a callable: called)
    # filled in by `schema` from the field
    name: str = ""
    kind: str = ""                 # int | float | str | bool | list
    optional: bool = False         # None allowed
    default: object = None

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    def range_text(self) -> str:
        """``0..3 neighbour slices``, ``at least 1``, ``in [0, 1)``, ``more than 0``."""
        low, high = (None if v is None else _number(v) for v in (self.low, self.high))
        if low is not None and high is not None:
            if self.kind == "int" or not (self.low_open or self.high_open):
                text = f"{low}..{high}"
            else:
                text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        elif low is not None:
            text = f"more than {low}" if self.low_open else f"at least {low}"
        else:
            text = f"less than {high}" if self.high_open else f"at most {high}"
        return f"{text} {self.unit}".rstrip()

    def problem(self, value) -> str | None:
        """What is wrong with ``value`` (of the right type, `TrainOptions._check_types`), or None."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f"must be {', '.join(self.choices[:-1])} or {self.choices[-1]}, got {value!r}"
        if self.kind == "float" and not math.isfinite(value):
            return f"must be a number, got {value}"
        if self.kind in ("int", "float") and (self.low is not None or self.high is not None):
            below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
            above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
            if below or above:
                return f"must be {self.range_text()}, got {value}"
        return None


def _number(value) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def option(default=MISSING, **declared):
    """A `TrainOptions` field declared with its `Option` (a list default is copied for each instance)."""
    metadata = {"option": Option(**declared)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _kind(annotation) -> tuple[str, bool]:
    parts = [p.strip() for p in (annotation if isinstance(annotation, str) else annotation.__name__).split("|")]
    return next(p for p in parts if p != "None"), "None" in parts


def schema(cls) -> tuple:
    """The `Option` of every field of the dataclass ``cls``, in field order, with its name, kind and default."""
    options = []
    for f in fields(cls):
        declared = f.metadata.get("option")
        if declared is None:
            raise TypeError(f"field {f.name} of {cls.__name__} declares no Option")
        kind, optional = _kind(f.type)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        options.append(replace(declared, name=f.name, kind=kind, optional=optional, default=default))
    return tuple(options)


def flag_of(name: str) -> str:
    """The CLI's name of an option, or of a front-end action (``resume``): ``--name-with-dashes``."""
    return "--" + name.replace("_", "-")


class OptionError(LvsegError):
    """A bad training option: ``option`` (its field name) and ``problem``. The problem may refer to other options or
    actions (``refs``) as ``{name}``, which each front end words as it names options. ``str()`` is the CLI's
    wording; `worded` another front end's."""

    def __init__(self, option: str, problem: str, path=None, refs: tuple = ()):
        self.option, self.problem, self.refs = option, " ".join(str(problem).split()), tuple(refs)
        super().__init__(self.worded(flag_of, with_path=False), path)

    def worded(self, name_of, with_path: bool = True) -> str:
        """The error with each option name (and ref) as ``name_of(name)`` gives it."""
        problem = self.problem.format(**{ref: name_of(ref) for ref in self.refs}) if self.refs else self.problem
        text = f"{name_of(self.option)}: {problem}"
        return f"{self.path}: {text}" if with_path and self.path is not None else text

    def to_dict(self) -> dict:
        return {"option": self.option, "problem": self.problem, "refs": list(self.refs),
                "path": None if self.path is None else str(self.path)}
