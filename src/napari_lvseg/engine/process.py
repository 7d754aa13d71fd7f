"""Training in a child process: `lvseg train --options - --events jsonl`, its events read back as they come.

The Train panel runs training this way so that napari stays light (no training in its threads, under its GIL),
a crash or an out-of-memory kill ends the child and not the viewer, and the memory of a run is returned when it
ends. The child is the CLI itself, so the panel and ``lvseg train`` share one code path.

The pipe protocol (`TrainOptions` and `Event` as JSON):
- stdin, first line: the run's options; then one line per stop request, the reason ("paused", "cancelled", ...).
  End of input (the parent is gone, e.g. napari was killed) stops the run at the next step with its checkpoint.
- stdout: one `Event` per line (the engine's, with its start-up messages before the first step).
- stderr: warnings, and the error of a run that fails (exit 2) as one JSON line ``{"error": {...}}`` (`error_line`),
  an `OptionError` with its option's name, so that the panel words it its own way.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import deque

from ..errors import LvsegError
from .events import Event, StopToken
from .schema import OptionError


def child_command(resume: bool = False, register: bool = False) -> list:
    """The command line of the child: this Python, this package's CLI."""
    command = [sys.executable, "-m", "napari_lvseg.cli", "train", "--options", "-", "--events", "jsonl"]
    return command + (["--resume"] if resume else []) + (["--register"] if register else [])


def process_events(options, stop: StopToken | None = None, resume: bool = False, on_child=None):
    """Run ``options`` (`TrainOptions`) in a child process; yield its `Event`s. A stop request on ``stop`` reaches
    the child, which stops at the next step with its checkpoint. A child that fails raises its own one-line error
    (LvsegError); one that dies (killed, out of memory) raises an LvsegError that says so, naming the run folder.
    ``on_child`` is called with the child's `subprocess.Popen` once it runs."""
    stop = stop or StopToken()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(child_command(resume), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
    if on_child is not None:
        on_child(child)
    errors: deque = deque(maxlen=20)   # the end of stderr: a failing child's message is its last line
    readers = [threading.Thread(target=_collect, args=(child.stderr, errors), daemon=True),
               threading.Thread(target=_forward_stop, args=(stop, child), daemon=True)]
    try:
        child.stdin.write(options.to_line() + "\n")
        child.stdin.flush()
        for thread in readers:
            thread.start()
        last = None
        for line in child.stdout:
            event = parse_event(line)
            if event is not None:
                last = event
                yield event
        code = child.wait()
    finally:
        if child.poll() is None:   # the consumer left early (napari's worker quit): the run stops as if paused
            _send(child, "stopped")
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
    readers[0].join(timeout=5)
    # the CLI's exit 1: a run that stopped on request (paused, cancelled), which its last event says
    if code != 0 and not (code == 1 and last is not None and last.kind == "stopped"):
        raise child_failure(code, errors, options.out)


def parse_event(line: str) -> Event | None:
    """An `Event` from one line of the child's stdout; None for anything else a library printed there."""
    try:
        data = json.loads(line)
        return Event(**data) if isinstance(data, dict) and "kind" in data else None
    except (ValueError, TypeError):
        return None


def child_failure(code: int, errors, out) -> LvsegError:
    """The error of a child that ended with ``code``: its own one-line message, or how it died."""
    lines = [line.strip() for line in errors if line.strip()]
    if code < 0:   # killed by a signal: nothing of its own to say
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return LvsegError(f"the training process was killed ({name}; out of memory, or stopped from outside); "
                          "Resume continues from its last checkpoint", out)
    if lines and lines[-1].startswith('{"error"'):
        return read_error(lines[-1])
    if lines and ": error: " in lines[-1]:
        return LvsegError(lines[-1].split(": error: ", 1)[1])
    said = f": {lines[-1]}" if lines else ""
    return LvsegError(f"the training process ended with exit code {code}{said}", out)


def error_line(exc: LvsegError) -> str:
    """The child's error as one JSON line on stderr: an `OptionError`'s option, problem and refs, or a message."""
    error = exc.to_dict() if isinstance(exc, OptionError) else {
        "message": exc.message, "path": None if exc.path is None else str(exc.path)}
    return json.dumps({"error": error})


def read_error(line: str) -> LvsegError:
    """The error of `error_line`, as it was raised in the child."""
    try:
        error = json.loads(line)["error"]
        if "option" in error:
            return OptionError(error["option"], error["problem"], error.get("path"), tuple(error.get("refs", ())))
        return LvsegError(error["message"], error.get("path"))
    except (ValueError, KeyError, TypeError):
        return LvsegError(f"the training process failed: {line.strip()}")


def _collect(stream, lines: deque) -> None:
    for line in stream:
        lines.append(line)


def _send(child, text: str) -> None:
    try:
        child.stdin.write(text + "\n")
        child.stdin.flush()
    except (BrokenPipeError, OSError, ValueError):   # the child has ended
        pass


def _forward_stop(stop: StopToken, child) -> None:
    """Wait for a stop request and pass its reason on to the child (once: it stops at the next step)."""
    while child.poll() is None:
        if stop.wait(0.2):
            _send(child, stop.reason or "stopped")
            return


def read_control(stop: StopToken, stream=None) -> threading.Thread:
    """In the child: a thread that turns lines on ``stream`` (stdin) into stop requests, and its end into one."""
    stream = stream or sys.stdin

    def follow():
        for line in stream:
            if line.strip():
                stop.stop(line.strip())
                return
        stop.stop("the front end is gone")

    thread = threading.Thread(target=follow, daemon=True, name="lvseg-control")
    thread.start()
    return thread
