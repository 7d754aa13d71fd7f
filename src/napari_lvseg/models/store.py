"""Model cards, safe weight loading and the model registry (bundled + user models).

A model directory holds ``card.json`` (a :class:`ModelCard`) and ``model.safetensors``. Weights are only
ever read as tensors: safetensors, or ``torch.load(weights_only=True)`` for ``.pt``/``.pth`` files, so a
weights file can never run code. torch is imported lazily: listing models stays cheap.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.atomic import fsync_folder
from napari_lvseg.io.lock import FolderLock
from napari_lvseg.labels import NAMES

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
# Weights above this size continue in model-<save>-2.safetensors, ..., named in model.safetensors'
# metadata, so that no file of a model (bundled ones are tracked in git) grows past ~10 MB.
SHARD_BYTES = 8 * 2**20
_SHARD_NAME = re.compile(r"model-(?:[0-9a-f]{8}-)?\d+\.safetensors")   # the 8 hex digits: one save
# A save writes its card as card-<save>.json first and renames it to card.json after the weights; model.safetensors
# names its save, so a reader can tell a card whose weights arrived (the model's card) from one whose did not.
_PENDING_CARD = re.compile(r"card-([0-9a-f]{8})\.json")
TASKS = ("segmentation", "synthesis")
USER_DIR_ENV = "LVSEG_MODELS_DIR"

# Architecture name -> "module:class", imported only when a model is built.
ARCHITECTURES = {
    "AttentionResUNet": "napari_lvseg.models.attention_res_unet:AttentionResUNet",
    "Pix2PixGenerator": "napari_lvseg.models.pix2pix:Pix2PixGenerator",
    "SegmentationEnsemble": "napari_lvseg.models.ensemble:SegmentationEnsemble",
}


def _architecture_class(name: str):
    import importlib

    if name not in ARCHITECTURES:
        raise LvsegError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    module, cls = ARCHITECTURES[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_model(architecture: str, params: dict):
    """A freshly initialised network of the named architecture with these constructor arguments."""
    cls = _architecture_class(architecture)
    try:
        return cls(**(params or {}))
    except (TypeError, ValueError) as exc:
        raise LvsegError(f"cannot build {architecture} from the card's params ({exc})") from exc


# ----------------------------------------------------------------------------------------------- cards

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
        from ..inference import check_postprocess

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


def _pending_cards(directory: Path) -> dict:
    """{save: path} of the card-<save>.json files in ``directory``."""
    found = (_PENDING_CARD.fullmatch(f.name) for f in directory.glob("card-*.json"))
    return {m.group(1): directory / m.group(0) for m in found if m}


def card_path(directory) -> Path:
    """The card of ``directory``'s weights: card.json, or the pending card-<save>.json of a save that stopped
    between its weights and its card's rename (the weights name their save). Reads only: a reader must not move
    a file that a save in progress is about to rename; the next save tidies up."""
    directory = Path(directory)
    pending = _pending_cards(directory)
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


# ------------------------------------------------------------------------------------- save and load

def save_model(directory, model, card: ModelCard, half: bool = False) -> Path:
    """Write ``card.json`` and ``model.safetensors`` into ``directory`` as one unit.

    Weights over ``SHARD_BYTES`` continue in ``model-<save>-2.safetensors``, ...: new names for every save. The order:
    the card as ``card-<save>.json``, the shards, ``model.safetensors`` (naming the save and its shards), then the
    card renamed to ``card.json``; what the new save no longer names goes last. An interrupted save leaves either
    the old model or the new one, card and weights together (`card_path` finds the card; the next save tidies up).

    ``half`` stores floating tensors as float16 (for bundled weights; loading restores float32).
    Empty ``card.params``/``architecture`` are filled in from the model.
    """
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if not card.architecture:
        card.architecture = type(model).__name__
    if not card.params and hasattr(model, "architecture_params"):
        card.params = model.architecture_params()
    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if half and tensor.is_floating_point():
            tensor = tensor.to(torch.float16)
        tensors[key] = tensor.contiguous().clone()
    from ..io.atomic import write_text_atomic

    shards, size = [{}], 0
    for key, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append({})
            size = 0
        shards[-1][key] = tensor
        size += nbytes
    save = secrets.token_hex(4)
    names = [f"model-{save}-{i}.safetensors" for i in range(2, len(shards) + 1)]
    pending = directory / f"card-{save}.json"
    write_text_atomic(pending, card.to_json())
    for name, shard in zip(names, shards[1:], strict=True):
        _write_safetensors(directory / name, shard, {"format": "pt"})
    _write_safetensors(directory / WEIGHTS_FILE, shards[0], {"format": "pt", "shards": ",".join(names), "save": save})
    os.replace(pending, directory / CARD_FILE)
    fsync_folder(directory)
    for stale in directory.glob("model-*.safetensors"):
        if stale.name not in names:
            stale.unlink()
    for stale in _pending_cards(directory).values():   # cards of earlier interrupted saves
        stale.unlink()
    return directory


def _write_safetensors(path: Path, tensors: dict, metadata: dict) -> None:
    """One safetensors file, atomically. The bytes are written by Python: a full disk is then an OSError naming the
    file (one line from the CLI), where safetensors' own file writer raises its own error type (a traceback)."""
    from safetensors.torch import save

    from ..io.atomic import atomic_path

    data = save(tensors, metadata=metadata)   # a shard is at most SHARD_BYTES
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def _unreadable(exc, path) -> LvsegError:
    return LvsegError(f"not a readable safetensors file ({type(exc).__name__}: {exc})", path)


