"""MNIST and FashionMNIST through torchvision, offline from the shared archives: the paper's pooled 85/15 split,
dynamic binarisation of training images and a fixed binarisation of validation and test images."""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from .root import data_root, shared_data_root
from .tensors import EVAL_BINARISE_SEED, DatasetSplits, DictTensorDataset, binarise_once, split_indices

log = logging.getLogger(__name__)


TORCHVISION_FOLDERS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST"}


def prepare_torchvision(name: str, root: Optional[os.PathLike] = None) -> Path:
    """Make ``torchvision.datasets.MNIST/FashionMNIST(root, download=True)`` work offline.

    If ``root/<MNIST|FashionMNIST>/raw`` lacks the ``.gz`` archives and the shared data folder has
    them, copy them over (the shared folder is only read). torchvision then verifies the md5s and
    extracts; when online and nothing is found it downloads. Returns ``root``.
    """
    import torchvision

    name = name.lower()
    if name not in TORCHVISION_FOLDERS:
        raise ValueError(f"prepare_torchvision handles {sorted(TORCHVISION_FOLDERS)}, not {name!r}")
    root = Path(root) if root is not None else data_root()
    folder = TORCHVISION_FOLDERS[name]
    raw = root / folder / "raw"
    shared_raw = shared_data_root() / folder / "raw"
    cls = getattr(torchvision.datasets, folder)
    wanted = [Path(url).name for url, _md5 in cls.resources]
    missing = [f for f in wanted if not (raw / f).exists()]
    if missing and shared_raw.is_dir() and all((shared_raw / f).exists() for f in missing):
        raw.mkdir(parents=True, exist_ok=True)
        for f in missing:
            tmp = raw / (f + ".part")
            shutil.copyfile(shared_raw / f, tmp)
            os.replace(tmp, raw / f)
        log.info("copied %d %s archives from %s", len(missing), folder, shared_raw)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # network failure, md5 mismatch, ...
        raise RuntimeError(
            f"could not prepare {folder} under {root}: {exc}. Put the four original archives "
            f"({', '.join(wanted)}) in {raw} (or in {shared_raw}), or run once with internet access."
        ) from exc
    return root


def load_mnist_like(name: str = "mnist", root: Optional[os.PathLike] = None, split_seed: int = 0) -> DatasetSplits:
    import torchvision

    name = name.lower()
    root = prepare_torchvision(name, root)
    cls = getattr(torchvision.datasets, TORCHVISION_FOLDERS[name])
    parts = [cls(str(root), train=t, download=False) for t in (True, False)]
    images = torch.cat([p.data for p in parts]).to(torch.uint8).unsqueeze(1)  # (70000, 1, 28, 28)
    targets = torch.cat([torch.as_tensor(p.targets) for p in parts]).long()
    labels = torch.nn.functional.one_hot(targets, 10).float()
    tr, va, te = split_indices(len(images), split_seed)
    train = DictTensorDataset({"image": images[tr], "label": labels[tr]}, dynamic_binarise=("image",))
    valid = DictTensorDataset({"image": binarise_once(images[va], EVAL_BINARISE_SEED), "label": labels[va]})
    test = DictTensorDataset({"image": binarise_once(images[te], EVAL_BINARISE_SEED + 1), "label": labels[te]})
    return DatasetSplits(name, train, valid, test, ("image", "label"),
                         info={"root": str(root), "split_seed": split_seed, "pooled": len(images),
                               "targets": {"train": targets[tr], "valid": targets[va], "test": targets[te]}},
                         figure_hints={"condition_on": "one_hot_classes", "cross_modal": False})
