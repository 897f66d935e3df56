"""Tests of mhvae_perception.data: CelebA reader (generated folder), env datasets (generated .npz), MNIST split."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mhvae_perception
from mhvae_perception import data

ALL_ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
             "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
             "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
             "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
             "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def make_celeba(folder: Path, n: int = 12, size=(178, 218), partitions=None, listed_extra: int = 3) -> np.ndarray:
    """Official layout with ``n`` JPEGs present (+ ``listed_extra`` listed but absent). Returns the +-1 attrs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img_dir = folder / "img_align_celeba"
    img_dir.mkdir(parents=True)
    total = n + listed_extra
    attrs = rng.choice([-1, 1], size=(total, len(ALL_ATTRS)))
    names = [f"{i + 1:06d}.jpg" for i in range(total)]
    w, h = size
    for i in range(n):
        arr = np.zeros((h, w, 3), dtype=np.uint8)
        arr[..., 0] = 20 + 10 * i  # image i is identifiable by its red level
        arr[: h // 10, :, 1] = 255  # a green band at the very top: cropped away by the centre crop
        Image.fromarray(arr).save(img_dir / names[i], quality=95)
    with open(folder / "list_attr_celeba.txt", "w") as f:
        f.write(f"{total}\n{' '.join(ALL_ATTRS)}\n")
        for name, row in zip(names, attrs):
            f.write(name + " " + " ".join(f"{v:2d}" for v in row) + "\n")
    partitions = partitions if partitions is not None else [0] * total
    with open(folder / "list_eval_partition.txt", "w") as f:
        for name, p in zip(names, partitions):
            f.write(f"{name} {p}\n")
    return attrs


def test_data_root_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path))
    assert data.data_root() == tmp_path
    monkeypatch.delenv("MHVAE_DATA_ROOT")
    assert data.data_root() == Path(mhvae_perception.__file__).resolve().parent.parent / "data"


def test_celeba_crop_scales_with_size():
    assert data.celeba_crop_size(178) == 140
    assert data.celeba_crop_size(89) == 70


def test_celeba_reader_seeded_split_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path / "root"))
    attrs = make_celeba(tmp_path / "celeba", n=20, size=(89, 109))
    splits = data.load_celeba(tmp_path / "celeba", split_seed=0)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (15, 2, 3)  # 85/15, 10 % of train valid
    assert splits.modality_names == ("image", "attributes")
    item = splits.train[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    # the centre crop removed the green band at the top
    assert float(item["image"][1].max()) < 0.2
    # attributes: the paper's 18, in order, 0/1, matching the file rows of the images
    all_items = torch.cat([s.tensors["attributes"] for s in (splits.train, splits.valid, splits.test)])
    red = torch.cat([s.tensors["image"][:, 0, 32, 32].float() for s in (splits.train, splits.valid, splits.test)])
    cols = [ALL_ATTRS.index(a) for a in data.CELEBA_ATTRIBUTES]
    for a, r in zip(all_items, red):
        i = int(round((float(r) - 20) / 10))
        assert torch.equal(a, torch.from_numpy((attrs[i, cols] > 0).astype(np.float32)))
    cache = list((tmp_path / "root" / "cache").glob("celeba64_20_*.pt"))
    assert len(cache) == 1
    again = data.load_celeba(tmp_path / "celeba", split_seed=0)  # served from the cache
    assert torch.equal(again.train.tensors["image"], splits.train.tensors["image"])
    assert splits.figure_hints == {"condition_on": "test_points", "cross_modal": False}


def test_celeba_cache_rebuilt_when_images_change(tmp_path, monkeypatch, capsys):
    """Replacing a few images (same names) must not serve the old pixels from the cache."""
    from PIL import Image

    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path / "root"))
    make_celeba(tmp_path / "celeba", n=10, size=(89, 109))
    first = data.load_celeba(tmp_path / "celeba", split_seed=0)
    assert "rebuilding" not in capsys.readouterr().out
    img_dir = tmp_path / "celeba" / "img_align_celeba"
    names = sorted(p.name for p in img_dir.iterdir())[:3]
    for name in names:  # new contents: white faces (other sizes and mtimes)
        Image.fromarray(np.full((109, 89, 3), 250, dtype=np.uint8)).save(img_dir / name, quality=80)
    second = data.load_celeba(tmp_path / "celeba", split_seed=0)
    assert "rebuilding the cache" in capsys.readouterr().out
    caches = list((tmp_path / "root" / "cache").glob("celeba64_10_*.pt"))
    assert len(caches) == 1  # the stale cache was replaced
    all_first = torch.cat([s.tensors["image"] for s in (first.train, first.valid, first.test)])
    all_second = torch.cat([s.tensors["image"] for s in (second.train, second.valid, second.test)])
    changed = (all_first != all_second).flatten(1).any(1)
    assert int(changed.sum()) == 3 and int(all_second[changed].min()) >= 240
    third = data.load_celeba(tmp_path / "celeba", split_seed=0)  # unchanged now: served from the new cache
    assert "rebuilding" not in capsys.readouterr().out
    assert torch.equal(third.train.tensors["image"], second.train.tensors["image"])