def weight_files(weights: Path) -> list[Path]:
    """A safetensors weights file and the shards its metadata names (see `save_model`)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            listed = (handle.metadata() or {}).get("shards", "")
    except Exception as exc:  # safetensors raises its own error types for truncated/garbled files
        raise _unreadable(exc, weights) from exc
    files = [weights]
    for name in filter(None, listed.split(",")):
        if not _SHARD_NAME.fullmatch(name):
            raise LvsegError(f"weights metadata names an invalid shard {name!r}", weights)
        shard = weights.parent / name
        if not shard.is_file():
            raise LvsegError(f"weights shard {name} is missing", weights)
        files.append(shard)
    return files


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    state = {}
    for file in weight_files(path):
        try:
            state.update(load_file(str(file), device="cpu"))
        except Exception as exc:
            raise _unreadable(exc, file) from exc
    return state


def _starts_like_a_pickle(path: Path) -> bool:
    """A raw pickle of protocol 2 or later begins with the PROTO opcode; torch.save writes a zip archive."""
    try:
        with open(path, "rb") as fh:
            return fh.read(1) == b"\x80"
    except OSError:
        return False


def torch_load_plain(path, what: str = "PyTorch weights file"):
    """``torch.load(weights_only=True)``: tensors and plain containers only; code-carrying pickles refused."""
    import pickle

    import torch

    path = Path(path)
    try:
        with warnings.catch_warnings():   # torch warns about legacy pickles before refusing them: one line only
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a page of advice; keep only the unpickler's reason.
        text = str(exc)
        found = (re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n\n|$)", text, re.S)
                 or re.search(r"(unsupported GLOBAL \S+)", text, re.I))   # torch 2.13 words it so
        reason = " ".join(found.group(1).split()) if found else type(exc).__name__
        if "global" in reason.lower():
            raise LvsegError(f"refused: the file holds objects other than tensors ({reason})", path) from None
        if _starts_like_a_pickle(path):   # e.g. a pickle.dump of protocol 4, which torch.save never writes
            raise LvsegError(f"refused: a plain pickle, not a {what} written by torch.save ({reason})", path) from None
        raise LvsegError(f"not a readable {what} ({reason})", path) from None
    except Exception as exc:
        raise LvsegError(f"not a readable {what} ({type(exc).__name__}: {exc})", path) from None


def _read_torch_state_dict(path: Path) -> dict:
    import torch

    obj = torch_load_plain(path)
    if isinstance(obj, dict) and str(obj.get("format", "")).startswith("lvseg-checkpoint"):   # engine/checkpoint.py
        raise LvsegError(f"is a training checkpoint, not a model: pass its run folder ({path.parent}) as the model",
                         path)
    # Accept training checkpoints that wrap the state dict.
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LvsegError("not a state dict (expected a mapping of names to tensors)", path)
    return obj


def _fit_check(model, state: dict, path: Path, architecture: str) -> None:
    """One-line error when the weights' names or shapes do not fit the network."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s) (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {unexpected[0]})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} shape mismatch(es) (e.g. {k}: file {tuple(state[k].shape)} "
                        f"vs model {tuple(expected[k].shape)})")
    if problems:
        raise LvsegError(f"weights do not fit {architecture}: {'; '.join(problems)}", path)


