"""Data-parallel pretraining with PyTorch's own engine: ``torchrun ... pretrain/run.py with ...``.

torchrun starts one process per rank and sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them (or with
``WORLD_SIZE=1``) run.py is the single process it always was and nothing here does anything.

With W > 1 ranks (docs/PRETRAIN.md, "Several processes"):

* every rank draws the same global batch as one process (the epoch's seeded permutation and dynamic binarisation)
  and keeps its contiguous share (:func:`shard`); the union of the shares is the one-process batch;
* DistributedDataParallel averages the gradients; each share's loss is scaled by ``W * n_rank / n_batch`` so that
  the average is the global batch's mean gradient even when the last batch splits unevenly;
* BatchNorm normalises with each rank's share (PyTorch's SyncBatchNorm has no CPU implementation); its running
  statistics are rank 0's (DDP broadcasts rank 0's buffers before every forward);
* MRD masks and the reparameterisation noise come from a torch generator seeded per (seed, epoch, rank)
  (:func:`rank_seed`): independent draws per item as in one process, not the same numbers;
* rank 0 alone writes (checkpoints of the plain model, logs, figures, TensorBoard, progress bars).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn

from pretrain.settings import SettingsError


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes files or logs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one rank: the process group, DDP and sharding are in use."""
        return self.size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE = World()


def from_env(env: Mapping[str, str] = os.environ) -> World:
    """The world torchrun describes in ``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` (absent: one process)."""
    if "WORLD_SIZE" not in env:
        return SINGLE
    try:
        size, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise SettingsError(f"WORLD_SIZE={env.get('WORLD_SIZE')!r}, RANK={env.get('RANK')!r}, LOCAL_RANK="
                            f"{env.get('LOCAL_RANK')!r} are not integers; start the run with torchrun") from None
    if size < 1 or not 0 <= rank < size:
        raise SettingsError(f"RANK={rank} WORLD_SIZE={size}: the rank must lie in 0..WORLD_SIZE-1; start the run "
                            f"with torchrun")
    return World(rank, local, size)


def rank_device(device: torch.device, world: World) -> torch.device:
    """The rank's device: ``cuda:LOCAL_RANK`` when training on CUDA with several ranks, else ``device``."""
    if not world.active or device.type != "cuda":
        return device
    if device.index is not None:
        raise SettingsError(f"device={device} with {world.size} ranks: each rank uses cuda:LOCAL_RANK; "
                            f"set device=cuda (or auto)")
    return torch.device("cuda", world.local_rank)


@contextlib.contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """The process group for the run (nccl on CUDA, gloo on the CPU), torn down at the end; nothing for one
    process. torchrun's MASTER_ADDR / MASTER_PORT tell the ranks where to meet."""
    if not world.active:
        yield
        return
    device = rank_device(device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=world.rank, world_size=world.size,
                            timeout=datetime.timedelta(minutes=60))  # rank 0 validates and saves while others wait
    try:
        yield
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------------ checks
def check_batch_size(batch_size: int, world: World) -> None:
    """Refuse a global batch that the ranks cannot share equally (before any data is loaded)."""
    if world.active and int(batch_size) % world.size:
        raise SettingsError(f"setting batch_size={batch_size} is not divisible by the {world.size} ranks: each rank "
                            f"takes batch_size / WORLD_SIZE items of every batch; choose a batch_size divisible by "
                            f"{world.size} or another --nproc_per_node / --nnodes")


def check_last_batch(n_items: int, batch_size: int, world: World) -> None:
    """Refuse an epoch whose last, partial batch leaves a rank fewer than 2 items (BatchNorm needs 2)."""
    rest = int(n_items) % int(batch_size)
    if world.active and 0 < rest < 2 * world.size:
        raise SettingsError(f"the epoch's last batch holds {rest} of its {n_items} training items, fewer than 2 per "
                            f"rank for {world.size} ranks; set max_train_batches={n_items // int(batch_size)} to "
                            f"leave it out, or use another batch_size or number of ranks")


def check_same(values: Mapping[str, Any], world: World, what: str = "settings") -> None:
    """Every rank must hold the same ``values`` (JSON-able): raise a SettingsError naming each differing entry
    with the ranks' values. A collective call: every rank calls it at the same point."""
    if not world.active:
        return
    mine = json.loads(json.dumps(dict(values), sort_keys=True, default=str))
    gathered: list = [None] * world.size
    dist.all_gather_object(gathered, mine)
    differing = {k for other in gathered for k in set(other) | set(gathered[0]) if other.get(k) != gathered[0].get(k)}
    if differing:
        listed = "; ".join(f"{k}: " + ", ".join(f"rank {r} has {g.get(k)!r}" for r, g in enumerate(gathered))
                           for k in sorted(differing))
        raise SettingsError(f"the {what} differ across the {world.size} ranks ({listed}). Every rank must run the "
                            f"same command with the same settings and see the same run_dir (a shared filesystem "
                            f"on several machines)")


# ------------------------------------------------------------------------------------------------ training
def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of rank ``rank``'s torch generator in epoch ``epoch`` (its MRD masks and reparameterisation noise):
    a function of the three only, so that a run resumes with any number of ranks."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + int(rank) * 104_729 + 31) % (2 ** 63 - 1)


def shard(batch: Mapping[str, torch.Tensor], world: World) -> tuple[dict, float]:
    """This rank's contiguous share of a global batch and the loss scale ``W * n_rank / n_batch`` (1 for equal
    shares) that makes DDP's average of the ranks' gradients the global batch's mean gradient."""
    if not world.active:
        return dict(batch), 1.0
    n = int(next(iter(batch.values())).shape[0])
    part = {k: torch.tensor_split(v, world.size)[world.rank] for k, v in batch.items()}
    mine = int(next(iter(part.values())).shape[0])
    return part, world.size * mine / n


class _Loss(nn.Module):
    """DDP syncs gradients of what its forward computed: here the model's training loss."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict, epoch: float):
        return self.model.loss(batch, epoch=epoch)


def loss_function(model: nn.Module, world: World, device: torch.device):
    """``model.loss`` for one process; for several ranks the same loss through DistributedDataParallel."""
    if not world.active:
        return model.loss
    ddp = nn.parallel.DistributedDataParallel(_Loss(model), device_ids=[device.index] if device.type == "cuda"
                                              else None)
    return lambda batch, epoch: ddp(batch, epoch)


def sum_over_ranks(values: Mapping[str, torch.Tensor], world: World) -> dict[str, torch.Tensor]:
    """``values`` (scalar tensors) summed over the ranks (unchanged for one process); one collective call."""
    if not world.active or not values:
        return dict(values)
    keys = list(values)
    stacked = torch.stack([values[k].detach().to(torch.float64) for k in keys])
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked.unbind()))


def batch_means(terms: Mapping[str, torch.Tensor], n: int, world: World) -> dict[str, float]:
    """The global batch's means of ``terms`` (this rank's means over its ``n`` items) as floats, the same on
    every rank (so that a NaN check stops them all together); one process: the terms themselves."""
    if not world.active:
        return {k: float(v) for k, v in terms.items()}
    ref = next(iter(terms.values()))
    sums = sum_over_ranks({**{k: v * n for k, v in terms.items()}, "": ref.new_tensor(float(n))}, world)
    count = float(sums.pop(""))
    return {k: float(v) / count for k, v in sums.items()}