def test_celeba_reader_official_partition(tmp_path, monkeypatch):
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path / "root"))
    parts = [0] * 8 + [1] * 2 + [2] * 2 + [2] * 3  # the last three are listed but absent
    make_celeba(tmp_path / "celeba", n=12, partitions=parts)
    splits = data.load_celeba(tmp_path / "celeba")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (8, 2, 2)
    assert splits.info["found"] == 12 and "official" in splits.info["split"]


def test_celeba_missing_files_are_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="CelebA folder"):
        data.load_celeba(tmp_path / "nowhere")
    (tmp_path / "c" / "img_align_celeba").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"list_attr_celeba\.txt.*Put the official"):
        data.load_celeba(tmp_path / "c")


def test_env_dataset_from_npz(tmp_path):
    rng = np.random.default_rng(1)
    n, m = 50, 10
    path = tmp_path / "PendulumSound-v0.npz"
    np.savez_compressed(path, train_image=rng.integers(0, 2, (n, 2, 60, 60)).astype(np.uint8),
                        train_sound=rng.normal(3.0, 2.0, (n, 2, 3, 2)).astype(np.float32),
                        test_image=rng.integers(0, 2, (m, 2, 60, 60)).astype(np.uint8),
                        test_sound=rng.normal(3.0, 2.0, (m, 2, 3, 2)).astype(np.float32),
                        metadata=np.array(json.dumps({"env_id": "PendulumSound-v0"})))
    splits = data.load_dataset("pendulum_sound", path=path)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (45, 5, 10)
    batch = next(splits.train.iter_batches(8))
    assert batch["image"].shape == (8, 2, 60, 60) and batch["image"].dtype == torch.float32
    assert set(torch.unique(batch["image"]).tolist()) <= {0.0, 1.0}
    assert batch["sound"].shape == (8, 2, 3, 2)
    stats = splits.normalisation["sound"]
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    assert mean.shape == (2, 3, 2) and std.shape == (2, 3, 2)
    train_sound = splits.train.tensors["sound"]
    assert torch.allclose(mean, train_sound.mean(0), atol=1e-5)
    assert torch.allclose(std, train_sound.std(0, unbiased=False), atol=1e-5)
    # a file of the older format (no state): figure hints still set, no state
    assert splits.figure_hints["cross_modal"] is True and splits.figure_hints["condition_on"] == "test_points"
    assert splits.figure_hints["feature_names"] == ["Doppler frequency (Hz)", "amplitude 1/d²"]
    assert splits.state is None and splits.state_names == ()


def test_env_dataset_file_with_pickled_objects_is_refused(tmp_path):
    """No pickle anywhere: an object array (which np.load would unpickle) is refused, not executed."""
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    path = tmp_path / "evil.npz"
    np.savez(path, train_image=np.zeros((2, 2, 60, 60), np.uint8), train_sound=np.zeros((2, 2, 3, 2), np.float32),
             test_image=np.zeros((1, 2, 60, 60), np.uint8), test_sound=np.zeros((1, 2, 3, 2), np.float32),
             metadata=np.array([Payload()], dtype=object))
    with pytest.raises(ValueError, match="corrupt or not a collected dataset"):
        data.load_dataset("pendulum_sound", path=path)
    assert not marker.exists()


def test_env_dataset_missing_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="Hyperhot-v0"):
        data.load_dataset("hyperhot", path=tmp_path / "none.npz")


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset("cifar")


def _mnist_available() -> bool:
    shared = data.shared_data_root() / "MNIST" / "raw"
    own = data.data_root() / "MNIST" / "raw"
    return any((d / "train-images-idx3-ubyte.gz").exists() for d in (shared, own))


@pytest.mark.skipif(not _mnist_available(), reason="MNIST archives not found in ../shared/data/MNIST/raw or the data root")
def test_mnist_paper_split_and_binarisation():
    splits = data.load_dataset("mnist", split_seed=0)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (53550, 5950, 10500)
    assert splits.train.shapes == {"image": (1, 28, 28), "label": (10,)}
    # validation/test are binarised once: fixed 0/1 values
    assert set(torch.unique(splits.test.tensors["image"]).tolist()) == {0.0, 1.0}
    assert torch.equal(splits.test.batch(torch.arange(5))["image"], splits.test.batch(torch.arange(5))["image"])
    # training is binarised dynamically, reproducibly for a seeded generator
    idx = torch.arange(64)
    a = splits.train.batch(idx, torch.Generator().manual_seed(1))["image"]
    b = splits.train.batch(idx, torch.Generator().manual_seed(2))["image"]
    c = splits.train.batch(idx, torch.Generator().manual_seed(1))["image"]
    assert set(torch.unique(a).tolist()) == {0.0, 1.0}
    assert not torch.equal(a, b) and torch.equal(a, c)
    labels = splits.train.batch(idx)["label"]
    assert labels.shape == (64, 10) and torch.equal(labels.sum(1), torch.ones(64))
    # the split is a partition of the 70,000 pooled images
    assert splits.info["pooled"] == 70000
    assert splits.figure_hints == {"condition_on": "one_hot_classes", "cross_modal": False}
