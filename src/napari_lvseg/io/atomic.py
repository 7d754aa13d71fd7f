"""Atomic writes: a temp file in the target's folder, flushed, then os.replace, then the folder flushed.

A crash or ``kill -9`` at any moment leaves either the old file or the new one, never half of one. A kill can leave
the temp file (``.<name>.<8 characters>.tmp<suffix>``); `remove_stale_temps` clears them where no one writes.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path

from napari_lvseg.errors import LvsegError


def check_output_folder(folder, blocked: str) -> None:
    """Refuse, before the work, a ``folder`` to be written into (or made) where writing would fail with a bare OS
    error after the work was done: a file stands where it or one of its missing parents must be made (said with
    ``blocked``), or this process may not write in the existing folder it would be made in (no permission, a
    read-only file system)."""
    folder = Path(folder)
    nearest = next((p for p in (folder, *folder.resolve().parents) if p.exists()), None)
    if nearest is None:
        return
    if not nearest.is_dir():
        raise LvsegError(blocked, nearest)
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise LvsegError("folder cannot be written (no permission, or a read-only file system)", nearest)


@functools.cache
def _umask() -> int:
    """The process umask, read once (setting it to read it would race with other threads' file creation)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temp path beside ``path``; on success it replaces ``path``. ``suffix`` keeps e.g. '.nii.gz'."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path) from exc
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes the file 0600; give it the mode a plain write would: the old file's, else 0666 - umask
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
        fsync_folder(path.parent)
    except OSError as exc:
        if tmp not in (str(exc.filename), str(exc.filename2)) and exc.filename is not None:
            raise   # another file's problem (e.g. one the writer reads): its own name stands
        raise _naming(exc, path) from exc
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fsync_folder(folder) -> None:
    """Flush a folder's entries: a rename in it survives a power cut only once its folder is on disk too."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:   # Windows opens no folders; nothing to flush there
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):   # file systems that cannot flush a folder
            raise
    finally:
        os.close(fd)


# what mkstemp makes in `atomic_path`: the target's name, 8 random characters, .tmp and the target's suffixes
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^/]*)?")


def remove_stale_temps(folder) -> list:
    """Remove the temp files `atomic_path` left in ``folder`` (a kill between a temp file and its rename); return
    their paths. Only for a folder no one else writes now (its `lock.FolderLock` held): a live writer's temp file
    is not stale."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if _TEMP_NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
            removed.append(Path(entry.path))
    return removed


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` told of ``path``, the file the user named: the temp file beside it is ours, not theirs."""
    return OSError(exc.errno, exc.strerror, str(path)) if exc.errno is not None else exc


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path, suffix="") as tmp:
        Path(tmp).write_text(text)


def json_safe(value):
    """Plain JSON values: NaN/Inf (a class absent from the data) -> null, numpy scalars -> Python numbers."""
    import math

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path, value) -> None:
    """Strict JSON (no NaN), written atomically."""
    import json

    write_text_atomic(path, json.dumps(json_safe(value), indent=2, allow_nan=False))


@contextmanager
def atomic_paths(*paths):
    """`atomic_path` for several files that belong together (labels and their uncertainty map): temp paths beside
    each, and only once the block has written every one of them does each replace its file. A failure while
    writing (a full disk at the second file) replaces none of them: the old files stay, all of them."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield [stack.enter_context(atomic_path(path)) for path in paths]
