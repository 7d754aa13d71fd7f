"""One writer per folder: a run folder, the user model folder, an annotation or synthetic pair folder.

The lock is the OS's (``flock``) on ``<folder>/.lock``: the OS drops it when the process that holds it ends, however
it ends, so a ``kill -9`` never leaves a folder locked. The file itself is removed when the lock is released; a
file left by a killed process is taken over by the next writer. While a folder is locked, nothing else writes in it:
its writer may remove stale temp files there (`atomic.remove_stale_temps`).

Where the file system has no locks (some network mounts) or the OS has no ``flock`` (Windows), the folder is
written unlocked, as before there were locks.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from napari_lvseg.errors import LvsegError

try:
    import fcntl
except ImportError:   # Windows
    fcntl = None

LOCK_FILE = ".lock"


class FolderLock:
    """``with FolderLock(folder, "run folder"):`` ... or `acquire` / `release` for a lock held across calls.

    ``acquire`` makes the folder if it is missing (and `release` removes it again if it is still empty: a refused
    run leaves nothing behind); a second writer is refused with a one-line `LvsegError` naming the folder, or with
    ``wait=True`` waits for the first one to finish.
    """

    def __init__(self, folder, what: str = "folder"):
        self.folder, self.what = Path(folder), what
        self.path = self.folder / LOCK_FILE
        self._fd = None
        self._made = False
        self.held = False

    def acquire(self, wait: bool = False) -> "FolderLock":
        if not self.try_acquire(wait):
            holder = _holder(self.path)
            raise LvsegError(f"in use: another lvseg process{holder} is writing this {self.what}; wait for it to "
                             "finish, or choose another folder", self.folder)
        return self

    def try_acquire(self, wait: bool = False) -> bool:
        """True when this process now holds the folder; False when another one does (never with ``wait``)."""
        from .atomic import check_output_folder

        if self.held:
            return True
        check_output_folder(self.folder, f"is a file: the {self.what} cannot be made there")
        while True:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True, exist_ok=True)
                self._made = True
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:   # the folder was removed by the writer before us (it made it): again
                continue
            if fcntl is None:
                os.close(fd)
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):   # no locks on this file system
                    break
                raise
            # the writer before us removes the file as it lets go: a lock on a removed file locks nothing, so take
            # the lock on the file that is there now
            try:
                current = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                current = False
            if current:
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                break
            os.close(fd)
        self.held = True
        return True

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.unlink(self.path)   # before the lock goes: a writer that opened it now finds it gone and retries
        except FileNotFoundError:
            pass
        if self._made:
            try:
                self.folder.rmdir()   # made for this writer, and nothing was written: a refused run leaves no folder
            except OSError:
                pass
        os.close(fd)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path) -> str:
    """' (pid N)' from the lock file, for the refusal; '' where it cannot be read."""
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
