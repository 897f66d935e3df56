"""Training precision: the matrix products of every ``nn.Linear`` in bfloat16, everything else in float32.

On a CPU with bfloat16 instructions (AVX-512 BF16) the products at the paper's MNIST shapes run about twice as
fast in bfloat16, and they are about half of a training step. ``torch.autocast`` also runs the element-wise
work of the loss in bfloat16 (its KL terms come out rounded to bfloat16), and compiled it was measured no faster
than this path (docs/RESULTS.md); this path rounds only the two operands of each product: the input and the
weight are cast to bfloat16, the product
comes back as float32 and the bias is added in float32. Parameters, their gradients, Adam's state, the loss and
every evaluation stay float32. Compiled (``torch.compile``), the casts fuse into the neighbouring element-wise
kernels; ``pretrain/run.py with precision=bf16`` does both.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossOutput

#: the training precisions ``pretrain/run.py`` accepts: float32 throughout, or bfloat16 products (this module)
PRECISIONS = ("fp32", "bf16")


class _Bfloat16ProductLinear(nn.Linear):
    """An ``nn.Linear`` whose product runs in bfloat16 (operands rounded, result and bias in float32); it only
    ever exists inside :func:`bfloat16_products`, which swaps the class of existing layers in and out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x.to(torch.bfloat16), self.weight.to(torch.bfloat16)).to(x.dtype)
        return out if self.bias is None else out + self.bias


@contextlib.contextmanager
def bfloat16_products(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, every plain ``nn.Linear`` of ``model`` computes its product in bfloat16; afterwards
    (also after an error) they are plain ``nn.Linear`` layers again. The parameters are the same tensors
    throughout (float32, as are their gradients), so the optimizer, checkpoints and state dict never change."""
    linears = [m for m in model.modules() if type(m) is nn.Linear]
    for m in linears:
        m.__class__ = _Bfloat16ProductLinear
    try:
        yield model
    finally:
        for m in linears:
            m.__class__ = nn.Linear


def training_context(model: nn.Module, precision: str) -> contextlib.AbstractContextManager:
    """The context a training step of ``precision`` (one of :data:`PRECISIONS`) runs in."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {PRECISIONS}")
    return bfloat16_products(model) if precision == "bf16" else contextlib.nullcontext(model)


def compile_loss(loss_fn: Callable[..., LossOutput], backend: str = "inductor") -> Callable[..., LossOutput]:
    """``loss_fn(batch, epoch=...)`` compiled with static shapes (the epoch's last, smaller batch gets a graph of
    its own), the epoch passed in as a 0-d float64 tensor: a Python float would be a constant of the graph, so
    every step's new epoch would recompile it until dynamo's recompile limit (8) sends the rest of training back
    to eager Python (measured: the first bf16 runs trained no faster than float32). The warm-up weights come back
    as floats, as from the eager loss."""
    compiled = torch.compile(loss_fn, dynamic=False, backend=backend)

    def loss(batch, epoch: float = 0.0) -> LossOutput:
        out = compiled(batch, epoch=torch.tensor(float(epoch), dtype=torch.float64))
        return LossOutput(out.loss, out.terms, {k: float(v) for k, v in out.schedule.items()})

    return loss
