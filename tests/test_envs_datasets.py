"""The built-in environments' datasets through the library's generic path (collect -> file -> splits)."""
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import envs
from envs import collect as cli
from envs.datasets import DEFAULT_SIZES, collect_dataset, default_path, load_dataset
from mhvae_perception.data import collect as collector
from mhvae_perception.data.spaces import space_from_json
from mhvae_perception import data, presets


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_collect_load_round_trip(tmp_path, env_id):
    path = collect_dataset(env_id, n_train=7, n_test=3, seed=5, path=tmp_path / "d.npz", progress=False, n_envs=2)
    assert path == tmp_path / "d.npz" and path.is_file()
    with np.load(path, allow_pickle=False) as z:  # no object arrays anywhere
        files = set(z.files)
        assert z["train_image"].dtype == np.uint8 and set(np.unique(z["train_image"])) <= {0, 1}
        assert z["train_sound"].dtype == np.float32 and z["train_state"].dtype == np.float32
        meta = json.loads(str(z["metadata"]))
    assert files == {f"{s}_{k}" for s in ("train", "test") for k in ("image", "sound", "state")} | {"metadata"}
    loaded = load_dataset(path)
    env = gym.make(env_id)
    shapes = {k: env.observation_space[k].shape for k in ("image", "sound")}
    for split, n in (("train", 7), ("test", 3)):
        for mod in ("image", "sound"):
            assert loaded[f"{split}_{mod}"].dtype == np.float32 and loaded[f"{split}_{mod}"].shape == (n, *shapes[mod])
        assert loaded[f"{split}_state"].shape == (n, len(env.unwrapped.state_names))
    assert loaded["metadata"] == meta
    assert meta["env_id"] == env_id and meta["seed"] == 5 and meta["policy"] == "random" and meta["n_envs"] == 2
    assert (meta["n_train"], meta["n_test"]) == (7, 3)
    assert meta["state_names"] == list(env.unwrapped.state_names)
    assert space_from_json(meta["observation_space"]) == env.observation_space
    # the stream: rows in (step, sub-env) order; sub-env 0 of train is reset with the first train seed and
    # steps with the seeded vector action space; with same-step autoreset no terminal observation is stored
    vec_space = gym.vector.utils.batch_space(env.action_space, 2)
    vec_space.seed(meta["train_seeds"][0])
    obs, info = env.reset(seed=meta["train_seeds"][0])
    for row in range(0, 7, 2):
        np.testing.assert_array_equal(loaded["train_image"][row], obs["image"])
        np.testing.assert_array_equal(loaded["train_sound"][row], obs["sound"])
        np.testing.assert_array_equal(loaded["train_state"][row], info["state"])
        action = vec_space.sample()[0]
        obs, _, term, trunc, info = env.step(action)
        if term or trunc:
            obs, info = env.reset()
    # same arguments -> identical contents
    again = load_dataset(collect_dataset(env_id, 7, 3, 5, tmp_path / "e.npz", progress=False, n_envs=2))
    for k in loaded:
        if k != "metadata":
            np.testing.assert_array_equal(again[k], loaded[k])


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
        raw = good.read_bytes()
        truncated.write_bytes(raw[: int(cut * len(raw))])
        with pytest.raises(ValueError, match="corrupt"):
            load_dataset(truncated)
    partial = tmp_path / "partial.npz"
    np.savez_compressed(partial, train_image=np.zeros((1, 2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="no 'metadata'"):
        load_dataset(partial)


def test_defaults_and_cli(tmp_path, monkeypatch, capsys):
    assert DEFAULT_SIZES == {"PendulumSound-v0": (20_000, 2_000), "Hyperhot-v0": (32_000, 8_000),
                             "HyperhotSpectrum-v0": (32_000, 8_000)}
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path / "root"))
    assert default_path("Hyperhot-v0") == tmp_path / "root" / "envs" / "Hyperhot-v0.npz"
    cli.main(["--env-id", "PendulumSound-v0", "--n-train", "4", "--n-test", "2", "--seed", "1", "--n-envs", "2",
              "--no-progress"])
    settings = collector.collection_settings("PendulumSound-v0", 4, 2, 1, n_envs=2)
    out = collector.default_path("PendulumSound-v0", settings)
    assert out.parent == tmp_path / "root" / "envs" and out.name.startswith("PendulumSound-v0-")
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert load_dataset(out)["train_image"].shape == (4, 2, 60, 60)
    cli.main(["--env", "Hyperhot-v0", "--n-train", "2", "--n-test", "1", "--out", str(tmp_path / "h.npz"), "--no-progress"])
    assert load_dataset(tmp_path / "h.npz")["train_sound"].shape == (2, 2, 4, 1047)


