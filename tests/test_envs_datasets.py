"""Dataset collection / loading round trip on tiny sizes."""
import json

import gymnasium as gym
import numpy as np
import pytest

from envs import collect
from envs.datasets import DEFAULT_SIZES, KEYS, collect_dataset, default_path, load_dataset


@pytest.mark.parametrize("env_id", ["PendulumSound-v0", "Hyperhot-v0"])
def test_collect_load_round_trip(tmp_path, env_id):
    path = collect_dataset(env_id, n_train=7, n_test=3, seed=5, path=tmp_path / "d.npz", progress=False)
    assert path == tmp_path / "d.npz" and path.is_file()
    with np.load(path) as z:
        assert sorted(z.files) == sorted(KEYS)
        assert z["train_image"].dtype == np.uint8 and set(np.unique(z["train_image"])) <= {0, 1}
        assert z["train_sound"].dtype == np.float32
        meta = json.loads(str(z["metadata"]))
    data = load_dataset(path)
    assert set(data) == set(KEYS)
    env = gym.make(env_id)
    shapes = {k: env.observation_space[k].shape for k in ("image", "sound")}
    for split, n in (("train", 7), ("test", 3)):
        for mod in ("image", "sound"):
            arr = data[f"{split}_{mod}"]
            assert arr.dtype == np.float32 and arr.shape == (n, *shapes[mod])
    assert data["metadata"] == meta
    assert meta["env_id"] == env_id and meta["seed"] == 5 and meta["policy"] == "uniform-random"
    assert meta["n_train"] == 7 and meta["n_test"] == 3
    assert meta["observation_shapes"] == {k: list(v) for k, v in shapes.items()}
    assert meta["library_version"] == "0.1.0"
    # the stream is exactly the seeded uniform-random rollout
    env.action_space.seed(5)
    obs, _ = env.reset(seed=5)
    for i in range(7):
        np.testing.assert_array_equal(data["train_image"][i], obs["image"])
        np.testing.assert_array_equal(data["train_sound"][i], obs["sound"])
        obs, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            obs, _ = env.reset()
    np.testing.assert_array_equal(data["test_image"][0], gym.make(env_id).reset(seed=6)[0]["image"])
    # same arguments -> identical file contents
    again = load_dataset(collect_dataset(env_id, 7, 3, 5, tmp_path / "e.npz", progress=False))
    for k in KEYS[:4]:
        np.testing.assert_array_equal(again[k], data[k])


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"definitely not a zip file")
    with pytest.raises(ValueError, match="corrupt"):
        load_dataset(bad)
    good = collect_dataset("PendulumSound-v0", 50, 5, 0, tmp_path / "good.npz", progress=False)
    for cut in (0.3, 0.7, 0.98):  # truncated downloads / interrupted writes
        truncated = tmp_path / f"truncated{cut}.npz"
        data = good.read_bytes()
        truncated.write_bytes(data[: int(cut * len(data))])
        with pytest.raises(ValueError, match="corrupt"):
            load_dataset(truncated)
    partial = tmp_path / "partial.npz"
    np.savez_compressed(partial, train_image=np.zeros((1, 2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="lacks keys"):
        load_dataset(partial)


def test_defaults_and_cli(tmp_path, monkeypatch, capsys):
    assert DEFAULT_SIZES == {"PendulumSound-v0": (20_000, 2_000), "Hyperhot-v0": (32_000, 8_000)}
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path / "root"))
    assert default_path("Hyperhot-v0") == tmp_path / "root" / "envs" / "Hyperhot-v0.npz"
    collect.main(["--env", "PendulumSound-v0", "--n-train", "4", "--n-test", "2", "--seed", "1", "--no-progress"])
    out = default_path("PendulumSound-v0")
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert load_dataset(out)["train_image"].shape == (4, 2, 60, 60)
    with pytest.raises(ValueError, match="Unknown env_id"):
        collect_dataset("CartPole-v1", 1, 1, 0, tmp_path / "x.npz", progress=False)
