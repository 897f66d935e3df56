"""A pretraining run folder: its paths, its lock, and the random-number state saved with its checkpoints.

One process at a time may use a run folder: :class:`RunFolderLock` holds ``fcntl.flock`` on ``<dir>/.lock``.
The kernel releases the lock when the process exits (even on ``kill -9``), so a stale lock cannot block a
later run; a second process is refused with a message that names the holder's pid.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mhvae_perception.folderlock import FolderBusy, FolderLock


class RunFolderBusy(FolderBusy):
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


class RunFolderLock(FolderLock):
    """The run folder's lock (``<dir>/.lock``): one pretraining or evaluation process at a time."""

    what = "run folder"
    hint = "use another tag=... / run_dir=..."
    busy_error = RunFolderBusy


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
