"""The in-memory dataset every loader returns: :class:`DictTensorDataset` splits inside a :class:`DatasetSplits`,
and the seeded split and fixed binarisation the paper's protocol uses."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Sequence

import torch


TEST_FRACTION = 0.15
VALID_FRACTION = 0.10
EVAL_BINARISE_SEED = 1234


class DictTensorDataset(torch.utils.data.Dataset):
    """Tensors sharing their first dimension, served as dicts.

    ``uint8`` tensors are converted to float32 when served, divided by ``uint8_scale[key]`` (default 255,
    i.e. intensities in [0, 1]; 1 for tensors already holding 0/1 values). Keys in
    ``dynamic_binarise`` are served as a fresh Bernoulli sample of those intensities every time.
    :meth:`iter_batches` is the fast path used by training (no per-item Python overhead).
    """

    def __init__(self, tensors: Dict[str, torch.Tensor], dynamic_binarise: Sequence[str] = (),
                 uint8_scale: Optional[Dict[str, float]] = None):
        sizes = {int(t.shape[0]) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors disagree on their first dimension: { {k: tuple(v.shape) for k, v in tensors.items()} }")
        self.tensors = dict(tensors)
        self.dynamic_binarise = tuple(dynamic_binarise)
        self.uint8_scale = dict(uint8_scale or {})
        unknown = set(self.dynamic_binarise) - set(self.tensors)
        if unknown:
            raise ValueError(f"dynamic_binarise names unknown keys {sorted(unknown)}")

    def __len__(self) -> int:
        return int(next(iter(self.tensors.values())).shape[0])

    @property
    def shapes(self) -> Dict[str, tuple]:
        return {k: tuple(v.shape[1:]) for k, v in self.tensors.items()}

    def _serve(self, key: str, value: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        if value.dtype == torch.uint8:
            scale = self.uint8_scale.get(key, 255.0)
            value = value.float() if scale == 1 else value.float().div_(scale)
        else:
            value = value.float()
        if key in self.dynamic_binarise:
            value = torch.bernoulli(value, generator=generator)
        return value

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return {k: self._serve(k, v[index], None) for k, v in self.tensors.items()}

    def batch(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """The items at ``index`` (1-D long tensor) stacked into a batch dict."""
        return {k: self._serve(k, v[index], generator) for k, v in self.tensors.items()}

    def iter_batches(self, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None,
                     drop_last: bool = False, limit: Optional[int] = None,
                     start: int = 0) -> Iterator[Dict[str, torch.Tensor]]:
        """Batches in order (or in a permutation drawn from ``generator``); the same generator drives
        dynamic binarisation, so a generator seeded from (seed, epoch) fixes an epoch's data exactly.
        ``start`` skips the first items of the order and ``limit`` caps the number served after them (a shard)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order[int(start):]
        if limit is not None:
            order = order[: int(limit)]
        stop = len(order) - (len(order) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.batch(order[start:start + batch_size], generator)

    def num_batches(self, batch_size: int, drop_last: bool = False, limit: Optional[int] = None) -> int:
        n = len(self) if limit is None else min(len(self), int(limit))
        return n // batch_size if drop_last else -(-n // batch_size)

    def subset(self, index) -> "DictTensorDataset":
        index = torch.as_tensor(index, dtype=torch.long)
        return DictTensorDataset({k: v[index] for k, v in self.tensors.items()}, self.dynamic_binarise, self.uint8_scale)


@dataclass
class DatasetSplits:
    """Three splits of one dataset and what describes it.

    ``normalisation``: statistics to pass to the model config, e.g. ``{"sound": {"mean": [...], "std": [...]}}``.
    ``figure_hints``: how to draw it — ``"condition_on"``: ``"one_hot_classes"`` (a grid per class of x2) or
    ``"test_points"``; ``"cross_modal"``: bool (labelled cross-modal image/sound figures); optionally
    ``"feature_names"``: names of the last axis of x2. ``state``: for environment datasets that expose it, the
    true state per split (``"train"``, ``"valid"``, ``"test"``: float32 (N, d), rows aligned with the split's
    items) and ``state_names`` its d names; None / () otherwise.
    """

    name: str
    train: DictTensorDataset
    valid: DictTensorDataset
    test: DictTensorDataset
    modality_names: tuple
    normalisation: Optional[dict] = None
    info: dict = field(default_factory=dict)
    figure_hints: dict = field(default_factory=dict)
    state: Optional[Dict[str, torch.Tensor]] = None
    state_names: tuple = ()

    def summary(self) -> str:
        return (f"{self.name}: train {len(self.train)}, valid {len(self.valid)}, test {len(self.test)}; "
                f"shapes {self.train.shapes}")


def split_indices(n: int, seed: int, test_fraction: float = TEST_FRACTION,
                  valid_fraction: float = VALID_FRACTION):
    """Seeded permutation of ``range(n)`` cut into (train, valid, test) index tensors:
    ``test_fraction`` of all items is test, ``valid_fraction`` of the rest is validation."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    n_test = int(round(test_fraction * n))
    n_trainval = n - n_test
    n_valid = int(round(valid_fraction * n_trainval))
    return perm[n_test + n_valid:], perm[n_test:n_test + n_valid], perm[:n_test]


def binarise_once(images: torch.Tensor, seed: int = EVAL_BINARISE_SEED) -> torch.Tensor:
    """Fixed Bernoulli binarisation of uint8 or [0, 1] images (for validation/test)."""
    x = images.float().div(255.0) if images.dtype == torch.uint8 else images.float()
    return torch.bernoulli(x, generator=torch.Generator().manual_seed(int(seed)))
