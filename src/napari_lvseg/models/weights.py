"""Model weights: saving a model folder (card and weights as one unit, large weights in shards), and loading it
safely. Weights are only ever read as tensors: safetensors, or ``torch.load(weights_only=True)`` for ``.pt``/``.pth``
files, so a weights file can never run code. torch is imported lazily.
"""

from __future__ import annotations

import os
import re
import secrets
import warnings
from pathlib import Path

from napari_lvseg.errors import LvsegError
from napari_lvseg.io.atomic import fsync_folder
from napari_lvseg.models.card import CARD_FILE, WEIGHTS_FILE, ModelCard, card_path, pending_cards, read_card

# Weights above this size continue in model-<save>-2.safetensors, ..., named in model.safetensors'
# metadata, so that no file of a model (bundled ones are tracked in git) grows past ~10 MB.
SHARD_BYTES = 8 * 2**20
_SHARD_NAME = re.compile(r"model-(?:[0-9a-f]{8}-)?\d+\.safetensors")   # the 8 hex digits: one save

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
    for stale in pending_cards(directory).values():   # cards of earlier interrupted saves
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


def read_safetensors(path: Path) -> dict:
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


def locate(path: Path) -> tuple[Path, Path]:
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


def load_model_at(path, task: str | None = None):
    """Load ``(model, card)`` from a model directory, run folder or weights file (`registry.load_model` takes a
    registry name too).

    The model comes back in eval mode, float32, on the CPU. Any problem is a one-line LvsegError.
    """
    import torch

    path = Path(path)
    card_path, weights_path = locate(path)
    card = read_card(card_path)
    if task is not None and card.task != task:
        raise LvsegError(f"is a {card.task} model ({card.name}); a {task} model is needed", path)
    if weights_path.suffix.lower() == ".safetensors":
        state = read_safetensors(weights_path)
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
