"""GUI responsiveness while training from the Train panel: Qt event-loop lateness, idle vs training.

Run under a display, e.g. ``xvfb-run -a python benchmarks/bench_gui_latency.py``. A 10 ms QTimer records
how late each tick fires: first with napari idle, then while a short training run (phantom pairs,
tiny network, threads=1) goes on in the panel's worker thread. Prints p50 / p95 / max in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def run_loop_for(seconds: float, until=None) -> None:
    """Run the Qt event loop for ``seconds`` (or until ``until()`` is true, checked every 100 ms)."""
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    deadline = time.monotonic() + seconds
    check = QTimer()
    check.setInterval(100)
    check.timeout.connect(lambda: loop.quit() if time.monotonic() > deadline or (until and until()) else None)
    check.start()
    loop.exec_()
    check.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=5.0)
    parser.add_argument("--train-seconds", type=float, default=30.0, help="at most this long under training")
    parser.add_argument("--width", type=int, default=8, help="network base width of the training run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lvseg-latency-"))
    os.environ["LVSEG_MODELS_DIR"] = str(work / "models")  # never register into the user's model folder
    os.environ["LVSEG_DATA_DIR"] = str(work / "data")

    import napari

    from napari_lvseg.widgets._latency import LatencyProbe
    from napari_lvseg.widgets._testing import phantom_pair_folder
    from napari_lvseg.widgets.train import TrainWidget

    pairs = phantom_pair_folder(work / "pairs", n_pairs=3, n_slices=4).root
    viewer = napari.Viewer(show=True)
    panel = TrainWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Train")
    panel.extra_options = {"width": args.width, "augment": "default", "samples_per_epoch": 400}
    panel.add_source(pairs)
    panel.epochs.setValue(50)
    panel.batch_size.setValue(args.batch_size)
    panel.threads.setValue(args.threads)
    panel.run_folder.setText(str(work / "run"))
    run_loop_for(1.0)  # let the window settle

    probe = LatencyProbe(10)
    probe.start()
    run_loop_for(args.idle_seconds)
    probe.stop()
    idle = probe.summary()

    panel.start()
    run_loop_for(60.0, until=lambda: len(panel.logic.losses) >= 1)  # model built, first step done
    probe.start()
    run_loop_for(args.train_seconds, until=lambda: not panel.running)
    probe.stop()
    training = probe.summary()
    steps = len(panel.logic.losses)
    panel.cancel()
    panel.wait_stopped(120)
    viewer.close()

    result = {"idle": idle, "training": training, "training_steps": steps, "threads": args.threads,
              "width": args.width, "batch_size": args.batch_size}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'':10s} {'ticks':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for name in ("idle", "training"):
        s = result[name]
        print(f"{name:10s} {s['ticks']:6d} {s['p50_ms']:8.2f} {s['p95_ms']:8.2f} {s['max_ms']:8.2f}")
    print(f"({steps} training steps, width {args.width}, batch {args.batch_size}, threads {args.threads})")


if __name__ == "__main__":
    main()