@pytest.mark.parametrize("env_id,alias", [("PendulumSound-v0", "pendulum_sound"), ("Hyperhot-v0", "hyperhot")])
def test_builtin_envs_through_the_generic_path(tmp_path, env_id, alias):
    """load_env_splits + config_for_env give the registered preset: the same networks (state-dict keys and
    shapes) as presets.build(alias), normalised with the training split's sound statistics."""
    splits = data.load_env_splits(env_id, path=tmp_path / "d.npz", n_train=30, n_test=10, n_envs=2, progress=False)
    assert splits.modality_names == ("image", "sound") and splits.state_names == gym.make(env_id).unwrapped.state_names
    assert splits.figure_hints["condition_on"] == "test_points" and splits.figure_hints["cross_modal"] is True
    for kind in ("mhvae", "jmvae", "mvae"):
        cfg = presets.config_for_env(env_id, splits, kind)
        reference = presets.build(alias, kind).state_dict()
        built = presets.build(alias, kind, normalisation=splits.normalisation)
        from mhvae_perception.models.registry import build_model

        got = build_model(cfg).state_dict()
        assert {k: tuple(v.shape) for k, v in got.items()} == {k: tuple(v.shape) for k, v in reference.items()}
        assert cfg == built.config
    stats = splits.normalisation["sound"]
    sound = splits.train.tensors["sound"]
    np.testing.assert_allclose(stats["mean"], sound.mean(0).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["std"], sound.std(0, unbiased=False).numpy(), rtol=1e-5, atol=1e-6)
    # the alias loads the same file identically
    same = data.load_dataset(alias, path=tmp_path / "d.npz")
    for split in ("train", "valid", "test"):
        for k in ("image", "sound"):
            assert torch.equal(getattr(same, split).tensors[k], getattr(splits, split).tensors[k])
        assert torch.equal(same.state[split], splits.state[split])


PRESETS_BEFORE = json.loads((__import__("pathlib").Path(__file__).parent / "data" / "env_presets_before.json").read_text())


@pytest.mark.parametrize("key", sorted(PRESETS_BEFORE))
def test_registered_presets_match_the_networks_results_were_measured_with(key):
    """tests/data/env_presets_before.json holds the modality/core descriptions and the state-dict keys and shapes
    built by presets.py before the presets moved to envs/presets.py (commit d68f2fa); they must not change."""
    alias, kind = key.split("/")
    before = PRESETS_BEFORE[key]
    cfg = presets.config(alias, kind).to_dict()
    assert cfg["modalities"] == before["config"]["modalities"] and cfg["core"] == before["config"]["core"]
    got = {k: list(v.shape) for k, v in presets.build(alias, kind).state_dict().items()}
    assert got == before["state_dict"]


def test_preset_overrides(tmp_path):
    splits = data.load_env_splits("PendulumSound-v0", path=tmp_path / "d.npz", n_train=12, n_test=4, n_envs=1,
                                  progress=False)
    cfg = presets.config_for_env("PendulumSound-v0", splits, "mhvae", sound={"latent_dim": 3}, core={"latent_dim": 4},
                                 warmup_core_epochs=7.0, agreement_weight=0.5)
    assert cfg.modality("sound").latent_dim == 3 and cfg.core.latent_dim == 4 and cfg.warmup_core_epochs == 7.0
    assert cfg.modality("image") == presets.config("pendulum_sound").modality("image")
    assert cfg.modality("sound").normalisation is not None
    with pytest.raises(ValueError, match="unknown override 'sonud'"):
        presets.config_for_env("PendulumSound-v0", splits, sonud={"latent_dim": 3})