def _check_weight_values(state: dict, expected: dict, path: Path) -> None:
    """Weights that cannot be right are refused, not run: a floating tensor stored as integers, or any NaN or
    infinity (an all-background result with exit 0 otherwise)."""
    import torch

    for key, value in state.items():
        if not expected[key].is_floating_point():
            continue
        if not value.is_floating_point():
            raise LvsegError(f"weights stored as {str(value.dtype).replace('torch.', '')}, not floating point "
                             f"(e.g. {key})", path)
        if not bool(torch.isfinite(value).all()):
            raise LvsegError(f"weights hold NaN or infinite values (e.g. {key})", path)


def weights_problem(model_dir) -> str | None:
    """Why the model folder's weights would not load into the network its card describes (None: they fit).

    Reads only the safetensors headers (names and shapes), so a listing of many models stays quick.
    """
    from safetensors import safe_open

    model_dir = Path(model_dir)
    try:
        card = read_card(model_dir)
        shapes = {}
        for file in weight_files(model_dir / WEIGHTS_FILE):
            with safe_open(str(file), framework="pt") as handle:
                shapes.update({k: handle.get_slice(k).get_shape() for k in handle.keys()})
        _fit_check(build_model(card.architecture, card.params), _Shaped.of(shapes), model_dir, card.architecture)
    except LvsegError as exc:
        return exc.message
    except Exception as exc:  # safetensors' own error types for garbled headers
        return f"unreadable weights ({exc})"
    return None


class _Shaped:
    """Stand-in for a tensor in `_fit_check`: only the shape is read."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    @classmethod
    def of(cls, shapes: dict) -> dict:
        return {k: cls(v) for k, v in shapes.items()}


def _locate(path: Path) -> tuple[Path, Path]:
    """(card path, weights path) for a model directory / run folder or a weights file."""
    if path.is_dir():
        card = card_path(path)
        if not card.is_file():
            raise LvsegError(f"not a model directory (no {CARD_FILE})", path)
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise LvsegError(f"model directory has no {WEIGHTS_FILE}", path)
        return card, weights
    if path.suffix.lower() not in (".safetensors", ".pt", ".pth"):
        raise LvsegError("not a model: expected a model directory, .safetensors, .pt or .pth file", path)
    card = card_path(path.parent)
    if not card.is_file():
        raise LvsegError(f"no {CARD_FILE} beside the weights file", path)
    return card, path


def load_model(ref, task: str | None = None):
    """Load ``(model, card)`` from a registry name, model directory, run folder or weights file.

    The model comes back in eval mode, float32, on the CPU. Any problem is a one-line LvsegError.
    """
    import torch

    path = resolve(ref, task)
    card_path, weights_path = _locate(path)
    card = read_card(card_path)
    if task is not None and card.task != task:
        raise LvsegError(f"is a {card.task} model ({card.name}); a {task} model is needed", path)
    if weights_path.suffix.lower() == ".safetensors":
        state = _read_safetensors(weights_path)
    else:
        state = _read_torch_state_dict(weights_path)
    try:
        model = build_model(card.architecture, card.params)
    except LvsegError as exc:
        raise LvsegError(str(exc), card_path) from exc
    _fit_check(model, state, weights_path, card.architecture)
    expected = model.state_dict()
    _check_weight_values(state, expected, weights_path)
    state = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in state.items()}
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    return model.float().eval(), card


# ------------------------------------------------------------------------------------------- registry

@dataclass
class ModelEntry:
    name: str
    path: Path
    task: str
    source: str  # 'bundled' | 'user'
    card: ModelCard


def bundled_models_dir() -> Path:
    """The package's ``weights/`` folder (each subfolder a model directory)."""
    return Path(__file__).resolve().parent.parent / "weights"


