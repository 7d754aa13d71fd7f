"""GUI responsiveness while training from the Train panel: Qt event-loop lateness, idle vs training, and how soon
a run says something and takes its first step.

Run under a display, e.g. ``xvfb-run -a python benchmarks/bench_gui_latency.py``. The four panels are docked as the
Plugins menu docks them (tabs of one dock area). A 10 ms QTimer records how late each tick fires: first with napari
idle, then while a training run goes on (the panel runs ``lvseg train`` in a child process and follows its events).
The run fine-tunes the bundled default on 10 EMIDEC cases where the data are present (``--data``), as a user
retrains on corrected cases; otherwise a tiny network trains on phantom pairs. Prints p50 / p95 / max in ms and the
seconds from Start to the first message, the run's start and its first step.
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
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of a table")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" /
                                              "emidec-lge-128"), help="EMIDEC cases: the first 10 are trained on")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lvseg-latency-"))
    os.environ["LVSEG_MODELS_DIR"] = str(work / "models")  # never register into the user's model folder
    os.environ["LVSEG_DATA_DIR"] = str(work / "data")

    import napari

    from napari_lvseg.widgets._latency import LatencyProbe
    from napari_lvseg.widgets._testing import phantom_pair_folder
    from napari_lvseg.widgets.train import TrainWidget

    cases = sorted(p for p in Path(args.data).glob("Case_*") if p.is_dir())[:10]
    viewer = napari.Viewer(show=True)
    for name in ("Segment LV", "Correct and save", "Synthesize", "Train"):   # as the Plugins menu docks them
        widget = viewer.window.add_plugin_dock_widget("napari-lvseg", name)[1]
    panel = widget if isinstance(widget, TrainWidget) else None
    if cases:   # a user's retraining: ten cases, the bundled default fine-tuned with the recipe's defaults
        data = work / "cases"
        data.mkdir()
        for case in cases:
            (data / case.name).symlink_to(case.resolve())
        panel.init_mode.setCurrentIndex(1)
        what = f"fine-tuning {panel.model_picker.current_model()} on {len(cases)} EMIDEC cases"
    else:
        data = phantom_pair_folder(work / "pairs", n_pairs=3, n_slices=4).root
        panel.extra_options = {"width": args.width, "augment": "default", "samples_per_epoch": 400}
        what = f"width {args.width} on phantom pairs"
    panel.add_source(data)
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

    first = {}   # seconds from Start to the first event of each kind
    started = time.monotonic()
    panel.start()
    panel.worker.yielded.connect(lambda event: first.setdefault(event.kind, round(time.monotonic() - started, 2)))
    run_loop_for(120.0, until=lambda: len(panel.logic.losses) >= 1)  # model built, first step done
    probe.start()
    run_loop_for(args.train_seconds, until=lambda: not panel.running)
    probe.stop()
    training = probe.summary()
    steps = len(panel.logic.losses)
    panel.cancel()
    panel.wait_stopped(120)
    viewer.close()

    result = {"idle": idle, "training": training, "training_steps": steps, "threads": args.threads,
              "run": what, "batch_size": args.batch_size, "seconds_to_first": first}
    if args.json:
        print(json.dumps(result))
        return
    print(f"{'':10s} {'ticks':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'max ms':>8s}")
    for name in ("idle", "training"):
        s = result[name]
        print(f"{name:10s} {s['ticks']:6d} {s['p50_ms']:8.2f} {s['p95_ms']:8.2f} {s['max_ms']:8.2f}")
    print(f"({steps} training steps, {what}, batch {args.batch_size}, threads {args.threads})")
    print("seconds from Start to the first " + ", ".join(f"{kind} {s:.1f}" for kind, s in first.items()
                                                         if kind in ("message", "start", "step")))


if __name__ == "__main__":
    main()
