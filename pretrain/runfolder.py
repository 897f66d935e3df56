"""A pretraining run folder: its paths, its lock, and the random-number state saved with its checkpoints.

One process at a time may use a run folder: :class:`RunFolderLock` holds ``fcntl.flock`` on ``<dir>/.lock``.
The kernel releases the lock when the process exits (even on ``kill -9``), so a stale lock cannot block a
later run; a second process is refused with a message that names the holder's pid.
"""
from __future__ import annotations

import fcntl
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch


class RunFolderBusy(RuntimeError):
    """Another process holds the run folder's lock."""


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps its outputs (independent of sacred's observer folder)."""

    dir: Path

    @property
    def checkpoints(self) -> Path:
        return self.dir / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.dir / "tb"


class RunFolderLock:
    """Exclusive, non-blocking ``flock`` on ``<folder>/.lock`` for the life of a ``with`` block (or process)."""

    def __init__(self, folder: str | os.PathLike, what: str = "run folder"):
        self.folder = Path(folder)
        self.what = what
        self._fd: Optional[int] = None

    def acquire(self) -> "RunFolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderBusy(
                f"the {self.what} {self.folder} is in use by another process (pid {holder}); wait for it to finish, "
                f"or use another tag=... / run_dir=... (the lock is released automatically when that process ends)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunFolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# ------------------------------------------------------------------------------------------------ RNG state
def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the generator that fixes epoch ``epoch``'s data order and dynamic binarisation."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2 ** 63 - 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """torch / CUDA / numpy / python RNG states as tensors, numbers and strings (loadable with weights_only)."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": "none" if py_state[2] is None else float(py_state[2])},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only when saved and CUDA is available)."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()),
                     None if p["gauss_next"] == "none" else p["gauss_next"]))
