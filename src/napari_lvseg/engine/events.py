"""Progress events: what the engine yields to the CLI, the napari worker and the experiments."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field


@dataclass
class Event:
    kind: str                 # start | step | validation | checkpoint | best | done | stopped | message | warning
    epoch: int = 0            # 1-based epoch the event belongs to
    epochs: int = 0
    step: int = 0             # global optimisation step (counting steps before a resume)
    total_steps: int = 0
    losses: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    elapsed: float = 0.0      # seconds of training in this run, including before a resume
    eta: float | None = None  # seconds left
    samples_per_s: float | None = None
    message: str = ""
    path: str = ""            # checkpoint / model written, for checkpoint, best and done

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v not in (None, "", {})})

    @property
    def progress(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


class StopToken:
    """Set from any thread; the engine stops at the next step boundary and keeps a checkpoint."""

    def __init__(self):
        self._event = threading.Event()
        self.reason = ""

    def stop(self, reason: str = "stopped") -> None:
        self.reason = reason
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a stop is requested (True) or ``timeout`` seconds pass (False)."""
        return self._event.wait(timeout)
