"""CelebA (the full dataset or any subset of its aligned images): 64x64 centre crops in [0, 1] and 18 attributes,
cached as one uint8 tensor; the official partition when it covers the images, else a seeded 85/15 split."""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from .root import data_root, shared_data_root
from .tensors import VALID_FRACTION, DatasetSplits, DictTensorDataset, split_indices

log = logging.getLogger(__name__)


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