def user_models_dir() -> Path:
    """``$LVSEG_MODELS_DIR``, else ``<user data dir>/napari-lvseg/models``."""
    env = os.environ.get(USER_DIR_ENV)
    if env:
        return Path(env).expanduser()
    try:
        from platformdirs import user_data_dir
    except ImportError:  # platformdirs comes with napari; fall back to the XDG default
        return Path.home() / ".local" / "share" / "napari-lvseg" / "models"
    return Path(user_data_dir("napari-lvseg")) / "models"


def _entries(root: Path, source: str, problems: list | None = None) -> list[ModelEntry]:
    """The model folders under ``root``; a folder with weights whose card cannot be read goes to ``problems`` (as
    its `LvsegError`) instead: a broken model folder must not hide the others."""
    if not root.is_dir():
        return []
    entries = []
    for sub in sorted(root.iterdir()):
        if sub.name.startswith(".") or not sub.is_dir():
            continue
        if not (sub / WEIGHTS_FILE).is_file():
            continue
        try:
            card = read_card(sub)
        except LvsegError as exc:
            if problems is not None:
                problems.append(exc)
            continue
        entries.append(ModelEntry(sub.name, sub, card.task, source, card))
    return entries


def scan_models(task: str | None = None) -> tuple[list[ModelEntry], list[LvsegError]]:
    """`list_models`, and why each model folder it leaves out (weights, but a card that cannot be read) is left out:
    one pass over the folders."""
    problems: list = []
    recover_registrations(user_models_dir())
    entries = _entries(bundled_models_dir(), "bundled", problems) + _entries(user_models_dir(), "user", problems)
    return [e for e in entries if task is None or e.task == task], problems


def list_models(task: str | None = None) -> list[ModelEntry]:
    """Bundled models, then user models; only those of ``task`` when given. Broken folders are skipped
    (`scan_models` says which and why)."""
    return scan_models(task)[0]


def default_model_name(task: str, entries=None) -> str | None:
    """A bundled model whose card says ``"default": true``, else the first model of the task, else None.
    ``entries``: the task's `list_models`, when the caller has them already."""
    entries = list_models(task) if entries is None else entries
    for entry in entries:
        if entry.source == "bundled" and entry.card.is_default:
            return entry.name
    return entries[0].name if entries else None


def resolve(ref, task: str | None = None) -> Path:
    """Path of a model given a path or registry name (None: the task's default model).

    A name is looked up among user models first (so a user model can shadow a bundled one of the same
    name), then bundled ones; a directory name or the card's name both match.
    """
    if ref is None or ref == "":
        name = default_model_name(task) if task else None
        if name is None:
            raise LvsegError(f"no {task} model installed" if task else "no model given")
        ref = name
    path = Path(ref).expanduser()
    if path.exists():
        return path
    entries = list_models()
    for source in ("user", "bundled"):
        for entry in entries:
            if entry.source == source and ref in (entry.name, entry.card.name):
                return entry.path
    known = ", ".join(sorted({e.name for e in entries if task is None or e.task == task})) or "none"
    raise LvsegError(f"no such file, folder or registered model (registered: {known})", ref)


def model_card_only(ref, task: str | None = None) -> ModelCard:
    """A model's card alone (no weights loaded): what a progress count needs (its grid, whether it rescales)."""
    card, _ = _locate(resolve(ref, task))
    return read_card(card)


def check_model_name(name, source=None) -> str:
    """A registry name is a plain folder name."""
    if not isinstance(name, str) or not name or name in (".", "..") or any(sep in name for sep in ("/", "\\", os.sep)):
        raise LvsegError(f"invalid model name {name!r} (a plain name, no path)", source)
    return name


def _taken_names() -> dict:
    """{name: what has it} of the bundled and user models, and of user folders that are no listed model (a broken
    card): registering under one of them would replace it, or be shadowed by it."""
    root = user_models_dir()
    taken = {p.name: f"the user folder {p}" for p in root.iterdir()} if root.is_dir() else {}
    taken.update({e.name: f"the {e.source} {e.task} model {e.name}" for e in list_models()})
    return taken


