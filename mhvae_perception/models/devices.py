"""The torch device: ``resolve_device("auto")`` picks CUDA when it is available, else the CPU, and refuses
unknown or unavailable devices before any work is done."""
from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (and other torch
    device strings) are checked to exist here. Raises ``ValueError`` naming the device and what to use."""
    if isinstance(name, torch.device):
        name = str(name)
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"device must be a string such as 'auto', 'cpu', 'cuda' or 'cuda:0', got {name!r}")
    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available on this machine; "
                             f"use device=cpu or device=auto")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r} does not exist: this machine has {count} CUDA device(s) "
                             f"(cuda:0 .. cuda:{count - 1}); use device=auto")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r} is not available on this machine; use device=cpu or device=auto")
    elif device.type != "cpu":
        raise ValueError(f"device {name!r} is not supported here: use 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device
