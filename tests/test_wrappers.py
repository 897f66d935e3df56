"""MHVAEObservation, SensorFailure and VecMHVAEObservation on PendulumSound with a small random-init MHVAE."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs  # noqa: F401
from mhvae_perception import presets, save_checkpoint
from mhvae_perception.wrappers import (MHVAEObservation, SensorFailure, VecMHVAEObservation, file_sha256,
                                       resolve_model)

SOUND_NORM = {"sound": {"mean": [[[440.0, 0.1]] * 3] * 2, "std": [[[20.0, 0.05]] * 3] * 2}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = presets.build_model("pendulum_sound", "mhvae", normalisation=SOUND_NORM)
    # make batch-norm statistics non-trivial so that eval vs train mode would differ
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m.encode({"image": torch.rand(16, 2, 60, 60).round(), "sound": 440 + 20 * torch.randn(16, 2, 3, 2)})
    return m.eval()


def direct(model, obs, modalities):
    with torch.no_grad():
        mu, _ = model.encode({n: torch.as_tensor(obs[n])[None] for n in modalities})
    return mu[0].numpy()


class RecordingEnv(gym.Wrapper):
    """Remembers the last raw observation so that tests can compare with a direct model call."""

    def reset(self, **kw):
        self.last, info = self.env.reset(**kw)
        return self.last, info

    def step(self, action):
        self.last, *rest = self.env.step(action)
        return (self.last, *rest)


def wrapped(model, modalities=("image",), **kw):
    raw = RecordingEnv(gym.make("PendulumSound-v0"))
    return raw, MHVAEObservation(raw, model, modalities, **kw)


@pytest.mark.parametrize("mods", [("image",), ("sound",), ("image", "sound")])
def test_latent_equals_direct_model_call(model, mods):
    raw, env = wrapped(model, mods)
    obs, info = env.reset(seed=1)
    assert env.observation_space == spaces.Box(-np.inf, np.inf, (10,), np.float32)
    assert obs.dtype == np.float32 and obs.shape == (10,)
    np.testing.assert_allclose(obs, direct(model, raw.last, mods), rtol=1e-5, atol=1e-6)
    assert info["modalities"] == mods
    for _ in range(3):
        obs, *_ = env.step(np.array([0.5], np.float32))
        np.testing.assert_allclose(obs, direct(model, raw.last, mods), rtol=1e-5, atol=1e-6)


def test_modalities_differ_and_normalisation_is_applied(model):
    raw, env = wrapped(model, ("sound",))
    obs, _ = env.reset(seed=2)
    # calling the networks on un-normalised sound gives another latent: the wrapper must normalise
    x = torch.as_tensor(raw.last["sound"])[None]
    with torch.no_grad():
        h = model.encoders["sound"](x)
        mu_raw, _ = model.core_posterior({"sound": h})
    assert not np.allclose(obs, mu_raw[0].numpy(), atol=1e-3)
    img = direct(model, raw.last, ("image",))
    assert np.abs(obs - img).max() > 1e-5  # a different input set gives a different latent


def test_checkpoint_path_and_eval_mode(model, tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", model)
    raw, env = wrapped(str(path), ("image", "sound"))
    assert env.checkpoint_path == path and not env.model.training
    obs, _ = env.reset(seed=3)
    np.testing.assert_allclose(obs, direct(model, raw.last, ("image", "sound")), rtol=1e-5, atol=1e-6)
    assert len(file_sha256(path)) == 64
    model.train()
    try:  # a model left in training mode is switched to eval before encoding
        m, _ = resolve_model(model)
        assert not m.training
    finally:
        model.eval()


def test_change_modalities_mid_episode_and_at_reset(model):
    raw, env = wrapped(model, ("image",))
    env.reset(seed=4)
    a = np.array([0.0], np.float32)
    env.step(a)
    env.set_modalities("sound")
    obs, _, _, _, info = env.step(a)
    assert info["modalities"] == ("sound",)
    np.testing.assert_allclose(obs, direct(model, raw.last, ("sound",)), rtol=1e-5, atol=1e-6)
    env.set_modalities(["sound", "image"])  # any order: stored in the model's order
    obs, _, _, _, info = env.step(a)
    assert info["modalities"] == ("image", "sound")
    np.testing.assert_allclose(obs, direct(model, raw.last, ("image", "sound")), rtol=1e-5, atol=1e-6)
    obs, info = env.reset(seed=5, options={"modalities": ("sound",)})
    assert env.modalities == ("sound",) and info["modalities"] == ("sound",)
    np.testing.assert_allclose(obs, direct(model, raw.last, ("sound",)), rtol=1e-5, atol=1e-6)


def test_sample_option_is_seeded_and_near_mean(model):
    _, env = wrapped(model, ("image",), sample=True)
    a, _ = env.reset(seed=6)
    b, _ = env.reset(seed=6)
    np.testing.assert_array_equal(a, b)
    _, mean_env = wrapped(model, ("image",))
    m, _ = mean_env.reset(seed=6)
    assert not np.allclose(a, m)


def test_errors_unknown_and_empty_subsets(model):
    with pytest.raises(ValueError, match="unknown modality 'lidar'"):
        wrapped(model, ("lidar",))
    with pytest.raises(ValueError, match="empty subset"):
        wrapped(model, ())
    _, env = wrapped(model)
    with pytest.raises(ValueError, match="empty subset"):
        env.set_modalities([])
    with pytest.raises(ValueError, match="unknown modality"):
        env.reset(options={"modalities": ("image", "touch")})
    assert env.modalities == ("image",)  # unchanged after a refused change
    with pytest.raises(TypeError, match="checkpoint path"):
        MHVAEObservation(gym.make("PendulumSound-v0"), 42)


class SpaceEnv(gym.Env):
    def __init__(self, space):
        self.observation_space = space
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)


def test_errors_wrong_keys_shapes_dtypes(model):
    good = gym.make("PendulumSound-v0").observation_space
    with pytest.raises(ValueError, match="lack modality 'sound'"):
        MHVAEObservation(SpaceEnv(spaces.Dict({"image": good["image"]})), model)
    with pytest.raises(ValueError, match=r"shape \(2, 64, 64\).*expects \(2, 60, 60\)"):
        MHVAEObservation(SpaceEnv(spaces.Dict({"image": spaces.Box(0, 1, (2, 64, 64), np.float32),
                                               "sound": good["sound"]})), model)
    with pytest.raises(TypeError, match="dtype uint8"):
        MHVAEObservation(SpaceEnv(spaces.Dict({"image": spaces.Box(0, 255, (2, 60, 60), np.uint8),
                                               "sound": good["sound"]})), model)
    with pytest.raises(TypeError, match="Dict"):
        MHVAEObservation(SpaceEnv(spaces.Box(0, 1, (3,), np.float32)), model)


class NaNSound(gym.ObservationWrapper):
    def observation(self, obs):
        obs = dict(obs)
        obs["sound"] = obs["sound"].copy()
        obs["sound"][0, 0, 0] = np.nan
        return obs


def test_nan_observation_is_an_error(model):
    env = MHVAEObservation(NaNSound(gym.make("PendulumSound-v0")), model, ("image", "sound"))
    with pytest.raises(ValueError, match="'sound' contains NaN"):
        env.reset(seed=0)
    env.set_modalities("image")  # a faulty sensor can be switched off
    obs, _ = env.reset(seed=0)
    assert np.all(np.isfinite(obs))


def test_sb3_check_env_and_monitor(model):
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.monitor import Monitor

    _, env = wrapped(model, ("image", "sound"))
    check_env(env, warn=False)
    mon = Monitor(env)
    mon.reset(seed=0)
    for _ in range(3):
        mon.step(mon.action_space.sample())
    assert mon.get_total_steps() == 3


def test_sensor_failure_never_drops_all_and_reports(model):
    _, inner = wrapped(model, ("image", "sound"))
    env = SensorFailure(inner, p=0.6, seed=0)
    obs, info = env.reset(seed=0)
    assert info["modalities"] == ("image", "sound") and info["failed_modalities"] == ()
    seen = set()
    for _ in range(100):
        obs, _, term, trunc, info = env.step(env.action_space.sample())
        assert len(info["modalities"]) >= 1
        assert set(info["modalities"]) | set(info["failed_modalities"]) == {"image", "sound"}
        assert inner.modalities == info["modalities"]
        seen.add(info["modalities"])
    assert seen == {("image",), ("sound",), ("image", "sound")}
    # rate: P(fail | not all failed) = (p - p^2) / (1 - p^2) with p = 0.6 -> 0.375 per sensor
    env.reset(seed=1)
    fails = [len(env.step(env.action_space.sample())[4]["failed_modalities"]) for _ in range(200)]
    assert 0.28 < np.mean(fails) / 2 < 0.47


def test_sensor_failure_schedule_and_dict(model):
    _, inner = wrapped(model, ("image", "sound"))
    env = SensorFailure(inner, p=lambda t: {"image": 0.0 if t < 5 else 0.99}, seed=0)
    env.reset(seed=0)
    infos = [env.step(env.action_space.sample())[4] for _ in range(30)]
    assert all(i["modalities"] == ("image", "sound") for i in infos[:4])
    assert sum(i["modalities"] == ("sound",) for i in infos[5:]) >= 20
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        SensorFailure(inner, p=1.0)
    with pytest.raises(TypeError, match="MHVAEObservation"):
        SensorFailure(gym.make("PendulumSound-v0"), p=0.1)


def test_vectorised_equals_single(model):
    from stable_baselines3.common.vec_env import DummyVecEnv

    n = 4
    venv = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0") for _ in range(n)]), model,
                               ("image", "sound"))
    singles = [MHVAEObservation(gym.make("PendulumSound-v0"), model, ("image", "sound")) for _ in range(n)]
    venv.seed(10)
    vobs = venv.reset()
    sobs = np.stack([s.reset(seed=10 + i)[0] for i, s in enumerate(singles)])
    assert vobs.shape == (n, 10) and vobs.dtype == np.float32
    np.testing.assert_allclose(vobs, sobs, rtol=1e-4, atol=1e-5)
    venv.set_modalities("sound", indices=[1, 3])
    singles[1].set_modalities("sound")
    singles[3].set_modalities("sound")
    actions = np.linspace(-2, 2, n, dtype=np.float32)[:, None]
    for _ in range(3):
        vobs, vrew, _, infos = venv.step(actions)
        sobs = np.stack([s.step(a)[0] for s, a in zip(singles, actions)])
        np.testing.assert_allclose(vobs, sobs, rtol=1e-4, atol=1e-5)
    assert infos[1]["modalities"] == ("sound",) and infos[0]["modalities"] == ("image", "sound")


def test_vectorised_terminal_observation_is_encoded(model):
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0", time_limit=2)] * 2), model)
    venv.reset()
    venv.step(np.zeros((2, 1), np.float32))
    _, _, dones, infos = venv.step(np.zeros((2, 1), np.float32))
    assert dones.all()
    term = infos[0]["terminal_observation"]
    assert isinstance(term, np.ndarray) and term.shape == (10,) and term.dtype == np.float32


def test_vectorised_sensor_failure(model):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mhvae_perception.wrappers import VecSensorFailure

    inner = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")] * 3), model, ("image", "sound"))
    venv = VecSensorFailure(inner, p=0.7, seed=0)
    venv.reset()
    seen = set()
    for _ in range(30):
        obs, _, _, infos = venv.step(np.zeros((3, 1), np.float32))
        assert np.all(np.isfinite(obs))
        for i, info in enumerate(infos):
            assert len(info["modalities"]) >= 1 and inner.modalities[i] == info["modalities"]
            assert set(info["modalities"]) | set(info["failed_modalities"]) == {"image", "sound"}
            seen.add(info["modalities"])
    assert seen == {("image",), ("sound",), ("image", "sound")}


def _make_wrapped(path, modalities):
    def make():
        import gymnasium

        return MHVAEObservation(gymnasium.make("envs:PendulumSound-v0", time_limit=20), path, modalities)
    return make


def test_subproc_vec_env_and_evaluate_policy(model, tmp_path):
    from stable_baselines3 import SAC
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    path = str(save_checkpoint(tmp_path / "m.pt", model))
    venv = SubprocVecEnv([_make_wrapped(path, ("sound",)), _make_wrapped(path, ("image",))])
    try:
        venv.seed(3)
        obs = venv.reset()
        local = [_make_wrapped(path, ("sound",))(), _make_wrapped(path, ("image",))()]
        expected = np.stack([e.reset(seed=3 + i)[0] for i, e in enumerate(local)])
        np.testing.assert_allclose(obs, expected, rtol=1e-4, atol=1e-5)
    finally:
        venv.close()
    agent = SAC("MlpPolicy", DummyVecEnv([lambda: Monitor(_make_wrapped(path, ("image",))())]), seed=0,
                learning_starts=10, batch_size=8, policy_kwargs={"net_arch": [16]})
    returns, lengths = evaluate_policy(agent, DummyVecEnv([lambda: Monitor(_make_wrapped(path, ("sound",))())]),
                                       n_eval_episodes=2, return_episode_rewards=True)
    assert lengths == [20, 20] and all(np.isfinite(returns))
