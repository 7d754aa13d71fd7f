"""Training checkpoints: plain dicts of tensors, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from pathlib import Path

from ..errors import LvsegError
from ..io.atomic import atomic_path

FORMAT = "lvseg-checkpoint-1"


def save_checkpoint(path, state: dict) -> None:
    import torch

    with atomic_path(path, suffix="") as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by `save_checkpoint`; anything else is refused with a one-line error."""
    import pickle

    import torch

    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise LvsegError("not a plain checkpoint (it would run code when loaded); refused", path) from None
    except Exception as exc:  # corrupt / truncated / not a torch file
        raise LvsegError(f"unreadable checkpoint ({type(exc).__name__})", path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LvsegError("not a napari-lvseg training checkpoint", path)
    return state
