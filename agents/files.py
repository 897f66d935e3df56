"""The files of an agent folder: names read from its JSON kept inside the folder, one training at a time per
folder (an OS lock), and saves that replace a set of files only once every new file is completely written.

* :func:`contained_path` refuses a file name read from a JSON file (``agent.json``'s ``policy_file``,
  ``resume.json``'s file list) that is absolute, climbs out with ``..`` or leads out through a symbolic link:
  a crafted or edited description cannot make the loader read (or hash) a file elsewhere.
* :class:`AgentFolderLock` holds ``fcntl.flock`` on ``<folder>/.lock`` (as pretraining's run-folder lock does);
  the kernel releases it when the holder exits, even on ``kill -9``, so a stale lock never blocks a later run.
* :func:`staged_writes` writes every file of a save to a temporary file beside its target, flushed to disk, and
  renames them over the targets only when all are written. A full disk (``ENOSPC``/``EDQUOT``, or torch's
  writer failing with "unexpected pos" / "file write failed") raises :class:`AgentDiskFullError`; the previous
  files are left as they were and the temporary files are removed.
"""
from __future__ import annotations

import errno
import os
import re
from contextlib import contextmanager
from pathlib import Path, PurePath
from typing import Any, BinaryIO, Callable, Iterator, Optional

from mhvae_perception.folderlock import FolderBusy, FolderLock

LOCK_FILE = ".lock"
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
#: what torch's zip writer says when a write fails (it drops the errno): "unexpected pos 4544 vs 4432",
#: "PytorchStreamWriter failed writing file data/0: file write failed"
_TORCH_WRITE_FAILED = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed")
_TEMP_NAME = re.compile(r"^\..+\.tmp-\d+$")


class AgentFileError(ValueError):
    """An agent folder that cannot be loaded safely (old pickle-based format, tampered or foreign files)."""


class AgentFolderBusy(FolderBusy):
    """Another process holds the agent folder's lock (a training is running there)."""


class AgentDiskFullError(OSError):
    """A save ran out of disk space; the previous saved files are intact."""


# ------------------------------------------------------------------------------------------- contained paths
def contained_path(folder: str | os.PathLike, name: Any, source: str) -> Path:
    """``folder / name`` for a relative file name read from ``source`` (a JSON file in ``folder``).

    Refuses (:class:`AgentFileError`) anything that is not a non-empty relative path staying inside ``folder``
    once symbolic links are resolved: an absolute path, a ``..`` part, or a link pointing out of the folder."""
    folder = Path(folder)
    if not isinstance(name, str) or not name.strip() or "\x00" in name:
        raise AgentFileError(f"{source} names the file {name!r}; expected a file name inside {folder}. The "
                             f"description was edited or crafted: restore it or retrain the agent")
    relative = PurePath(name)
    inside = not relative.is_absolute() and ".." not in relative.parts
    path = folder / relative
    if inside:
        root, real = folder.resolve(), path.resolve()
        inside = real == root or root in real.parents
    if not inside:
        raise AgentFileError(f"{source} names the file {name!r}, which lies outside the agent folder {folder}; the "
                             f"files of an agent folder are read only from inside it. The description was edited "
                             f"or crafted: restore it or retrain the agent")
    return path


# ------------------------------------------------------------------------------------------------- the lock
class AgentFolderLock(FolderLock):
    """The agent folder's lock (``<folder>/.lock``): one training at a time."""

    what = "agent folder"
    hint = "train into another folder (run_dir=... for agents/train.py, out_dir=... for agents/transfer.py)"
    busy_error = AgentFolderBusy


def remove_leftover_temp_files(folder: Path) -> list[Path]:
    """Remove the temporary files (``.<name>.tmp-<pid>``) that killed saves left in ``folder`` and its
    subfolders. Only call it while holding the folder's lock: then no other process is writing there."""
    removed = []
    if folder.is_dir():
        for candidate in folder.rglob(".*.tmp-*"):
            if _TEMP_NAME.match(candidate.name) and candidate.is_file():
                candidate.unlink()
                removed.append(candidate)
    return removed


# ------------------------------------------------------------------------------------------- staged writes
def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an exception it came from) is a full disk: ENOSPC/EDQUOT, or torch's writer failing
    without an errno ("unexpected pos", "file write failed")."""
    seen: set[int] = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if isinstance(current, RuntimeError) and _TORCH_WRITE_FAILED.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
    return False


class _Stage:
    """The temporary files of one save, in the order their targets are to be replaced."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.pending: list[tuple[Path, Path]] = []

    def write(self, target: Path, write: Callable[[BinaryIO], None]) -> Path:
        """Write ``target``'s new content into a temporary file beside it (flushed to disk); returns that file."""
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        self.pending.append((tmp, target))
        try:
            with open(tmp, "wb") as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
        except (OSError, RuntimeError) as err:
            if isinstance(err.__context__, KeyboardInterrupt):  # Ctrl-C mid-write: torch's writer then says
                raise err.__context__ from None                 # "unexpected pos"; it is not a full disk
            if is_disk_full(err):
                targets = ", ".join(str(t) for _, t in self.pending)
                raise AgentDiskFullError(
                    errno.ENOSPC,
                    f"the disk is full: saving {self.what} failed while writing {target} "
                    f"({getattr(err, 'strerror', None) or str(err).splitlines()[0]}). Nothing was replaced: the "
                    f"previous saved files ({targets}) are intact and the temporary files were removed. Free space "
                    f"on {target.parent} and re-run") from err
            raise
        return tmp


@contextmanager
def staged_writes(what: str) -> Iterator[_Stage]:
    """``with staged_writes("the agent") as stage: stage.write(path, fn)...``: every file is written in full to
    a temporary file first; the targets are replaced (``os.replace``, in the order written) only when the block
    ends without an error. On any error the temporary files are removed and the targets are untouched."""
    stage = _Stage(what)
    try:
        yield stage
        for tmp, target in stage.pending:
            os.replace(tmp, target)
    finally:
        for tmp, _ in stage.pending:
            if tmp.exists():
                tmp.unlink()
