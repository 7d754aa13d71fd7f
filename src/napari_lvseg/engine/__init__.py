"""The training engine shared by the CLI, the napari worker and training/ (see core.py)."""

from .events import Event, StopToken
from .options import TrainOptions


def train(options, stop=None, resume=False):
    """Generator of progress `Event`s; see `napari_lvseg.engine.core.train`."""
    from .core import train as _train

    return _train(options, stop=stop, resume=resume)


__all__ = ["Event", "StopToken", "TrainOptions", "train"]
