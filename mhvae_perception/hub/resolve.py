"""One way to get a model: from a loaded model, a checkpoint path or a shipped model's name.

Wrappers, agents and scripts all call :func:`resolve_model`; it checks a shipped file's SHA-256 (through
:mod:`.pretrained`) and the device before anything is built.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import torch

from ..models.base import MultimodalVAE
from ..models.devices import resolve_device
from . import pretrained
from .checkpoints import load_checkpoint

ModelLike = Union[MultimodalVAE, str, os.PathLike]


def shipped_or_path(model: str | os.PathLike) -> Path:
    """The verified file of a shipped model when ``model`` is one's name, else ``model`` as a path:
    ``MHVAEObservation(env, "pendulum_sound-mhvae-pipeline")`` needs no pretraining.

    A shipped name always means the shipped file (SHA-256 checked), even when a local file has the same name:
    that file is not used unless written as a path (``./name``), and a warning says so."""
    if isinstance(model, str) and model in pretrained.available():
        if Path(model).exists():
            warnings.warn(f"{model!r} is the name of a shipped model and also of a local file; using the shipped "
                          f"model (SHA-256 checked). To use the local file, give it as a path: ./{model}",
                          UserWarning, stacklevel=2)
        return pretrained.path(model)
    return Path(model)


def resolve_model(model: ModelLike, device: str | torch.device = "cpu") -> tuple[MultimodalVAE, Path | None]:
    """A loaded model (put in eval mode) and the checkpoint path it came from (None for an in-memory model)."""
    if isinstance(model, MultimodalVAE):
        return model.eval(), None
    if isinstance(model, (str, os.PathLike)):
        device = resolve_device(device)
        path = shipped_or_path(model)
        if not path.is_file():
            raise FileNotFoundError(f"model {str(model)!r} is neither a checkpoint file nor a shipped model's name; "
                                    f"{pretrained.did_you_mean(str(model))}")
        return load_checkpoint(path, device=device).model.eval(), path
    raise TypeError(f"model must be a loaded MHVAE (MultimodalVAE), a checkpoint path or a shipped model's name, "
                    f"got {type(model).__name__}; load one with mhvae_perception.load_checkpoint(path).model or "
                    f"pass the path (shipped names: mhvae_perception.hub.pretrained.available())")
