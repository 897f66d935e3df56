"""One way to get a model: from a loaded model, a checkpoint path or a shipped model's name.

Wrappers, agents and scripts all call :func:`resolve_model`; it checks a shipped file's SHA-256 (through
:mod:`.pretrained`) and the device before anything is built.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from ..models.base import MultimodalVAE
from ..models.devices import resolve_device
from . import pretrained
from .checkpoints import load_checkpoint

ModelLike = Union[MultimodalVAE, str, os.PathLike]


def shipped_or_path(model: str | os.PathLike) -> Path:
    """A checkpoint path as given, or the verified file of a shipped model when ``model`` names one (and is not
    an existing file): ``MHVAEObservation(env, "pendulum_sound-mhvae")`` needs no pretraining."""
    if isinstance(model, str) and not Path(model).exists() and model in pretrained.available():
        return pretrained.path(model)
    return Path(model)


def resolve_model(model: ModelLike, device: str | torch.device = "cpu") -> tuple[MultimodalVAE, Path | None]:
    """A loaded model (put in eval mode) and the checkpoint path it came from (None for an in-memory model)."""
    if isinstance(model, MultimodalVAE):
        return model.eval(), None
    if isinstance(model, (str, os.PathLike)):
        device = resolve_device(device)
        path = shipped_or_path(model)
        return load_checkpoint(path, device=device).model.eval(), path
    raise TypeError(f"model must be a loaded MHVAE (MultimodalVAE), a checkpoint path or a shipped model's name, "
                    f"got {type(model).__name__}; load one with mhvae_perception.load_checkpoint(path).model or "
                    f"pass the path (shipped names: mhvae_perception.hub.pretrained.available())")
