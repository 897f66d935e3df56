"""Where data lives: the data root (``$MHVAE_DATA_ROOT``, else ``<repo>/data``) and the read-only shared
folder beside the clone."""
from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The repository root: the parent directory of the ``mhvae_perception`` package."""
    return Path(__file__).resolve().parents[2]


def data_root() -> Path:
    """``$MHVAE_DATA_ROOT`` if set, else ``<repo>/data`` (git-ignored). Not created here."""
    env = os.environ.get("MHVAE_DATA_ROOT")
    return Path(env).expanduser() if env else repo_root() / "data"


def shared_data_root() -> Path:
    """Read-only shared data beside the clone: ``<repo>/../shared/data``. Never written to."""
    return repo_root().parent / "shared" / "data"
