"""Pretraining datasets of this project's environments: a thin layer over :mod:`mhvae_perception.data.collect`.

The library does the work for any environment; this module keeps the older names (``collect_dataset``,
``load_dataset``, ``default_path``, ``DEFAULT_SIZES``). The file format is the library's (see
``docs/ENVS.md``): ``train_<sensor>`` / ``test_<sensor>`` arrays (images as uint8 0/1), ``train_state`` /
``test_state`` and a JSON ``metadata`` entry, read without pickle.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

import envs  # noqa: F401  (registers the environments and their presets)
from mhvae_perception.data import collect as collector
from mhvae_perception.data.presets import env_preset

DEFAULT_SIZES = {env_id: env_preset(env_id).dataset_sizes for env_id in envs.ENV_IDS}


def default_path(env_id: str) -> Path:
    """``<data root>/envs/<env_id>.npz`` (the default settings' file)."""
    return collector.default_path(env_id)


def collect_dataset(env_id: str, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
                    path: str | os.PathLike | None = None, progress: bool = True,
                    n_envs: int = collector.DEFAULT_N_ENVS) -> Path:
    """Collect and save a train/test dataset of ``env_id`` under a uniform random policy; returns the path.

    ``n_train``/``n_test`` default to the environment's preset sizes (:data:`DEFAULT_SIZES`, else the
    library's generic ones); ``path`` defaults to the library's default path for these settings.
    """
    return collector.collect(env_id, n_train, n_test, seed, policy="random", n_envs=n_envs, progress=progress,
                             path=path)


def load_dataset(path: str | os.PathLike) -> dict[str, Any]:
    """A collected file's arrays as float32 (``train_image``, ``train_sound``, ..., ``train_state`` when
    recorded) and its ``metadata`` dict. ``FileNotFoundError`` / ``ValueError`` for missing / corrupt files."""
    arrays, metadata = collector.read_collected(path)
    out: dict[str, Any] = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    out["metadata"] = metadata
    return out
