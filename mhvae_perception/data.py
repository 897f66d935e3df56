"""Datasets for pretraining the perception models.

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
  the dataset with :mod:`mhvae_perception.collect` when it is missing). ``"pendulum_sound"`` / ``"hyperhot"``
  are aliases of this project's two environments (registered by ``envs/``).
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch

from .describe import data_statistics, feature_statistics, image_to_chw, sensor_layout, to_model_layout
from .presets import LEGACY_ENV_ALIASES

log = logging.getLogger(__name__)

#: names :func:`load_dataset` knows without an environment id (the env aliases need their package, ``envs/``)
DATASETS = ("mnist", "fashionmnist", "celeba", *LEGACY_ENV_ALIASES)

CELEBA_ATTRIBUTES = (
    "Bald", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses",
    "Gray_Hair", "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Pale_Skin",
    "Receding_Hairline", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Hat",
)
#: Width of the full-resolution aligned CelebA images and the centre crop taken from them. The crop
#: scales with the image width: 140x140 at 178x218, 70x70 on the 2x-downscaled 89x109 subset.
CELEBA_FULL_WIDTH = 178
CELEBA_CROP_AT_FULL = 140
CELEBA_SIZE = 64

TEST_FRACTION = 0.15
VALID_FRACTION = 0.10
EVAL_BINARISE_SEED = 1234

_TV_FOLDERS = {"mnist": "MNIST", "fashionmnist": "FashionMNIST"}


# --------------------------------------------------------------------------------------------------
# locations
# --------------------------------------------------------------------------------------------------
def repo_root() -> Path:
    """The repository root: the parent directory of the ``mhvae_perception`` package."""
    return Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """``$MHVAE_DATA_ROOT`` if set, else ``<repo>/data`` (git-ignored). Not created here."""
    env = os.environ.get("MHVAE_DATA_ROOT")
    return Path(env).expanduser() if env else repo_root() / "data"


def shared_data_root() -> Path:
    """Read-only shared data beside the clone: ``<repo>/../shared/data``. Never written to."""
    return repo_root().parent / "shared" / "data"


# --------------------------------------------------------------------------------------------------
# generic in-memory dataset
# --------------------------------------------------------------------------------------------------
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
                     drop_last: bool = False, limit: Optional[int] = None) -> Iterator[Dict[str, torch.Tensor]]:
        """Batches in order (or in a permutation drawn from ``generator``); the same generator drives
        dynamic binarisation, so a generator seeded from (seed, epoch) fixes an epoch's data exactly.
        ``limit`` caps the number of items served (a prefix of the order)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
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


# --------------------------------------------------------------------------------------------------
# MNIST / FashionMNIST
# --------------------------------------------------------------------------------------------------
def prepare_torchvision(name: str, root: Optional[os.PathLike] = None) -> Path:
    """Make ``torchvision.datasets.MNIST/FashionMNIST(root, download=True)`` work offline.

    If ``root/<MNIST|FashionMNIST>/raw`` lacks the ``.gz`` archives and the shared data folder has
    them, copy them over (the shared folder is only read). torchvision then verifies the md5s and
    extracts; when online and nothing is found it downloads. Returns ``root``.
    """
    import torchvision

    name = name.lower()
    if name not in _TV_FOLDERS:
        raise ValueError(f"prepare_torchvision handles {sorted(_TV_FOLDERS)}, not {name!r}")
    root = Path(root) if root is not None else data_root()
    folder = _TV_FOLDERS[name]
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
    cls = getattr(torchvision.datasets, _TV_FOLDERS[name])
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


# --------------------------------------------------------------------------------------------------
# CelebA
# --------------------------------------------------------------------------------------------------
def find_celeba_dir(celeba_dir: Optional[os.PathLike] = None) -> Path:
    """``celeba_dir`` if given, else ``<data root>/celeba`` if it exists, else the shared folder."""
    if celeba_dir is not None:
        return Path(celeba_dir)
    own = data_root() / "celeba"
    if own.exists():
        return own
    shared = shared_data_root() / "celeba"
    return shared if shared.exists() else own


