"""The training engine: one generator of progress events for every task, front end and process.

`train` yields `Event`s and stops between steps when its `StopToken` is set. The run folder holds
``options.json``, ``events.jsonl``, ``last.pt`` (every ``checkpoint_every`` steps and at each epoch
end) and ``best.pt``, and the best model exported as ``card.json`` + ``model.safetensors`` so the run
folder itself is a usable ``--model``. Under torchrun every rank runs this; rank 0 writes.
"""

from __future__ import annotations

import errno
import math
import os
import time
from pathlib import Path
from typing import Iterator

from ..errors import LvsegError
from ..io.lock import LOCK_FILE
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import barrier, broadcast_flag, init_world, shutdown
from .events import Event, StopToken
from .options import TrainOptions
from .schema import OptionError

NO_VALIDATION = ("no validation case: the model kept is the last one, not the best (hold one case out to see how "
                 "the model does on a case it does not train on: --hold-out 1)")


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LvsegError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError("device", "cuda asked for, but no CUDA device is available")
    return device


def make_task(options, device, world):
    if options.task == "segmentation":
        from .segmentation import SegmentationTask

        return SegmentationTask(options, device, world)
    from .synthesis import SynthesisTask

    return SynthesisTask(options, device, world)


def prepare_run(options: TrainOptions, resume: bool) -> tuple[TrainOptions, dict | None]:
    """Options and checkpoint to start from. On resume the saved options win, except ``epochs`` (when given: None
    keeps the run's own), ``threads``, ``workers`` and ``device``."""
    out = Path(options.out)
    last = out / "last.pt"
    if resume:
        if not last.exists() and not (out / "options.json").is_file():
            raise LvsegError("nothing to resume: no last.pt checkpoint", out)
        saved = TrainOptions.load(out / "options.json")
        # a run stopped (killed) before its first checkpoint has nothing done: it starts again, with its options
        checkpoint = load_checkpoint(last) if last.exists() else {}
        done, partial = checkpoint.get("epoch", 0), bool(checkpoint.get("step_in_epoch", 0))
        if options.epochs is not None and options.epochs < done + partial:   # it would end at once, unfinished
            raise OptionError("epochs", f"the run has {done} epoch(s) done{' and part of the next' if partial else ''}"
                              f": {options.epochs} is fewer (the total, counting epochs done); give {done + partial} "
                              "or more", out)
        if options.epochs is not None:
            saved.epochs = options.epochs
        saved.threads = options.threads
        saved.workers = options.workers
        saved.device = options.device
        saved.out = str(out)
        return saved, checkpoint or None
    if last.exists():
        raise OptionError("out", "already holds a training run (use {resume}, or another run folder)", out,
                          refs=("resume",))
    if (out / "model.safetensors").exists():  # a new run would replace that model with its own
        raise LvsegError("folder already holds a model; choose a new run folder", out)
    # e.g. a data folder: the run's files would mix with its own (the lock file is this run's)
    if out.is_dir() and any(p.name != LOCK_FILE for p in out.iterdir()):
        raise LvsegError("run folder is not empty: choose a new or empty folder", out)
    return options, None


