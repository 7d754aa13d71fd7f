"""Model cards: the schema of ``card.json`` (what a model is, how to feed it, how it was trained and how well it did),
its validation, and which card file of a model folder belongs to its weights.

A model folder holds ``card.json`` (a :class:`ModelCard`) and ``model.safetensors`` (`weights.py`). Imports without
torch: listing models stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from napari_lvseg.errors import LvsegError
from napari_lvseg.labels import NAMES
from napari_lvseg.models.heads import HEADS, SOFTMAX
from napari_lvseg.postprocess import check_postprocess

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
# A save writes its card as card-<save>.json first and renames it to card.json after the weights; model.safetensors
# names its save, so a reader can tell a card whose weights arrived (the model's card) from one whose did not.
_PENDING_CARD = re.compile(r"card-([0-9a-f]{8})\.json")
TASKS = ("segmentation", "synthesis")


_REQUIRED = ("name", "task", "architecture")


# Bounds on the card values that size a network, checked before anything is built: a card's depth of 50 or width of
# 100000 would otherwise fill the machine's memory (or end in a traceback), not give a one-line answer.
INPUT_SIZE_RANGE = (16, 2048)
NETWORK_BOUNDS = {"depth": (1, 8), "base_width": (1, 256), "in_channels": (1, 16), "out_channels": (1, 16)}
WIDEST_LAYER = 2048   # channels of the deepest layer (base_width x 2**(depth-1)); the bundled ones have 96 and 512


def _check_network_size(params: dict, source, member: str = "") -> None:
    """One-line error for a network-sizing value of ``params`` outside `NETWORK_BOUNDS`, or a network whose
    deepest layer would be wider than `WIDEST_LAYER` channels."""
    for key, (low, high) in NETWORK_BOUNDS.items():
        value = params.get(key)
        if value is None:
            continue
        if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
            raise LvsegError(f"model card params {key!r} must be a whole number {low}..{high}, not {value!r}{member}",
                             source)
    depth, width = params.get("depth"), params.get("base_width")
    if depth is not None and width is not None and width * 2 ** (depth - 1) > WIDEST_LAYER:
        raise LvsegError(f"model card params: base_width {width} at depth {depth} makes a deepest layer of "
                         f"{width * 2 ** (depth - 1)} channels, more than {WIDEST_LAYER}{member}", source)


def _check_card_values(data: dict, source) -> None:
    """The card values inference reads, checked where the card is read rather than deep inside a segmentation."""
    def number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    size = data.get("input_size", 128)
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise LvsegError(f"model card field 'input_size' must be a whole number of pixels, not {size!r}", source)
    if not INPUT_SIZE_RANGE[0] <= size <= INPUT_SIZE_RANGE[1]:
        raise LvsegError(f"model card field 'input_size' {size} is outside {INPUT_SIZE_RANGE[0]}.."
                         f"{INPUT_SIZE_RANGE[1]} pixels", source)
    for key in ("params", "normalization", "classes", "training", "metrics", "postprocess"):
        if key in data and not isinstance(data[key], dict):
            raise LvsegError(f"model card field {key!r} must be an object", source)
    norm = data.get("normalization", {})
    for key in ("low", "high"):
        if key in norm and not (number(norm[key]) and 0 <= norm[key] <= 100):
            raise LvsegError(f"model card normalization {key!r} must be a percentile 0..100, not {norm[key]!r}",
                             source)
    if number(norm.get("low", 1)) and number(norm.get("high", 99)) and not norm.get("low", 1) < norm.get("high", 99):
        raise LvsegError(f"model card normalization 'low' ({norm.get('low', 1)}) must be below 'high' "
                         f"({norm.get('high', 99)})", source)
    for key, only in (("method", "percentile"), ("per", "slice")):
        if norm.get(key, only) != only:   # the one normalisation the code applies: another would be ignored
            raise LvsegError(f"model card normalization {key!r} must be {only!r}, not {norm[key]!r}", source)
    if "postprocess" in data:   # checked here too, so that the error names the card's file
        try:
            check_postprocess(data["postprocess"], source)
        except LvsegError as exc:
            raise LvsegError(f"model card {exc.message}", source) from None
    span = norm.get("intensity_range", [0.0, 1.0])
    if not (isinstance(span, (list, tuple)) and len(span) == 2 and all(number(v) for v in span)):
        raise LvsegError(f"model card normalization 'intensity_range' must be two numbers, not {span!r}", source)
    members = data.get("params", {}).get("members") if data["architecture"] == "SegmentationEnsemble" else None
    for i, member in enumerate(members or [], 1):
        if not (isinstance(member, dict) and isinstance(member.get("architecture"), str)
                and isinstance(member.get("params"), dict)):
            raise LvsegError(f"model card ensemble member {i} needs an 'architecture' name and 'params'", source)
    # an ensemble keeps its depth per member: each one must take the input size
    for i, params in enumerate([data.get("params", {})] + [m["params"] for m in members or []]):
        _check_network_size(params, source, f" (ensemble member {i})" if i else "")
        if params.get("head", SOFTMAX) not in HEADS:   # no head: softmax, as every card before the regions head
            raise LvsegError(f"model card params 'head' must be {' or '.join(HEADS)}, not {params['head']!r}"
                             f"{f' (ensemble member {i})' if i else ''}", source)
        depth = params.get("depth")
        if isinstance(depth, int) and 0 < depth < 16 and size % 2 ** depth:
            member = f" (ensemble member {i})" if i else ""
            raise LvsegError(f"model card 'input_size' {size} must be divisible by 2**depth = {2 ** depth}{member}",
                             source)


@dataclass
class ModelCard:
    """What a model is, how to feed it, how it was trained and how well it did."""

    name: str
    task: str
    architecture: str
    params: dict = field(default_factory=dict)
    normalization: dict = field(
        default_factory=lambda: {"method": "percentile", "low": 1, "high": 99, "per": "slice"})
    classes: dict = field(default_factory=lambda: dict(NAMES))
    input_size: int = 128
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    licence: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    notes: str = ""
    untrained: bool = False
    extra: dict = field(default_factory=dict)  # unknown keys, kept so that round trips lose nothing

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data["classes"] = {str(k): v for k, v in self.classes.items()}
        return {**self.extra, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict, source=None) -> "ModelCard":
        if not isinstance(data, dict):
            raise LvsegError("model card is not a JSON object", source)
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise LvsegError(f"model card lacks required key(s): {', '.join(missing)}", source)
        for key in _REQUIRED:
            if not isinstance(data[key], str):
                raise LvsegError(f"model card field {key!r} must be a string, not {data[key]!r}", source)
        if data["task"] not in TASKS:
            raise LvsegError(f"model card task must be one of {TASKS}, got {data['task']!r}", source)
        _check_card_values(data, source)
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {key: value for key, value in data.items() if key in known}
        extra = {key: value for key, value in data.items() if key not in known and key != "extra"}
        if isinstance(data.get("extra"), dict):  # tolerate cards written with a nested "extra"
            extra.update(data["extra"])
        try:
            if "classes" in kwargs:
                kwargs["classes"] = {int(k): v for k, v in kwargs["classes"].items()}
            return cls(**kwargs, extra=extra)
        except (TypeError, ValueError) as exc:
            raise LvsegError(f"malformed model card ({exc})", source) from exc

    @classmethod
    def from_json(cls, text: str, source=None) -> "ModelCard":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LvsegError(f"model card is not valid JSON ({exc})", source) from exc
        return cls.from_dict(data, source)

    @property
    def is_default(self) -> bool:
        return bool(self.extra.get("default", False))


def _saved_with(weights: Path) -> str | None:
    """The save a ``model.safetensors`` belongs to (its metadata), or None. Reads only the header."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="np") as handle:
            return (handle.metadata() or {}).get("save")
    except Exception:  # unreadable weights: load_model says so; here the card simply stays as it is
        return None


def pending_cards(directory: Path) -> dict:
    """{save: path} of the card-<save>.json files in ``directory``."""
    found = (_PENDING_CARD.fullmatch(f.name) for f in directory.glob("card-*.json"))
    return {m.group(1): directory / m.group(0) for m in found if m}


def card_path(directory) -> Path:
    """The card of ``directory``'s weights: card.json, or the pending card-<save>.json of a save that stopped
    between its weights and its card's rename (the weights name their save). Reads only: a reader must not move
    a file that a save in progress is about to rename; the next save tidies up."""
    directory = Path(directory)
    pending = pending_cards(directory)
    if pending:
        save = _saved_with(directory / WEIGHTS_FILE)
        if save in pending:
            return pending[save]
    return directory / CARD_FILE


def read_card(path) -> ModelCard:
    """Read a ``card.json`` (or the one in a model directory)."""
    path = Path(path)
    if path.is_dir():
        path = card_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LvsegError("model card not found", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LvsegError(f"cannot read model card ({exc})", path) from exc
    return ModelCard.from_json(text, path)