def _celeba_layout_error(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"CelebA: {what} not found at {path}. Put the official aligned CelebA files in that folder: "
        f"img_align_celeba/ (the *.jpg faces, all 202,599 or any subset), list_attr_celeba.txt and "
        f"list_eval_partition.txt (from the CelebA 'Anno' and 'Eval' folders), or set MHVAE_DATA_ROOT "
        f"to a root whose celeba/ folder has them.")


def read_celeba_attributes(path: Path):
    """(filenames, header names, int8 array (N, 40) of +-1) from ``list_attr_celeba.txt``."""
    with open(path) as f:
        lines = f.read().splitlines()
    header = lines[1].split()
    names, rows = [], []
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        names.append(parts[0])
        rows.append(parts[1:])
    return names, header, np.asarray(rows, dtype=np.int8)


def read_celeba_partition(path: Path) -> Dict[str, int]:
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = int(parts[1])
    return out


def celeba_crop_size(width: int) -> int:
    """Side of the square centre crop for an aligned CelebA image of this width (scales with it)."""
    return max(1, int(round(CELEBA_CROP_AT_FULL * width / CELEBA_FULL_WIDTH)))


def preprocess_celeba_image(path: Path, size: int = CELEBA_SIZE) -> np.ndarray:
    """Centre crop (size from :func:`celeba_crop_size`) then resize to ``size`` x ``size`` RGB; uint8 (3, size, size)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        c = celeba_crop_size(w)
        left, top = (w - c) // 2, (h - c) // 2
        im = im.crop((left, top, left + c, top + c)).resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def celeba_cache_path(cache_dir: Path, img_dir: Path, present: Sequence[str], size: int) -> tuple[Path, list[Path]]:
    """The cache file for these images and the stale caches of the same file list.

    The name holds two keys: one of the file list and the preprocessing (size, crop, resampling), and one of
    the contents as far as ``stat`` tells (every file's size and modification time in ns), so replacing,
    editing or re-downloading images makes a new cache; a cache with the same list key but another content
    key is stale.
    """
    list_key = hashlib.sha1(("\n".join(present) + f"|{size}|{CELEBA_CROP_AT_FULL}/{CELEBA_FULL_WIDTH}|bilinear").encode()).hexdigest()[:16]
    content = hashlib.sha1()
    for f in present:
        st = os.stat(img_dir / f)
        content.update(f"{f}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    prefix = f"celeba{size}_{len(present)}_{list_key}"
    cache = cache_dir / f"{prefix}_{content.hexdigest()[:12]}.pt"
    stale = sorted(p for p in cache_dir.glob(f"{prefix}*.pt") if p != cache) if cache_dir.is_dir() else []
    return cache, stale


def load_celeba(celeba_dir: Optional[os.PathLike] = None, split_seed: int = 0, cache_dir: Optional[os.PathLike] = None,
                size: int = CELEBA_SIZE) -> DatasetSplits:
    """Read aligned CelebA from ``celeba_dir`` (official layout), using the images actually present.

    Images: centre crop of ``celeba_crop_size(width)`` (140x140 at the full 178x218, 70x70 on the
    89x109 subset) resized to 64x64 RGB, pixels in [0, 1] (Bernoulli/BCE likelihood). Attributes: the
    paper's 18 (:data:`CELEBA_ATTRIBUTES`) as 0/1. Split: the official partition when the present
    images include official test images, else a ``split_seed``-ed 85/15 split with 10 % of the
    training part as validation. The preprocessed uint8 tensors are cached under
    ``<data root>/cache/`` (keyed by the file list, crop and size, and by every image's size and modification
    time: changed images rebuild the cache, with a message) so later epochs/runs are fast.
    """
    d = find_celeba_dir(celeba_dir)
    img_dir, attr_path, part_path = d / "img_align_celeba", d / "list_attr_celeba.txt", d / "list_eval_partition.txt"
    if not d.is_dir():
        raise _celeba_layout_error(d, "the CelebA folder")
    if not attr_path.is_file():
        raise _celeba_layout_error(attr_path, "the attribute file list_attr_celeba.txt")
    if not img_dir.is_dir():
        raise _celeba_layout_error(img_dir, "the image folder img_align_celeba/")
    present = sorted(f for f in os.listdir(img_dir) if f.lower().endswith((".jpg", ".png")))
    names, header, attrs = read_celeba_attributes(attr_path)
    row_of = {n: i for i, n in enumerate(names)}
    present = [f for f in present if f in row_of]
    if not present:
        raise _celeba_layout_error(img_dir, "any image listed in list_attr_celeba.txt")
    missing_attr = [a for a in CELEBA_ATTRIBUTES if a not in header]
    if missing_attr:
        raise ValueError(f"{attr_path} lacks attributes {missing_attr}")
    cols = [header.index(a) for a in CELEBA_ATTRIBUTES]
    attributes = torch.from_numpy((attrs[[row_of[f] for f in present]][:, cols] > 0).astype(np.float32))

    cache_dir = Path(cache_dir) if cache_dir is not None else data_root() / "cache"
    cache, stale = celeba_cache_path(cache_dir, img_dir, present, size)
    if cache.is_file():
        images = torch.load(cache, weights_only=True)["images"]
    else:
        if stale:
            msg = (f"CelebA: the images in {img_dir} changed since {stale[0].name} was built (file sizes or "
                   f"modification times differ): rebuilding the cache as {cache.name}")
            log.warning(msg)
            print(msg)
        log.info("CelebA: preprocessing %d images from %s (cached to %s)", len(present), img_dir, cache)
        from tqdm.auto import tqdm

        arr = np.empty((len(present), 3, size, size), dtype=np.uint8)  # filled in place: no 2x peak memory
        for i, f in enumerate(tqdm(present, desc="CelebA preprocessing", mininterval=2.0)):
            arr[i] = preprocess_celeba_image(img_dir / f, size)
        images = torch.from_numpy(arr)
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".pt.part%d" % os.getpid())
        torch.save({"images": images, "files": present}, tmp)
        os.replace(tmp, cache)
        for old in stale:  # superseded: same file list, other contents
            old.unlink(missing_ok=True)

    partition = read_celeba_partition(part_path) if part_path.is_file() else {}
    parts = np.asarray([partition.get(f, -1) for f in present])
    if (parts == 2).any() and (parts == 0).any():
        scheme = "official partition"
        tr, va, te = (torch.from_numpy(np.nonzero(parts == p)[0]) for p in (0, 1, 2))
        if len(va) == 0:  # no official validation images present: carve 10 % of train
            g = torch.Generator().manual_seed(int(split_seed))
            perm = tr[torch.randperm(len(tr), generator=g)]
            n_va = int(round(VALID_FRACTION * len(tr)))
            va, tr = perm[:n_va], perm[n_va:]
    else:
        scheme = f"seeded 85/15 split (seed {split_seed}); no official test images present"
        tr, va, te = split_indices(len(present), split_seed)
    msg = (f"CelebA: found {len(present)} images in {img_dir} ({int((parts == 0).sum())} official train, "
           f"{int((parts == 1).sum())} valid, {int((parts == 2).sum())} test); using {scheme}: "
           f"train {len(tr)}, valid {len(va)}, test {len(te)}")
    log.info(msg)
    print(msg)

    def make(idx):
        return DictTensorDataset({"image": images[idx], "attributes": attributes[idx]})

    return DatasetSplits("celeba", make(tr), make(va), make(te), ("image", "attributes"),
                         info={"dir": str(d), "found": len(present), "split": scheme, "cache": str(cache),
                               "attributes": CELEBA_ATTRIBUTES},
                         figure_hints={"condition_on": "test_points", "cross_modal": False})


# --------------------------------------------------------------------------------------------------
# environment datasets (any Gymnasium env with a Dict observation space)
# --------------------------------------------------------------------------------------------------
sound_statistics = feature_statistics  # the name older code uses

_COLLECT_KEYS = ("n_train", "n_test", "seed", "env_kwargs", "policy", "n_envs", "progress")


def load_env_splits(env_id: str, path: Optional[os.PathLike] = None, split_seed: int = 0,
                    collect_if_missing: bool = True, **collect_kwargs) -> DatasetSplits:
    """The dataset of any Gymnasium environment with a ``Dict`` observation space, collected when missing.

    ``env_id``: a Gymnasium id, ``"module:EnvId"``, or a registered preset's alias (``"pendulum_sound"``).
    ``path`` defaults to :func:`mhvae_perception.collect.default_path` of the collection settings;
    ``collect_kwargs`` are :func:`mhvae_perception.collect.collect`'s (``n_train``, ``n_test``, ``seed``,
    ``env_kwargs``, ``policy``, ``n_envs``, ``progress``); an existing file collected with other settings than
    the ones given raises ``ValueError``. Splits: 10 % of the file's training part (a ``split_seed``
    permutation) is validation, the file's test part is the test split. Images are served in (C, H, W) in
    [0, 1]; Gaussian sensors get normalisation statistics from the training split only
    (:attr:`DatasetSplits.normalisation`); the true state, when recorded, is :attr:`DatasetSplits.state`.
    """
    from . import collect as collector
    from .presets import resolve_env_name

    unknown = sorted(set(collect_kwargs) - set(_COLLECT_KEYS))
    if unknown:
        raise TypeError(f"load_env_splits: unknown keyword(s) {unknown}; collection settings are {_COLLECT_KEYS}")
    progress = collect_kwargs.pop("progress", True)
    resolved = resolve_env_name(env_id)
    settings = collector.collection_settings(resolved, **collect_kwargs)  # checked before any work
    path = Path(path) if path is not None else collector.default_path(resolved, settings)
    if not path.is_file():
        collector.resolve_env_id(resolved)  # an unknown environment is named before anything else
        if not collect_if_missing:
            raise FileNotFoundError(
                f"{env_id}: environment dataset {path} not found. Collect it with `python -m envs.collect "
                f"--env-id {resolved}` (or mhvae_perception.collect.collect), pass its path, or call "
                f"load_env_splits(..., collect_if_missing=True)")
        log.info("%s: collecting the dataset into %s", resolved, path)
        collector.collect(resolved, path=path, progress=progress, **collect_kwargs)
    arrays, metadata = collector.read_collected(path)
    recorded = metadata.get("settings")
    if collect_kwargs and recorded is not None:
        asked = {k: settings[k] for k in collect_kwargs}
        differ = {k: (recorded.get(k), v) for k, v in asked.items() if recorded.get(k) != v}
        if differ:
            raise ValueError(f"{path} was collected with other settings ({', '.join(f'{k}: file {a!r}, asked {b!r}' for k, (a, b) in differ.items())}); "
                             f"pass another path or remove the file to collect it again")
    return env_splits_from_arrays(env_id, resolved, arrays, metadata, split_seed, path)


def _legacy_space(arrays: Mapping[str, np.ndarray]) -> dict:
    """The observation-space description of a file written before format 2 (image 0/1 + sound)."""
    from .collect import space_to_json
    from gymnasium import spaces

    desc = {}
    for key in ("image", "sound"):
        if f"train_{key}" not in arrays or f"test_{key}" not in arrays:
            raise ValueError(f"old-format dataset lacks train_{key}/test_{key} (has {sorted(arrays)})")
        shape = arrays[f"train_{key}"].shape[1:]
        desc[key] = spaces.Box(0.0, 1.0, shape, np.float32) if key == "image" else spaces.Box(-np.inf, np.inf, shape, np.float32)
    return space_to_json(spaces.Dict(desc))


def env_splits_from_arrays(name: str, env_id: str, arrays: Mapping[str, np.ndarray], metadata: dict,
                           split_seed: int = 0, path: Optional[os.PathLike] = None) -> DatasetSplits:
    """:class:`DatasetSplits` from the arrays and metadata of a collected file (see :func:`load_env_splits`)."""
    from .collect import array_key, space_from_json
    from .presets import env_preset

    if "observation_space" not in metadata:
        metadata = {**metadata, "observation_space": _legacy_space(arrays)}
    space = space_from_json(metadata["observation_space"])
    names = tuple(space.spaces)
    for split in ("train", "test"):
        missing = [array_key(split, k) for k in names if array_key(split, k) not in arrays]
        if missing:
            raise ValueError(f"{path}: the dataset lacks {missing} (has {sorted(arrays)})")
        lengths = {len(arrays[array_key(split, k)]) for k in names}
        if len(lengths) != 1:
            raise ValueError(f"{path}: the {split} arrays have different lengths {sorted(lengths)}")
    n = len(arrays[array_key("train", names[0])])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    n_va = int(round(VALID_FRACTION * n))
    va, tr = perm[:n_va], perm[n_va:]
    layouts = {k: sensor_layout(sub) for k, sub in space.spaces.items()}

    def served(split: str):
        tensors, scales = {}, {}
        for k, layout in layouts.items():
            raw = arrays[array_key(split, k)]
            if layout.kind in ("image", "multibinary") and raw.dtype == np.uint8:
                # kept as uint8 in memory (a quarter of float32), scaled when served
                tensors[k] = torch.from_numpy(np.ascontiguousarray(image_to_chw(layout, raw) if layout.kind == "image" else raw))
                scales[k] = float(layout.scale)
            else:
                tensors[k] = torch.from_numpy(np.ascontiguousarray(to_model_layout(layout, raw)))
        return tensors, scales

    train_t, scales = served("train")
    test_t, _ = served("test")
    train = DictTensorDataset({k: v[tr] for k, v in train_t.items()}, uint8_scale=scales)
    valid = DictTensorDataset({k: v[va] for k, v in train_t.items()}, uint8_scale=scales)
    test = DictTensorDataset(test_t, uint8_scale=scales)
    tr_np = tr.numpy()
    statistics = data_statistics(space, {k: (arrays[array_key("train", k)][tr_np] if layouts[k].kind == "vector"
                                             else arrays[array_key("train", k)]) for k in names})
    normalisation = {k: statistics[k] for k in names if layouts[k].kind == "vector"} or None

    state, state_names = None, ()
    skey = metadata.get("state_key") or "state"
    if metadata.get("state_names") and array_key("train", skey) in arrays:
        full = torch.from_numpy(np.asarray(arrays[array_key("train", skey)], dtype=np.float32))
        state = {"train": full[tr], "valid": full[va],
                 "test": torch.from_numpy(np.asarray(arrays[array_key("test", skey)], dtype=np.float32))}
        state_names = tuple(metadata["state_names"])
    preset = env_preset(env_id)
    hints = {"condition_on": "test_points", "cross_modal": True, **(dict(preset.figure_hints) if preset else {})}
    return DatasetSplits(name, train, valid, test, names, normalisation=normalisation,
                         info={"path": str(path) if path is not None else None, "env_id": env_id,
                               "metadata": metadata, "statistics": statistics,
                               "modalities": {k: v.to_dict() for k, v in layouts.items()}},
                         figure_hints=hints, state=state, state_names=state_names)


# --------------------------------------------------------------------------------------------------
def load_dataset(name: str, split_seed: int = 0, root: Optional[os.PathLike] = None,
                 path: Optional[os.PathLike] = None) -> DatasetSplits:
    """Load a paper dataset (``"mnist"``, ``"fashionmnist"``, ``"celeba"``) or an environment's dataset by
    alias or id (``"pendulum_sound"``, ``"Hyperhot-v0"``, ...; not collected when missing: use
    :func:`load_env_splits` for that). ``root``: torchvision root for MNIST-like data (default data root);
    ``path``: CelebA folder or environment ``.npz`` (defaults described in each loader)."""
    key = name.lower()
    if key in _TV_FOLDERS:
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
