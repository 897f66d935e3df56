"""One entry point for every dataset by name: the paper's three and any environment's (see the package docstring)."""
from __future__ import annotations

import os
from typing import Optional

from .celeba import load_celeba
from .envdata import load_env_splits
from .mnist import TORCHVISION_FOLDERS, load_mnist_like
from .presets import LEGACY_ENV_ALIASES
from .tensors import DatasetSplits


#: names :func:`load_dataset` knows without an environment id (the env aliases need their package, ``envs/``)
DATASETS = ("mnist", "fashionmnist", "celeba", *LEGACY_ENV_ALIASES)


def load_dataset(name: str, split_seed: int = 0, root: Optional[os.PathLike] = None,
                 path: Optional[os.PathLike] = None) -> DatasetSplits:
    """Load a paper dataset (``"mnist"``, ``"fashionmnist"``, ``"celeba"``) or an environment's dataset by
    alias or id (``"pendulum_sound"``, ``"Hyperhot-v0"``, ...; not collected when missing: use
    :func:`load_env_splits` for that). ``root``: torchvision root for MNIST-like data (default data root);
    ``path``: CelebA folder or environment ``.npz`` (defaults described in each loader)."""
    key = name.lower()
    if key in TORCHVISION_FOLDERS:
        return load_mnist_like(key, root, split_seed)
    if key == "celeba":
        return load_celeba(path, split_seed)
    try:
        return load_env_splits(name, path=path, split_seed=split_seed, collect_if_missing=False)
    except ValueError as err:
        if "not registered" in str(err) or "unknown" in str(err):
            raise ValueError(f"unknown dataset {name!r}; choose from {DATASETS} or a Gymnasium environment id "
                             f"({err})") from err
        raise
