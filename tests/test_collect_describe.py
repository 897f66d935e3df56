"""The generic path on an environment this project did not tune: collection (file round trip, true state),
inferred model descriptions for every sensor kind and layout, and loading into splits."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from mhvae_perception.data import collect as collector
from mhvae_perception.data.spaces import space_from_json
from mhvae_perception import data, presets
from mhvae_perception.data import describe
from mhvae_perception.models.registry import build_model

TOY_ID = "ToySensors-v0"


class ToySensors(gym.Env):
    """Every supported sensor kind, each a known function of the true state (t, episode), so that stored
    observations and states can be checked against each other row by row. Episodes last 5 steps."""

    state_names = ("t", "episode")

    def __init__(self, length: int = 5) -> None:
        self.length = length
        self.observation_space = spaces.Dict({
            "cam": spaces.Box(0, 255, (24, 20, 3), np.uint8),          # colour, channel-last
            "grey": spaces.Box(0.0, 1.0, (1, 16, 18), np.float32),     # grey intensities, CHW
            "mask": spaces.Box(0.0, 1.0, (2, 16, 16), np.float32),     # binary, CHW
            "vec": spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "mode": spaces.Discrete(3, start=1),
            "bits": spaces.MultiBinary(5),
        })
        self.action_space = spaces.Discrete(2)
        self.t, self.episode = 0, -1

    def _obs(self) -> dict:
        t, e = self.t, self.episode
        return {"cam": np.full((24, 20, 3), (10 * t + e) % 256, np.uint8) + np.arange(3, dtype=np.uint8),
                "grey": np.full((1, 16, 18), t / 10, np.float32),
                "mask": (np.arange(2 * 16 * 16).reshape(2, 16, 16) % (t + 2) == 0).astype(np.float32),
                "vec": np.array([t, e, t * e, self.np_random.normal()], np.float32),
                "mode": 1 + t % 3, "bits": np.array([(t >> i) & 1 for i in range(5)], np.int8)}

    def _info(self) -> dict:
        return {"state": np.array([self.t, self.episode], np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episode = 0, self.episode + 1
        return self._obs(), self._info()

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= self.length, False, self._info()


if TOY_ID not in gym.registry:
    gym.register(TOY_ID, entry_point=ToySensors)


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.npz"
    return collector.collect(TOY_ID, n_train=40, n_test=12, seed=3, n_envs=3, progress=False, path=path)


# ------------------------------------------------------------------------------------------- collection
def test_collected_file_round_trip(toy_file):
    arrays, meta = collector.read_collected(toy_file)
    space = gym.make(TOY_ID).observation_space
    assert space_from_json(meta["observation_space"]) == space
    assert json.loads(json.dumps(meta)) == meta  # plain JSON
    expected_dtypes = {"cam": np.uint8, "grey": np.float32, "mask": np.uint8, "vec": np.float32,
                       "mode": np.int64, "bits": np.uint8}
    for split, n in (("train", 40), ("test", 12)):
        for key, dtype in expected_dtypes.items():
            a = arrays[f"{split}_{key}"]
            assert a.dtype == dtype and a.shape == (n, *space[key].shape), key
        assert arrays[f"{split}_state"].shape == (n, 2)
    assert meta["modalities"]["mask"]["stored_dtype"] == "uint8"  # binary float Box stored as 0/1 bytes
    assert meta["modalities"]["grey"]["stored_dtype"] == "float32"  # not binary: kept exactly
    assert meta["state_names"] == ["t", "episode"] and meta["n_envs"] == 3 and meta["policy"] == "random"
    assert set(meta["versions"]) == {"mhvae_perception", "gymnasium", "numpy", "python"}
    assert meta["train_seeds"] != meta["test_seeds"]
    # every stored observation is the one of the state stored in the same row (resets included)
    for split in ("train", "test"):
        st = arrays[f"{split}_state"]
        t, e = st[:, 0], st[:, 1]
        np.testing.assert_array_equal(arrays[f"{split}_vec"][:, :3], np.stack([t, e, t * e], 1))
        np.testing.assert_array_equal(arrays[f"{split}_cam"][:, 0, 0, 0], (10 * t + e) % 256)
        np.testing.assert_array_equal(arrays[f"{split}_mode"], 1 + t % 3)
        np.testing.assert_allclose(arrays[f"{split}_grey"][:, 0, 0, 0], t / 10, rtol=1e-6)
        assert set(np.unique(t)) <= set(range(5))  # terminal observations (t = 5) are not stored
    # rows in (step, sub-env) order: the first n_envs rows are the three resets
    np.testing.assert_array_equal(arrays["train_state"][:3, 0], 0)


def test_collect_is_deterministic(toy_file, tmp_path):
    again = collector.collect(TOY_ID, n_train=40, n_test=12, seed=3, n_envs=3, progress=False, path=tmp_path / "b")
    a, meta_a = collector.read_collected(toy_file)
    b, meta_b = collector.read_collected(again)
    assert again.suffix == ".npz" and sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    other = collector.collect(TOY_ID, n_train=40, n_test=12, seed=4, n_envs=3, progress=False, path=tmp_path / "c.npz")
    assert not np.array_equal(collector.read_collected(other)[0]["train_vec"][:, 3], a["train_vec"][:, 3])


def test_bad_requests_fail_before_collecting(tmp_path):
    with pytest.raises(ValueError, match="n_train must be an integer >= 1"):
        collector.collect(TOY_ID, n_train=0, n_test=1, progress=False, path=tmp_path / "x.npz")
    with pytest.raises(ValueError, match="not registered"):
        collector.collect("NoSuchEnv-v0", 2, 2, progress=False, path=tmp_path / "x.npz")
    with pytest.raises(ValueError, match="must be a gymnasium.spaces.Dict"):
        collector.collect("CartPole-v1", 2, 2, progress=False, path=tmp_path / "x.npz")
    with pytest.raises(ValueError, match="env_kwargs must hold JSON values"):
        collector.collect(TOY_ID, 2, 2, env_kwargs={"length": object()}, progress=False, path=tmp_path / "x.npz")
    with pytest.raises(ValueError, match="no safe agent loader"):
        agent = tmp_path / "agent.zip"
        agent.write_bytes(b"x")
        collector.collect(TOY_ID, 2, 2, policy=str(agent), progress=False, path=tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_callable_policy_and_settings_in_path(tmp_path, monkeypatch):
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path))
    calls = []

    def always_one(obs):
        calls.append(len(obs["vec"]))
        return np.ones(len(obs["vec"]), dtype=np.int64)

    path = collector.collect(TOY_ID, 6, 2, policy=always_one, n_envs=2, progress=False)
    assert calls and set(calls) == {2}
    assert path.parent == tmp_path / "envs" and path.name.startswith("ToySensors-v0-")  # non-default settings
    assert collector.read_collected(path)[1]["policy"].startswith("callable:")


# ------------------------------------------------------------------------------------------- description
def _space(**sensors) -> spaces.Dict:
    return spaces.Dict(sensors)


@pytest.mark.parametrize("box,layout,model_shape,scale", [
    (spaces.Box(0, 255, (3, 32, 32), np.uint8), "CHW", (3, 32, 32), 255.0),
    (spaces.Box(0, 255, (48, 40, 1), np.uint8), "HWC", (1, 48, 40), 255.0),
    (spaces.Box(0, 255, (32, 32, 3), np.uint8), "HWC", (3, 32, 32), 255.0),
    (spaces.Box(0.0, 1.0, (2, 60, 60), np.float32), "CHW", (2, 60, 60), 1.0),
    (spaces.Box(0.0, 1.0, (20, 30), np.float32), "HW", (1, 20, 30), 1.0),
    (spaces.Box(0.0, 255.0, (16, 16, 3), np.float32), "HWC", (3, 16, 16), 255.0),
])
def test_image_layouts(box, layout, model_shape, scale):
    got = describe.sensor_layout(box)
    assert (got.kind, got.layout, got.model_shape, got.scale) == ("image", layout, model_shape, scale)
    raw = box.sample()[None].repeat(2, 0)
    served = describe.to_model_layout(got, raw)
    assert served.shape == (2, *model_shape) and served.dtype == np.float32
    expected = {"CHW": raw, "HWC": np.moveaxis(raw, -1, 1), "HW": raw[:, None]}[layout] / scale
    np.testing.assert_allclose(served, expected, rtol=1e-6)


@pytest.mark.parametrize("box", [
    spaces.Box(-1.0, 1.0, (2, 4, 1047), np.float32),   # Hyperhot's sound: bounded but not in [0, 1]
    spaces.Box(0.0, 1.0, (2, 3, 2), np.float32),        # small 3-D array: too small to be an image
    spaces.Box(0.0, 1.0, (8, 32, 32), np.float32),      # 8 "channels": not an image layout
    spaces.Box(-np.inf, np.inf, (32, 32, 3), np.float32),  # unbounded
    spaces.Box(0, 1000, (32, 32), np.int32),            # beyond [0, 255]
])
def test_non_images_are_vectors(box):
    assert describe.sensor_layout(box).kind == "vector"


def test_inferred_specs_for_every_kind(capsys):
    rng = np.random.default_rng(0)
    space = _space(binary=spaces.Box(0, 255, (1, 28, 28), np.uint8), colour=spaces.Box(0, 255, (64, 64, 3), np.uint8),
                   grey=spaces.Box(0.0, 1.0, (1, 32, 32), np.float32), vec=spaces.Box(-np.inf, np.inf, (3,), np.float32),
                   label=spaces.Discrete(10), bits=spaces.MultiBinary(7))
    n = 50
    vec = rng.normal([1.0, -2.0, 5.0], [0.5, 2.0, 3.0], size=(n, 3)).astype(np.float32)
    arrays = {"binary": (rng.random((n, 1, 28, 28)) < 0.3).astype(np.uint8) * 255,
              "colour": rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8),
              "grey": rng.random((n, 1, 32, 32)).astype(np.float32), "vec": vec,
              "label": rng.integers(0, 10, n), "bits": rng.integers(0, 2, (n, 7)).astype(np.uint8)}
    cfg = describe.infer_model_config(space, arrays)
    printed = capsys.readouterr().out
    for name in space.spaces:
        assert f"  {name}:" in printed  # every choice is printed
    m = {s.name: s for s in cfg.modalities}
    assert (m["binary"].likelihood, m["binary"].network, m["binary"].shape) == ("bernoulli", "conv", (1, 28, 28))
    assert "binary" in printed.split("  binary:")[1].split("\n")[0]
    assert m["binary"].network_kwargs["conv_layers"] == [[32, 4, 2, 1], [64, 4, 2, 1]]  # 28 -> 14 -> 7
    assert (m["colour"].likelihood, m["colour"].shape, m["colour"].latent_dim) == ("bernoulli", (3, 64, 64), 32)
    assert len(m["colour"].network_kwargs["conv_layers"]) == 3  # 64 -> 32 -> 16 -> 8
    assert m["grey"].likelihood == "bernoulli" and m["grey"].latent_dim == 16
    # a vector sensor's latent is never smaller than the sensor (a 3-d state keeps 3 dimensions)
    assert (m["vec"].likelihood, m["vec"].network, m["vec"].latent_dim) == ("gaussian", "mlp", 3)
    np.testing.assert_allclose(m["vec"].normalisation.mean, vec.astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(m["vec"].normalisation.std, vec.astype(np.float64).std(0), rtol=1e-5)
    assert (m["label"].likelihood, m["label"].shape, m["label"].latent_dim) == ("categorical", (10,), 10)
    assert (m["bits"].likelihood, m["bits"].shape, m["bits"].latent_dim) == ("bernoulli", (7,), 4)
    assert cfg.core.latent_dim == 32 and cfg.core.hidden == (256, 256, 256)
    # the description builds, and every decoder returns its modality's shape
    model = build_model(cfg).eval()
    z = torch.zeros(2, cfg.core.latent_dim)
    sample = model.decode(z)
    for name, spec in m.items():
        assert tuple(sample[name].shape) == (2, *spec.shape)


def test_overrides_and_baselines(capsys):
    space = _space(image=spaces.Box(0, 255, (32, 32, 1), np.uint8), vec=spaces.Box(-1.0, 1.0, (2, 4), np.float32))
    stats = {"image": {"binary": False}, "vec": {"mean": 0.0, "std": 1.0}}
    cfg = describe.infer_model_config(space, statistics=stats, verbose=False,
                                      overrides={"image": {"latent_dim": 5, "likelihood": "gaussian"},
                                                 "core": {"latent_dim": 7}, "warmup_core_epochs": 3.0})
    assert capsys.readouterr().out == ""
    assert cfg.modality("image").latent_dim == 5 and cfg.modality("image").likelihood == "gaussian"
    assert cfg.core.latent_dim == 7 and cfg.warmup_core_epochs == 3.0
    jm = describe.infer_model_config(space, statistics=stats, kind="jmvae", verbose=False)
    assert jm.kind == "jmvae" and jm.core.hidden == ()
    with pytest.raises(ValueError, match="unknown override 'imgae'"):
        describe.infer_model_config(space, statistics=stats, overrides={"imgae": {}}, verbose=False)
    with pytest.raises(ValueError, match="unknown ModalitySpec fields"):
        describe.infer_model_config(space, statistics=stats, overrides={"image": {"size": 3}}, verbose=False)
    with pytest.raises(ValueError, match="needs train_arrays"):
        describe.infer_model_config(space, verbose=False)
    with pytest.raises(ValueError, match="supported sensors are Box, Discrete and MultiBinary"):
        describe.infer_model_config(_space(t=spaces.Tuple([spaces.Discrete(2)])), statistics={}, verbose=False)


# ------------------------------------------------------------------------------------------- loading
def test_load_env_splits_and_inferred_config(toy_file, capsys):
    splits = data.load_env_splits(TOY_ID, path=toy_file, collect_if_missing=False)
    arrays, _ = collector.read_collected(toy_file)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (36, 4, 12)
    assert splits.state_names == ("t", "episode") and splits.figure_hints == {"condition_on": "test_points",
                                                                               "cross_modal": True}
    assert splits.info["modalities"]["cam"]["layout"] == "HWC"
    batch = splits.test.batch(torch.arange(12))
    assert batch["cam"].shape == (12, 3, 24, 20) and batch["cam"].dtype == torch.float32
    torch.testing.assert_close(batch["cam"], torch.from_numpy(np.moveaxis(arrays["test_cam"], -1, 1) / 255.0).float())
    torch.testing.assert_close(batch["mode"], torch.nn.functional.one_hot(torch.from_numpy(arrays["test_mode"] - 1), 3).float())
    assert torch.equal(splits.state["test"], torch.from_numpy(arrays["test_state"]))
    # state rows follow the split's items: the vec sensor holds (t, episode) of its own row
    for split in ("train", "valid", "test"):
        ds = getattr(splits, split)
        assert torch.equal(ds.tensors["vec"][:, :2], splits.state[split])
    assert set(splits.normalisation) == {"vec"}
    cfg = presets.config_for_env(TOY_ID, splits)
    assert "inferred model description" in capsys.readouterr().out
    assert cfg.modality("cam").shape == (3, 24, 20) and cfg.modality("mask").likelihood == "bernoulli"
    model = build_model(cfg)
    out = model.loss(splits.train.batch(torch.arange(8)), epoch=1.0)
    assert torch.isfinite(out.loss)
    out.loss.backward()


def test_load_env_splits_checks_settings(toy_file, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="collected with other settings"):
        data.load_env_splits(TOY_ID, path=toy_file, n_train=99)
    with pytest.raises(FileNotFoundError, match="python -m envs.collect"):
        data.load_env_splits(TOY_ID, path=tmp_path / "none.npz", collect_if_missing=False)
    with pytest.raises(TypeError, match="unknown keyword"):
        data.load_env_splits(TOY_ID, path=toy_file, n_trian=3)
    monkeypatch.setenv("MHVAE_DATA_ROOT", str(tmp_path))
    splits = data.load_env_splits(TOY_ID, n_train=9, n_test=3, n_envs=1, progress=False)  # collected on demand
    assert len(splits.train) + len(splits.valid) == 9 and splits.info["path"].startswith(str(tmp_path))


class StateSensor(gym.Env):
    """A sensor that is itself called "state", beside a true state: the latter goes to ``_true_state``."""

    state_names = ("t",)
    observation_space = spaces.Dict({"state": spaces.Box(-10.0, 10.0, (2,), np.float32),
                                     "bits": spaces.MultiBinary(3)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {"state": np.array([self.t], np.float32)}

    def _obs(self):
        return {"state": np.array([self.t, -self.t], np.float32), "bits": np.array([self.t & 1, 0, 1], np.int8)}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 3, False, {"state": np.array([self.t], np.float32)}


def test_sensor_called_state_and_policy_loader(tmp_path):
    if "StateSensor-v0" not in gym.registry:
        gym.register("StateSensor-v0", entry_point=StateSensor)
    agent = tmp_path / "agent"
    agent.mkdir()
    seen = []

    def loader(path, vec_env):
        if path != agent:
            raise ValueError("not mine")
        seen.append(vec_env.num_envs)
        return lambda obs: np.zeros(vec_env.num_envs, dtype=np.int64)

    collector.register_policy_loader(loader)
    try:
        path = collector.collect("StateSensor-v0", 10, 4, n_envs=2, policy=agent, progress=False, path=tmp_path / "s.npz")
    finally:
        collector.POLICY_LOADERS.remove(loader)
    assert seen == [2, 2]  # one policy per split
    arrays, meta = collector.read_collected(path)
    assert meta["state_key"] == "_true_state" and meta["policy"] == "agent:agent"
    np.testing.assert_array_equal(arrays["train_state"][:, 0], arrays["train__true_state"][:, 0])
    splits = data.load_env_splits("StateSensor-v0", path=path)
    assert splits.modality_names == ("bits", "state") and splits.state_names == ("t",)  # Dict sorts its keys
    assert torch.equal(splits.state["train"][:, 0], splits.train.tensors["state"][:, 0])
