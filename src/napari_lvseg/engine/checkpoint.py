"""Training checkpoints: plain dicts of tensors, written atomically, read with ``weights_only=True``."""

from __future__ import annotations

from ..errors import LvsegError
from ..io.atomic import atomic_path

FORMAT = "lvseg-checkpoint-1"


def save_checkpoint(path, state: dict) -> None:
    import torch

    with atomic_path(path, suffix="") as tmp, open(tmp, "wb") as fh:
        # through a Python file: a full disk is an OSError naming the file; torch's own writer (given the path) ends
        # in a RuntimeError such as "unexpected pos 704 vs 598" instead
        torch.save({"format": FORMAT, **state}, fh)


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by `save_checkpoint`; anything else is refused with a one-line error."""
    from ..models.weights import torch_load_plain

    state = torch_load_plain(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise LvsegError("not a napari-lvseg training checkpoint", path)
    return state
