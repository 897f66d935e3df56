"""Shared set-up of the project's sacred experiments (pretrain/, agents/) and of the torch device.

``prepare_experiment(ex)`` gives every command-line experiment the same conventions: a
``FileStorageObserver`` under ``runs/sacred`` unless an observer option was given (``-m``, ``-F``, ``-u``,
...), and captured output (``cout.txt``) without progress-bar frames. ``resolve_device("auto")`` picks CUDA
when it is available, else the CPU, and refuses unknown or unavailable devices before any work is done.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

# sacred imports pkg_resources, which warns on recent setuptools; the warning is about sacred, not this project
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

import torch  # noqa: E402
from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.utils import apply_backspaces_and_linefeeds  # noqa: E402

__all__ = ["OBSERVER_FLAGS", "DEFAULT_OBSERVER_DIR", "prepare_experiment", "resolve_device"]

#: sacred's command-line options that choose an observer (or none, ``--unobserved``).
OBSERVER_FLAGS = ("--mongo_db", "--file_storage", "--sql", "--tiny_db", "--s3", "--gcs", "--queue",
                  "--unobserved", "--neptune", "--slack", "--telegram")
DEFAULT_OBSERVER_DIR = Path("runs") / "sacred"


def prepare_experiment(ex: Experiment, observer_dir: str | Path = DEFAULT_OBSERVER_DIR) -> Experiment:
    """Register the default-observer option hook on ``ex`` and filter progress bars out of captured output.

    sacred calls option hooks for every run; this one acts only on command-line runs (``ex.run_commandline()``,
    recognised by docopt's ``COMMAND`` entry), so programmatic ``ex.run(...)`` calls (tests, reproduce.py) get
    no observer unless they add one. Returns ``ex`` for chaining.
    """
    observer_dir = Path(observer_dir)

    def add_default_observer(options: Mapping[str, Any]) -> None:
        from_command_line = "COMMAND" in options
        if from_command_line and not any(options.get(flag) for flag in OBSERVER_FLAGS):
            ex.observers.append(FileStorageObserver(str(observer_dir)))

    # sacred inspects the hook's signature: its argument must be called ``options``
    ex.option_hook(add_default_observer)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    return ex


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
