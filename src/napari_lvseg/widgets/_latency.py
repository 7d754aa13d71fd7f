"""Qt event-loop latency probe: a 10 ms QTimer whose lateness measures how responsive the GUI is."""

from __future__ import annotations

import time

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer


class LatencyProbe(QObject):
    """Records, for every tick of a precise ``interval_ms`` timer, how late it fired (ms)."""

    def __init__(self, interval_ms: int = 10, parent=None):
        super().__init__(parent)
        self.interval_ms = interval_ms
        self.lateness_ms: list[float] = []
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.PreciseTimer)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._tick)
        self._last = None

    def start(self) -> None:
        self.lateness_ms.clear()
        self._last = time.perf_counter()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lateness_ms.append(max(0.0, (now - self._last) * 1000.0 - self.interval_ms))
        self._last = now

    def summary(self) -> dict:
        """p50 / p95 / max lateness in ms and the number of ticks."""
        values = np.asarray(self.lateness_ms, float)
        if values.size == 0:
            return {"ticks": 0, "p50_ms": float("nan"), "p95_ms": float("nan"), "max_ms": float("nan")}
        return {"ticks": int(values.size), "p50_ms": float(np.percentile(values, 50)),
                "p95_ms": float(np.percentile(values, 95)), "max_ms": float(values.max())}