def check_free_model_name(name: str) -> str:
    """``name`` for a model about to be registered, refused when another model has it: a bundled one would be
    shadowed, a user one replaced (the GUI too registers only under a name no other model has)."""
    holder = _taken_names().get(check_model_name(name))
    if holder is not None:
        raise LvsegError(f"--name {name}: {holder} has this name; choose another --name")
    return name


def free_model_name(name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... if a bundled or user model (of any task) already has it."""
    taken = _taken_names()
    candidate, k = name, 1
    while candidate in taken:
        k += 1
        candidate = f"{name}-{k}"
    return candidate


def registered_copy(src_dir) -> Path | None:
    """The user model holding the same tensors as the model in ``src_dir``, if one is registered (each save of a
    model writes a new save tag into its file, so the files themselves differ)."""
    import torch

    _, weights = _locate(Path(src_dir))
    root = user_models_dir()
    if not root.is_dir():
        return None
    mine = None
    for candidate in sorted(root.iterdir()):
        other = candidate / WEIGHTS_FILE
        if candidate.name.startswith(".") or not other.is_file():
            continue
        try:
            theirs = _read_safetensors(other)
            mine = _read_safetensors(weights) if mine is None else mine
        except Exception:  # noqa: BLE001 - an unreadable user model is simply not this one
            continue
        if theirs.keys() == mine.keys() and all(torch.equal(theirs[k], mine[k]) for k in mine):
            return candidate
    return None


def register_model(src_dir, name: str | None = None, unique: bool = False) -> Path:
    """Copy a model directory (its card and weights only) into the user model folder; return the new path.

    A user model of the same name is replaced, unless ``unique``: then the name gets a free suffix
    (two run folders called "run" must not replace each other's model)."""
    src = Path(src_dir)
    card_path, weights_path = _locate(src)
    if weights_path.suffix.lower() != ".safetensors":
        raise LvsegError("only model directories with model.safetensors can be registered", src)
    card = read_card(card_path)
    name = check_model_name(name or card.name, src)
    if unique:
        name = free_model_name(name)
    card.name = name
    root = user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    dest = root / name
    with FolderLock(root, "user model folder").acquire(wait=True):   # registrations one at a time, a scan aside
        recover_registrations(root, locked=True)
        staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
        try:
            for file in weight_files(weights_path):
                shutil.copy2(file, staging / (WEIGHTS_FILE if file == weights_path else file.name))
            (staging / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
            if dest.exists():  # swap the old one out, then drop it; a kill in between: `recover_registrations`
                old = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}.old."))
                os.replace(dest, old / name)
                os.replace(staging, dest)
                fsync_folder(root)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, dest)
                fsync_folder(root)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return dest


# what `register_model` makes beside the models (mkdtemp: 8 random characters): a copy in progress, and the model
# being replaced, in a folder of its own
_STAGING = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}")
_REPLACED = re.compile(r"\.(?P<name>.+)\.old\.[a-z0-9_]{8}")


def recover_registrations(root, locked: bool = False) -> list:
    """Undo what a `register_model` killed part-way left in the user model folder ``root``: a model swapped out but
    not yet replaced goes back under its name (else it would vanish from the registry), a replaced one and an
    unfinished copy are removed. Return the names put back. Nothing is done while a registration is under way in
    another process (``locked``: this one holds the folder's lock)."""
    root = Path(root)
    try:
        hidden = [p for p in root.iterdir() if p.is_dir() and _STAGING.fullmatch(p.name)]
    except OSError:   # no user folder yet, or one that cannot be read: nothing of ours to recover
        return []
    if not hidden:
        return []
    lock = FolderLock(root, "user model folder")
    if not locked and not lock.try_acquire():
        return []   # a registration is under way: its folders are not left over
    restored = []
    try:
        for folder in hidden:
            replaced = _REPLACED.fullmatch(folder.name)
            model, dest = (folder / replaced["name"], root / replaced["name"]) if replaced else (None, None)
            if model is not None and model.is_dir() and not dest.exists():   # killed between the two renames
                os.replace(model, dest)
                restored.append(dest.name)
            shutil.rmtree(folder, ignore_errors=True)
        fsync_folder(root)
    except OSError:   # a read-only user folder: listing goes on; the next scan that may write recovers
        pass
    finally:
        lock.release()
    return restored
