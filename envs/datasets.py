"""Pretraining datasets: observations of the multimodal environments under a uniform random policy.

File format (one ``np.savez_compressed`` file):

- ``train_image``, ``test_image``: uint8 0/1, shape (N, 2, H, W) (the stacked image observations);
- ``train_sound``, ``test_sound``: float32, shape (N, *sound observation shape);
- ``metadata``: a JSON string (env_id, seed, policy, n_train, n_test, observation shapes, versions, ...).
"""
from __future__ import annotations

import json
import os
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the environments)
from mhvae_perception.data import data_root
from mhvae_perception.version import __version__

DEFAULT_SIZES = {"PendulumSound-v0": (20_000, 2_000), "Hyperhot-v0": (32_000, 8_000)}
KEYS = ("train_image", "train_sound", "test_image", "test_sound", "metadata")
TEST_SEED_OFFSET = 1  # the test part comes from an independent stream seeded with seed + 1


def default_path(env_id: str) -> Path:
    """``<data root>/envs/<env_id>.npz``."""
    return data_root() / "envs" / f"{env_id}.npz"


def collect_observations(env_id: str, n: int, seed: int, progress: bool = False, desc: str = "") -> dict[str, np.ndarray]:
    """``n`` observations (including those returned by ``reset``) of ``env_id`` under a uniform random policy.

    The environment is reset with ``seed`` once, then without a seed at each episode end; the action space
    is seeded with ``seed``. Returns ``{"image": uint8 (n, ...), "sound": float32 (n, ...)}``.
    """
    env = gym.make(env_id)
    space = env.observation_space
    image = np.empty((n, *space["image"].shape), dtype=np.uint8)
    sound = np.empty((n, *space["sound"].shape), dtype=np.float32)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc=desc or env_id, unit="obs", mininterval=0.5)
    for i in range(n):
        image[i] = obs["image"]
        sound[i] = obs["sound"]
        if i == n - 1:
            break
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.update(1)
        bar.close()
    env.close()
    return {"image": image, "sound": sound}


def collect_dataset(
    env_id: str,
    n_train: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    path: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Collect and save a train/test dataset of ``env_id`` observations; returns the file's path.

    ``n_train``/``n_test`` default to :data:`DEFAULT_SIZES`; ``path`` defaults to :func:`default_path`.
    Train observations come from a stream seeded with ``seed``, test ones from one seeded with ``seed + 1``.
    """
    if env_id not in DEFAULT_SIZES:
        raise ValueError(f"Unknown env_id {env_id!r}; choose from {sorted(DEFAULT_SIZES)}")
    d_train, d_test = DEFAULT_SIZES[env_id]
    n_train = d_train if n_train is None else int(n_train)
    n_test = d_test if n_test is None else int(n_test)
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be >= 1, got {n_train}, {n_test}")
    path = Path(path) if path is not None else default_path(env_id)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # np.savez_compressed would append it anyway
    path.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    train = collect_observations(env_id, n_train, seed, progress, f"{env_id} train")
    test = collect_observations(env_id, n_test, seed + TEST_SEED_OFFSET, progress, f"{env_id} test")
    t_collect = time.perf_counter() - t0
    metadata = {
        "env_id": env_id,
        "seed": int(seed),
        "test_seed": int(seed + TEST_SEED_OFFSET),
        "policy": "uniform-random",
        "n_train": n_train,
        "n_test": n_test,
        "observation_shapes": {"image": list(train["image"].shape[1:]), "sound": list(train["sound"].shape[1:])},
        "image_dtype_on_disk": "uint8 (0/1)",
        "library_version": __version__,
        "gymnasium_version": gym.__version__,
        "collect_seconds": round(t_collect, 2),
    }
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(
        tmp,
        train_image=train["image"],
        train_sound=train["sound"],
        test_image=test["image"],
        test_sound=test["sound"],
        metadata=np.array(json.dumps(metadata)),
    )
    os.replace(tmp, path)
    return path


def load_dataset(path: str | os.PathLike) -> dict[str, Any]:
    """Load a file written by :func:`collect_dataset`: float32 arrays for the four data keys + ``metadata`` dict.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a corrupt or incomplete one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Dataset file {path} not found; create it with `python -m envs.collect --env ...`")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            missing = [k for k in KEYS if k not in files]
            if not missing:
                out: dict[str, Any] = {k: np.asarray(z[k], dtype=np.float32) for k in KEYS[:4]}
                metadata = json.loads(str(z["metadata"]))
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError, KeyError) as e:  # JSONDecodeError is a ValueError
        raise ValueError(f"Dataset file {path} is corrupt or not a dataset: {e}") from e
    if missing:
        raise ValueError(f"Dataset file {path} lacks keys {missing} (has {files})")
    for split in ("train", "test"):
        if len(out[f"{split}_image"]) != len(out[f"{split}_sound"]):
            raise ValueError(f"Dataset file {path}: {split}_image and {split}_sound have different lengths")
    out["metadata"] = metadata
    return out