def rng_state(world) -> dict:
    """Every rank's CPU and CUDA generator states (dropout noise must continue exactly on resume)."""
    import torch

    state = {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    if not world.distributed:
        return {"ranks": [state]}
    import torch.distributed as dist

    gathered = [None] * world.size
    dist.all_gather_object(gathered, state)
    return {"ranks": gathered}


def restore_rng(saved, world) -> None:
    import torch

    if isinstance(saved, torch.Tensor):  # checkpoints of the first release: one CPU state
        torch.set_rng_state(saved)
        return
    ranks = saved["ranks"]
    mine = ranks[world.rank] if world.rank < len(ranks) else ranks[0]
    torch.set_rng_state(mine["cpu"])
    if mine["cuda"] and torch.cuda.is_available() and len(mine["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(mine["cuda"])


def train(options: TrainOptions, stop: StopToken | None = None, resume: bool = False) -> Iterator[Event]:
    """Run (or resume) training, yielding progress events; see the module docstring.

    The run folder is locked while the run lasts: a second writer is refused (two runs started together would
    otherwise both pass the checks of what the folder holds, then mix their files). Temp files a killed run left
    there are removed. A write that fails (a full disk) ends in one line naming the folder; what was saved stays."""
    from ..io.atomic import remove_stale_temps
    from ..io.lock import FolderLock

    out = Path(options.out)
    lock = FolderLock(out, "run folder") if int(os.environ.get("RANK", "0")) == 0 else None   # rank 0 writes
    if lock is not None:
        lock.acquire()
    try:
        if lock is not None:
            remove_stale_temps(out)
        yield from _train(options, stop, resume)
    except OSError as exc:
        written = exc.filename is not None and Path(exc.filename).parent.resolve() == out.resolve()
        if not (written or exc.errno in (errno.ENOSPC, errno.EDQUOT)):
            raise
        what = exc.strerror or type(exc).__name__
        if written:
            what += f", writing {Path(exc.filename).name}"
        raise LvsegError(f"cannot write the run folder ({what}): training stopped; its checkpoints and model are as "
                         "last saved (--resume continues)", out) from None
    finally:
        if lock is not None:
            lock.release()


def _train(options: TrainOptions, stop: StopToken | None, resume: bool) -> Iterator[Event]:
    import torch

    options, checkpoint = prepare_run(options, resume)
    options.validate()
    if checkpoint is None:
        options.check_new_run()
    stop = stop or StopToken()
    threads_before = torch.get_num_threads()  # given back at the end: the GUI segments after training
    if options.threads:
        torch.set_num_threads(int(options.threads))
    world = init_world(resolve_device(options.device))
    device = world.device
    out = Path(options.out)
    log, task = None, None
    try:
        torch.manual_seed(options.seed + world.rank)
        task = make_task(options, device, world)
        for text in task.setup():
            yield Event("message", epochs=options.epochs, message=text)
        steps_per_epoch = task.steps_per_epoch()
        total_steps = steps_per_epoch * options.epochs
        epoch0, step_in_epoch, best, elapsed0 = 0, 0, -math.inf, 0.0
        if checkpoint is not None:
            try:
                task.load_state_dict(checkpoint["task"])
            except (KeyError, RuntimeError, ValueError) as exc:
                raise LvsegError(f"checkpoint does not fit this run ({type(exc).__name__})", out / "last.pt") from None
            restore_rng(checkpoint["rng"], world)
            epoch0, step_in_epoch = checkpoint["epoch"], checkpoint["step_in_epoch"]
            best, elapsed0 = checkpoint["best"], checkpoint["elapsed"]
        if world.is_main:
            out.mkdir(parents=True, exist_ok=True)
            options.save(out / "options.json")
            log = open(out / "events.jsonl", "a")

        def emit(event: Event) -> Event:
            if log is not None:
                log.write(event.to_json() + "\n")
                log.flush()
            return event

        def checkpoint_to(name, epoch, step_in):
            """Called on every rank (the RNG states are gathered); rank 0 writes."""
            state = {"task": task.state_dict(), "rng": rng_state(world), "epoch": epoch,
                     "step_in_epoch": step_in, "best": best, "elapsed": elapsed0 + (time.time() - t0),
                     "options": options.to_json()}
            if world.is_main:
                save_checkpoint(out / name, state)

        t0 = time.time()
        global_step = epoch0 * steps_per_epoch + step_in_epoch
        start_step = global_step
        message = (f"resuming {out} at epoch {epoch0 + 1}, step {global_step} of {total_steps}"
                   if checkpoint is not None else f"training {options.task} in {out}")
        if epoch0 >= options.epochs:   # a finished run: not "at epoch 3" of 2
            message = f"resuming {out}: all {options.epochs} epoch(s) done, step {global_step} of {total_steps}"
        yield emit(Event("start", epoch=min(epoch0 + 1, options.epochs), epochs=options.epochs, step=global_step,
                         total_steps=total_steps, message=message + f" ({task.describe()})"))
        if task.data is not None and not task.data.val_sets:   # said once, and kept in sight by the front ends
            yield emit(Event("warning", epoch=epoch0 + 1, epochs=options.epochs, step=global_step,
                             total_steps=total_steps, message=NO_VALIDATION))
        if global_step < total_steps:   # the first step is the slowest (a first batch, memory set up): said
            yield Event("message", epoch=epoch0 + 1, epochs=options.epochs, step=global_step, total_steps=total_steps,
                        message=f"first step: a batch of {task.samples_per_step()} samples")
        for epoch in range(epoch0, options.epochs):
            task.begin_epoch(epoch)
            for step in range(step_in_epoch, steps_per_epoch):
                if broadcast_flag(world, stop.requested):
                    checkpoint_to("last.pt", epoch, step)
                    yield emit(Event("stopped", epoch=epoch + 1, epochs=options.epochs, step=global_step,
                                     total_steps=total_steps, elapsed=elapsed0 + time.time() - t0,
                                     message=f"{stop.reason or 'stopped'}: checkpoint kept", path=str(out / "last.pt")))
                    return
                losses = task.train_step(epoch, step)
                global_step += 1
                took = time.time() - t0
                rate = (global_step - start_step) / took if took > 0 else None
                eta = (total_steps - global_step) / rate if rate else None
                yield emit(Event("step", epoch=epoch + 1, epochs=options.epochs, step=global_step,
                                 total_steps=total_steps, losses=losses, elapsed=elapsed0 + took, eta=eta,
                                 samples_per_s=rate * task.samples_per_step() if rate else None))
                if global_step % options.checkpoint_every == 0 and step + 1 < steps_per_epoch:
                    checkpoint_to("last.pt", epoch, step + 1)
            step_in_epoch = 0
            metrics = {}
            if (epoch + 1) % options.validate_every == 0 or epoch + 1 == options.epochs:
                metrics = task.validate() if world.is_main else {}
                if world.is_main and metrics:   # no validation cases: nothing to report
                    yield emit(Event("validation", epoch=epoch + 1, epochs=options.epochs, step=global_step,
                                     total_steps=total_steps, metrics=metrics, elapsed=elapsed0 + time.time() - t0))
            # only rank 0 validates; the others learn whether it was the best through the broadcast
            score = task.score(metrics) if metrics else -math.inf
            improved = broadcast_flag(world, score > best)
            if improved:
                best = score
                checkpoint_to("best.pt", epoch + 1, 0)
                if world.is_main:
                    task.export(out, metrics, epoch + 1)
                    yield emit(Event("best", epoch=epoch + 1, epochs=options.epochs, step=global_step,
                                     total_steps=total_steps, metrics=metrics, path=str(out),
                                     message=f"best so far ({task.score_name} {score:.4f})"))
            checkpoint_to("last.pt", epoch + 1, 0)
            if world.is_main:
                yield emit(Event("checkpoint", epoch=epoch + 1, epochs=options.epochs, step=global_step,
                                 total_steps=total_steps, path=str(out / "last.pt")))
            barrier(world)
        if world.is_main and best == -math.inf:
            task.export(out, {}, options.epochs)  # no validation data: the last model is the model
        yield emit(Event("done", epoch=options.epochs, epochs=options.epochs, step=global_step,
                         total_steps=total_steps, elapsed=elapsed0 + time.time() - t0, path=str(out),
                         message=f"finished; model in {out}"))
    finally:
        if log is not None:
            log.close()
        if task is not None and task.data is not None:
            task.data.close()
        shutdown(world)
        torch.set_num_threads(threads_before)
