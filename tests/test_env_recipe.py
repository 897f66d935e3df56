"""What a user's own environment needs from the pipeline (issue 19): the true state from an info key, an
attribute at any wrapper level or a named sensor; latents never below a vector sensor's size; the transfer
recipe's loss weights from a stated rule; a short default schedule for environment datasets."""
from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from mhvae_perception import data
from mhvae_perception.data import collect as collector
from mhvae_perception.data import describe
from mhvae_perception.models.specs import ModalitySpec

PIXELS_ID = "PixelsBesideState-v0"


class PixelsBesideState(gym.Env):
    """A Dict env as users write them: pixels beside the state vector, a different physical state in
    ``info["qpos"]``, and no ``state_names`` on the env itself (a wrapper declares them)."""

    observation_space = spaces.Dict({"pixels": spaces.Box(0, 255, (16, 16, 1), np.uint8),
                                     "state": spaces.Box(-np.inf, np.inf, (4,), np.float32)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), self._info()

    def _obs(self):
        pixels = np.zeros((16, 16, 1), np.uint8)
        pixels[self.t % 16] = 255
        return {"pixels": pixels, "state": np.array([self.t, 2 * self.t, -self.t, 0.5], np.float32)}

    def _info(self):
        return {"qpos": np.array([10.0 + self.t, 20.0 + self.t], np.float32),
                "state": np.array([self.t, 7.0, 8.0], np.float32)}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 4, False, self._info()


class DeclaresStateNames(gym.Wrapper):
    """The state names live on a wrapper, not on ``env.unwrapped``."""

    state_names = ("t", "a", "b")


def _register() -> None:
    if PIXELS_ID not in gym.registry:
        gym.register(PIXELS_ID, entry_point=PixelsBesideState)
    if "PixelsWrapped-v0" not in gym.registry:
        gym.register("PixelsWrapped-v0", entry_point=lambda: DeclaresStateNames(PixelsBesideState()))


@pytest.mark.parametrize("source, names, expected", [
    ("sensor:state", ["state[0]", "state[1]", "state[2]", "state[3]"], lambda obs, info: obs["state"]),
    ("info:qpos", ["qpos[0]", "qpos[1]"], lambda obs, info: info["qpos"]),
])
def test_state_from_a_sensor_or_an_info_key(tmp_path, source, names, expected):
    _register()
    path = collector.collect(PIXELS_ID, 9, 5, n_envs=1, progress=False, path=tmp_path / "d.npz", state_source=source)
    arrays, meta = collector.read_collected(path)
    assert meta["state_names"] == names and meta["settings"]["state_source"] == source
    # row by row, the stored state is the one the env gave beside the stored observation
    env = PixelsBesideState()
    obs, info = env.reset(seed=0)
    stored = arrays[f"train_{meta['state_key']}"]  # "train__true_state": a sensor is called "state"
    for row in range(9):
        np.testing.assert_array_equal(stored[row], expected(obs, info))
        obs, _, done, _, info = env.step(0)
        if done:
            obs, info = env.reset()
    splits = data.load_env_splits(PIXELS_ID, path=path)
    assert splits.state_names == tuple(names)
    assert "state" in splits.modality_names  # the state sensor stays a sensor too


def test_state_names_declared_on_a_wrapper_are_found(tmp_path):
    _register()
    path = collector.collect("PixelsWrapped-v0", 6, 3, n_envs=2, progress=False, path=tmp_path / "w.npz")
    arrays, meta = collector.read_collected(path)
    assert meta["state_names"] == ["t", "a", "b"]  # auto: info["state"] named by the wrapper's state_names
    np.testing.assert_array_equal(arrays["train__true_state"][:, 1:], np.tile([7.0, 8.0], (6, 1)))
    # a sensor whose width differs from the declared names gets generic names
    path = collector.collect("PixelsWrapped-v0", 6, 3, n_envs=1, progress=False, path=tmp_path / "s.npz",
                             state_source="sensor:state")
    assert collector.read_collected(path)[1]["state_names"] == [f"state[{i}]" for i in range(4)]


def test_without_declared_names_auto_records_no_state(tmp_path):
    _register()
    path = collector.collect(PIXELS_ID, 6, 3, n_envs=1, progress=False, path=tmp_path / "n.npz")
    arrays, meta = collector.read_collected(path)
    assert meta["state_names"] is None and "train__true_state" not in arrays


@pytest.mark.parametrize("source, message", [
    ("sensor:lidar", "no sensor 'lidar' (sensors: ['pixels', 'state'])"),
    ("qpos", "state_source must be one of auto, none, info:<key>, sensor:<name>"),
    ("info:", "state_source must be one of"),
])
def test_bad_state_source_refused_before_any_file(tmp_path, source, message):
    _register()
    with pytest.raises(ValueError, match=re.escape(message)):
        collector.collect(PIXELS_ID, 6, 3, n_envs=1, progress=False, path=tmp_path / "x.npz", state_source=source)
    assert list(tmp_path.iterdir()) == []


def test_missing_info_key_says_which_and_how():
    _register()
    with pytest.raises(ValueError, match=r"info\['joint'\].*return info\['joint'\]"):
        collector.collect_split(PIXELS_ID, 4, [0], {}, "random", state_source="info:joint")


@pytest.mark.parametrize("size, latent", [(1, 2), (4, 4), (17, 17), (64, 64), (300, 64)])
def test_vector_latent_never_below_the_sensor(size, latent):
    space = spaces.Dict({"image": spaces.Box(0, 255, (16, 16), np.uint8),
                         "vec": spaces.Box(-np.inf, np.inf, (size,), np.float32)})
    stats = {"image": {"binary": False}, "vec": {"mean": [0.0] * size, "std": [1.0] * size}}
    cfg = describe.infer_model_config(space, statistics=stats, verbose=False)
    assert cfg.modality("vec").latent_dim == latent
    assert cfg.core.latent_dim >= latent


def _spec(name, shape, likelihood):
    return ModalitySpec(name, shape, likelihood, 8, "mlp", {})


def test_transfer_recipe_weights_follow_the_stated_rule():
    # PendulumSound's sensors: 2x60x60 Bernoulli pixels, 12 Gaussian sound values -> 7200 vs 12 * 30 = 360
    pendulum = [_spec("image", (2, 60, 60), "bernoulli"), _spec("sound", (2, 3, 2), "gaussian")]
    recipe = describe.transfer_recipe(pendulum)
    assert recipe == {"modalities": {"image": {"recon_weight": 1.0, "kl_weight": 10.0},
                                     "sound": {"recon_weight": 20.0, "kl_weight": 10.0}},
                      "agreement_weight": 10.0}
    # Hyperhot's: 2x80x80 pixels against a 2x4x1047 Gaussian waveform -> the image is the one weighted up
    hyperhot = [_spec("image", (2, 80, 80), "bernoulli"), _spec("sound", (2, 4, 1047), "gaussian")]
    weights = describe.transfer_recipe(hyperhot)["modalities"]
    assert weights["sound"]["recon_weight"] == 1.0
    assert weights["image"]["recon_weight"] == pytest.approx(2 * 4 * 1047 * 30 / (2 * 80 * 80), abs=1e-3)
    # capped at 100; the baselines get the reconstruction weights only
    tiny = [_spec("image", (1, 64, 64), "bernoulli"), _spec("flag", (1,), "bernoulli")]
    assert describe.transfer_recipe(tiny, "jmvae") == {"modalities": {"image": {"recon_weight": 1.0},
                                                                      "flag": {"recon_weight": 100.0}}}
