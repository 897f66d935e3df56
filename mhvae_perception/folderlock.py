"""One process at a time in a folder (a pretraining run, an evaluation, an agent): an exclusive, non-blocking
``fcntl.flock`` on ``<folder>/.lock``, released by the OS when the holder dies, so a killed run never leaves a
stale lock. The holder's pid is written into the lock file for the message a second process gets."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

LOCK_FILE = ".lock"


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """The lock of ``folder`` for the life of a ``with`` block (or until :meth:`release`).

    Subclasses name what the folder is (``what``), how to go around a busy folder (``hint``) and the error raised
    (``busy_error``)."""

    what = "folder"
    hint = "use another folder"
    busy_error: type[FolderBusy] = FolderBusy

    def __init__(self, folder: str | os.PathLike, what: Optional[str] = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        if what is not None:
            self.what = what
        self._fd: Optional[int] = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise self.busy_error(
                f"the {self.what} {self.folder} is in use by another process (pid {holder}), which holds its lock "
                f"{self.path}; wait for it to finish, or {self.hint} (the lock is released automatically when that "
                f"process ends)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
