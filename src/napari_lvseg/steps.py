"""Long operations as generators of progress steps: a GUI worker runs them step by step (progress bar, Stop between
steps); scripts, the CLI and tests run them to their end with `result_of`."""

from __future__ import annotations


def result_of(steps, on_step=None):
    """Run a generator of steps to its end and give its return value: the synchronous form of a stoppable
    operation. ``on_step`` (if given) is called with each step's value, e.g. to draw a progress bar."""
    while True:
        try:
            value = next(steps)
        except StopIteration as end:
            return end.value
        if on_step is not None:
            on_step(value)
