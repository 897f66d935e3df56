"""Datasets for pretraining the perception models, and the model descriptions (presets) that go with them.

Every dataset is returned as :class:`DatasetSplits` with three :class:`DictTensorDataset` splits
(``train``, ``valid``, ``test``) whose items are dicts ``{modality name: float32 tensor}``:

* ``"mnist"`` / ``"fashionmnist"``: ``{"image": (1, 28, 28) in {0, 1}, "label": (10,) one-hot}``.
  Paper split: the 60,000 + 10,000 official images are pooled (70,000), permuted with ``split_seed``,
  85 % is training (of which 10 % is validation) and 15 % is the evaluation/test split
  (53,550 / 5,950 / 10,500). Training images are binarised *dynamically* (a fresh
  ``torch.bernoulli`` draw every time a batch is drawn); validation and test images are binarised
  ONCE with a fixed seed, so every evaluation sees the same binary images.
* ``"celeba"``: ``{"image": (3, 64, 64) in [0, 1], "attributes": (18,) in {0, 1}}``. Pixels are
  continuous intensities in [0, 1] and are modelled with a Bernoulli (BCE) likelihood, as in the
  paper's networks. See :func:`load_celeba` for cropping and the split.
* any Gymnasium environment with a ``Dict`` observation space: :func:`load_env_splits` (``env_id``, collecting
  the dataset with :mod:`.collect` when it is missing). ``"pendulum_sound"`` / ``"hyperhot"``
  are aliases of this project's two environments (registered by ``envs/``).

Modules, each importing only those listed before it (and :mod:`mhvae_perception.models` below this package):
``root`` (where data lives), ``tensors`` (the in-memory dataset), ``spaces`` (observation spaces as JSON),
``describe`` (sensor layouts, statistics, inferred model descriptions), ``presets`` (the paper's networks and
registered environment presets), ``collect`` (environment datasets), ``mnist``, ``celeba``, ``envdata``,
``datasets`` (:func:`load_dataset`, one entry point by name).
"""
from . import collect, describe, presets, spaces
from .celeba import (CELEBA_ATTRIBUTES, CELEBA_CROP_AT_FULL, CELEBA_FULL_WIDTH, CELEBA_SIZE, celeba_cache_path,
                     celeba_crop_size, find_celeba_dir, load_celeba, preprocess_celeba_image, read_celeba_attributes,
                     read_celeba_partition)
from .datasets import DATASETS, load_dataset
from .envdata import env_splits_from_arrays, load_env_splits, sound_statistics
from .mnist import TORCHVISION_FOLDERS, load_mnist_like, prepare_torchvision
from .root import data_root, repo_root, shared_data_root
from .tensors import (EVAL_BINARISE_SEED, TEST_FRACTION, VALID_FRACTION, DatasetSplits, DictTensorDataset,
                      binarise_once, split_indices)

__all__ = [
    "DATASETS", "load_dataset", "load_env_splits", "env_splits_from_arrays", "load_mnist_like", "prepare_torchvision",
    "load_celeba", "find_celeba_dir", "read_celeba_attributes", "read_celeba_partition", "celeba_crop_size",
    "preprocess_celeba_image", "celeba_cache_path", "CELEBA_ATTRIBUTES", "CELEBA_CROP_AT_FULL", "CELEBA_FULL_WIDTH",
    "CELEBA_SIZE", "TORCHVISION_FOLDERS", "DictTensorDataset", "DatasetSplits", "split_indices", "binarise_once",
    "TEST_FRACTION", "VALID_FRACTION", "EVAL_BINARISE_SEED", "data_root", "repo_root", "shared_data_root",
    "sound_statistics", "collect", "describe", "presets", "spaces",
]
