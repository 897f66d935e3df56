"""MHVAEObservation, SensorFailure and VecMHVAEObservation on PendulumSound with a small random-init MHVAE."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

import envs  # noqa: F401
from mhvae_perception import presets, save_checkpoint
from mhvae_perception.hashing import file_sha256
from mhvae_perception.hub import resolve_model
from mhvae_perception.wrappers import MHVAEObservation, SensorFailure, VecMHVAEObservation

# close to PendulumSound's random-policy statistics (Doppler frequency in Hz, amplitude 1/d^2 per microphone)
SOUND_NORM = {"sound": {"mean": [[[450.0, 0.11], [450.0, 0.11], [455.0, 0.25]]] * 2,
                        "std": [[[80.0, 0.05], [80.0, 0.05], [70.0, 0.16]]] * 2}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = presets.build("pendulum_sound", "mhvae", normalisation=SOUND_NORM)
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
    with pytest.raises(ValueError, match=r"channel-last \(60, 60, 2\)"):
        MHVAEObservation(SpaceEnv(spaces.Dict({"image": spaces.Box(0, 1, (60, 2, 60), np.float32),
                                               "sound": good["sound"]})), model)
    with pytest.raises(ValueError, match="layout of 'image' is 'NHWC'"):
        MHVAEObservation(gym.make("PendulumSound-v0"), model, layout={"image": "NHWC"})
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
        assert inner.encoded_modalities == info["modalities"]
        assert inner.modalities == ("image", "sound")  # the wiring is not touched, only availability
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
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        SensorFailure(inner, p=1.5)
    with pytest.raises(ValueError, match="unknown sensor 'lidar'"):
        SensorFailure(inner, p={"lidar": 0.5})
    with pytest.raises(TypeError, match="MHVAEObservation"):
        SensorFailure(gym.make("PendulumSound-v0"), p=0.1)
    from stable_baselines3.common.monitor import Monitor

    with pytest.raises(TypeError, match="directly"):  # no reaching through other wrappers
        SensorFailure(Monitor(inner), p=0.1)


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

    venv = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0", max_episode_steps=2)] * 2), model)
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
            assert len(info["modalities"]) >= 1 and inner.encoded_modalities[i] == info["modalities"]
            assert inner.modalities[i] == ("image", "sound")
            assert set(info["modalities"]) | set(info["failed_modalities"]) == {"image", "sound"}
            seen.add(info["modalities"])
    assert seen == {("image",), ("sound",), ("image", "sound")}


def _make_wrapped(path, modalities):
    def make():
        import gymnasium

        return MHVAEObservation(gymnasium.make("envs:PendulumSound-v0", max_episode_steps=20), path, modalities)
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


# ------------------------------------------------------------------ conventions, conversions and checks
# Gymnasium's checker always says these of a wrapped env with a latent (unbounded) observation space
ALLOWED_GYM = (r"has a wrapper applied to it", r"Box observation space (minimum|maximum) value is (-)?infinity",
               r"symmetric and normalized space")


def _gym_check(env) -> None:
    """Gymnasium's own env checker (it raises on API violations, e.g. a wrapper without RecordConstructorArgs);
    no warning beyond the expected ones."""
    import re
    import warnings

    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=True)
    msgs = [str(w.message) for w in record if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert [m for m in msgs if not any(re.search(p, m) for p in ALLOWED_GYM)] == []


@pytest.mark.parametrize("as_path", [True, False])
def test_gymnasium_check_env_and_spec_on_wrapped_pendulum(model, tmp_path, as_path):
    arg = str(save_checkpoint(tmp_path / "m.pt", model)) if as_path else model
    env = SensorFailure(MHVAEObservation(gym.make("PendulumSound-v0"), arg, ("image", "sound")), p=0.3, seed=0)
    _gym_check(env)
    names = [w.name for w in env.spec.additional_wrappers]
    assert names[-2:] == ["MHVAEObservation", "SensorFailure"]
    assert env.spec.additional_wrappers[-2].kwargs["modalities"] == ["image", "sound"]
    remade = env.spec.make()  # the spec rebuilds the same wrapped env
    assert isinstance(remade, SensorFailure) and remade.unwrapped.spec.id == "PendulumSound-v0"
    np.testing.assert_allclose(remade.reset(seed=3)[0], env.reset(seed=3)[0], rtol=1e-5, atol=1e-6)
    if as_path:
        assert '"model": "' in env.spec.to_json()  # a checkpoint path records as JSON


def test_gymnasium_check_env_on_wrapped_hyperhot():
    torch.manual_seed(0)
    hh = presets.build("hyperhot", "mhvae").eval()
    env = MHVAEObservation(gym.make("Hyperhot-v0"), hh, ("image", "sound"))
    _gym_check(env)
    assert env.spec.additional_wrappers[-1].name == "MHVAEObservation"


class ToyHWC(gym.Env):
    """A toy env with PendulumSound's sensors, the image channel-last (H, W, C) with values 0..255 (uint8 by
    default; ``image_low``/``image_high``/``dtype`` change what the space declares, not the values)."""

    def __init__(self, image_high: float = 255, dtype=np.uint8, image_low: float = 0):
        self.observation_space = spaces.Dict({
            "image": spaces.Box(image_low, image_high, (60, 60, 2), dtype),
            "sound": spaces.Box(-np.inf, np.inf, (2, 3, 2), np.float32)})
        self.action_space = spaces.Box(-1, 1, (1,), np.float32)

    def _obs(self):
        img = self.np_random.integers(0, 256, (60, 60, 2)).astype(self.observation_space["image"].dtype)
        mean, std = (np.asarray(SOUND_NORM["sound"][k]) for k in ("mean", "std"))
        return {"image": img, "sound": (mean + std * self.np_random.standard_normal((2, 3, 2))).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.last = self._obs()
        return self.last, {}

    def step(self, action):
        self.last = self._obs()
        return self.last, 0.0, False, False, {}


def test_uint8_channel_last_images_are_converted(model):
    raw = ToyHWC()
    env = MHVAEObservation(raw, model, ("image", "sound"))
    assert env.adapter.layouts["image"].layout == "HWC" and env.adapter.layouts["image"].scale == 255
    forced = MHVAEObservation(ToyHWC(), model, ("image",), layout={"image": "HWC"})  # the same, asked for
    assert forced.adapter.layouts["image"].layout == "HWC" and forced.adapter.layouts["image"].scale == 255
    with pytest.raises(ValueError, match="layout 'CHW'"):
        MHVAEObservation(ToyHWC(), model, ("image",), layout="CHW")
    _gym_check(env)
    obs, _ = env.reset(seed=0)
    chw = np.moveaxis(raw.last["image"], -1, 0).astype(np.float32) / 255
    expected = direct(model, {"image": chw, "sound": raw.last["sound"]}, ("image", "sound"))
    np.testing.assert_allclose(obs, expected, rtol=1e-5, atol=1e-6)
    # the same through the vectorised wrapper
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = VecMHVAEObservation(DummyVecEnv([ToyHWC]), model, ("image",))
    venv.seed(0)
    vobs = venv.reset()
    np.testing.assert_allclose(vobs[0], direct(model, {"image": chw}, ("image",)), rtol=1e-5, atol=1e-6)


def test_out_of_range_policies(model):
    from mhvae_perception.wrappers import OutOfRangeObservationError

    assert issubclass(OutOfRangeObservationError, ValueError)
    # values 0..255 from a space declared as floats in [0, 1] (what the Bernoulli image expects): refused
    with pytest.raises(OutOfRangeObservationError, match="'image'.*outside the model's training range"):
        MHVAEObservation(ToyHWC(image_high=1.0, dtype=np.float32), model, ("image",)).reset(seed=0)
    with pytest.warns(UserWarning, match="outside") as record:
        env = MHVAEObservation(ToyHWC(image_high=1.0, dtype=np.float32), model, ("image",), on_out_of_range="warn")
        env.reset(seed=0)
        infos = [env.step(np.zeros(1, np.float32))[4] for _ in range(3)]
    assert len([w for w in record if "outside" in str(w.message)]) == 1  # warned once ...
    assert env.out_of_range_counts["image"] == 4  # ... counted every time (reset + 3 steps)
    assert all(i["out_of_range"] == ("image",) for i in infos)
    quiet = MHVAEObservation(ToyHWC(image_high=1.0, dtype=np.float32), model, ("image",), on_out_of_range="ignore")
    quiet.reset(seed=0)
    assert "out_of_range" not in quiet.step(np.zeros(1, np.float32))[4] and quiet.out_of_range_counts["image"] == 0
    # a declared range the model never saw is refused at construction, before any step
    with pytest.raises(OutOfRangeObservationError, match=r"declares 'image' in \[-1, 1\]"):
        MHVAEObservation(ToyHWC(image_low=-1.0, image_high=1.0, dtype=np.float32), model, ("image",))
    # floats declared in [0, 255] are images in 0..255: scaled like uint8 (the data pipeline's rule)
    scaled = MHVAEObservation(ToyHWC(dtype=np.float32), model, ("image",))
    assert scaled.adapter.layouts["image"].scale == 255
    scaled.reset(seed=0)
    with pytest.raises(ValueError, match="on_out_of_range must be one of"):
        MHVAEObservation(ToyHWC(), model, on_out_of_range="maybe")


class GreyDigits(gym.Env):
    """Grey (H, W) uint8 images and a Discrete label: the conversions of the data pipeline (describe.py)."""

    observation_space = spaces.Dict({"image": spaces.Box(0, 255, (28, 28), np.uint8), "label": spaces.Discrete(10)})
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.last = {"image": self.np_random.integers(0, 256, (28, 28)).astype(np.uint8),
                     "label": int(self.np_random.integers(10))}
        return self.last, {}

    def step(self, action):
        return self.reset()[0], 0.0, False, False, {}


def test_grey_images_and_discrete_sensors_are_converted_like_the_data():
    torch.manual_seed(0)
    mnist = presets.build("mnist", "mhvae").eval()
    raw = GreyDigits()
    env = MHVAEObservation(raw, mnist, ("image", "label"))
    assert env.adapter.layouts["image"].layout == "HW" and env.adapter.layouts["label"].kind == "discrete"
    obs, _ = env.reset(seed=1)
    image = raw.last["image"][None].astype(np.float32) / 255
    label = np.eye(10, dtype=np.float32)[raw.last["label"]]
    np.testing.assert_allclose(obs, direct(mnist, {"image": image, "label": label}, ("image", "label")),
                               rtol=1e-5, atol=1e-6)
    _gym_check(env)


class ShiftSound(gym.ObservationWrapper):
    def __init__(self, env, shift):
        super().__init__(env)
        self.shift = shift

    def observation(self, obs):
        return {**obs, "sound": obs["sound"] + np.float32(self.shift)}


def test_gaussian_z_score_bound(model):
    from mhvae_perception.wrappers import OutOfRangeObservationError

    ok = MHVAEObservation(ShiftSound(gym.make("PendulumSound-v0"), 0.0), model, ("sound",))
    ok.reset(seed=0)  # the model's stored statistics: frequency std 70-80 Hz
    bad = MHVAEObservation(ShiftSound(gym.make("PendulumSound-v0"), 80 * 10 * 1.5), model, ("sound",))
    with pytest.raises(OutOfRangeObservationError, match="'sound'.*10 std"):
        bad.reset(seed=0)
    loose = MHVAEObservation(ShiftSound(gym.make("PendulumSound-v0"), 80 * 10 * 1.5), model, ("sound",), z_bound=1e6)
    loose.reset(seed=0)


def test_non_finite_observation_has_its_own_error(model):
    from mhvae_perception.wrappers import NonFiniteObservationError

    env = MHVAEObservation(NaNSound(gym.make("PendulumSound-v0")), model, ("sound",))
    with pytest.raises(NonFiniteObservationError, match="'sound' contains NaN"):
        env.reset(seed=0)
    assert issubclass(NonFiniteObservationError, ValueError)


def test_sensor_failure_near_one_is_bounded_and_conditional(model):
    _, inner = wrapped(model, ("image", "sound"))
    env = SensorFailure(inner, p=1 - 1e-12, seed=0)
    env.reset(seed=0)
    counts = {("image",): 0, ("sound",): 0}
    for _ in range(1000):  # a rejection loop would hang here
        info = env.step(env.action_space.sample())[4]
        counts[info["modalities"]] += 1
    assert sum(counts.values()) == 1000 and min(counts.values()) > 400
    always = SensorFailure(inner, p=1.0, seed=0)  # p = 1 exactly: one sensor, uniformly
    always.reset(seed=0)
    assert len(always.step(always.action_space.sample())[4]["modalities"]) == 1


def test_sensor_failure_subset_frequencies_match_the_closed_form(model):
    from mhvae_perception.models.subsets import subset_probabilities

    _, inner = wrapped(model, ("image", "sound"))
    probs = {"image": 0.3, "sound": 0.8}
    env = SensorFailure(inner, p=probs, seed=1)
    env.reset(seed=1)
    n = 2000
    seen = [env.step(env.action_space.sample())[4]["modalities"] for _ in range(n)]
    closed = subset_probabilities([0.3, 0.8])
    names = ("image", "sound")
    for subset, p in closed.items():
        freq = sum(s == tuple(names[i] for i in subset) for s in seen) / n
        assert abs(freq - p) < 4.5 * np.sqrt(p * (1 - p) / n) + 1e-9, (subset, freq, p)


def test_sensor_failure_with_one_wired_sensor_warns(model):
    _, inner = wrapped(model, ("image",))
    with pytest.warns(UserWarning, match="no effect with a single sensor"):
        SensorFailure(inner, p=0.5)


def test_availability_is_explicit_and_validated(model):
    _, env = wrapped(model, ("image",))
    with pytest.raises(ValueError, match="none of the wired modalities"):
        env.set_available(("sound",))
    env.set_available(("image", "sound"))
    assert env.encoded_modalities == ("image",)
    env.set_modalities(("sound",))  # rewiring clears the availability
    assert env.available is None and env.encoded_modalities == ("sound",)


def test_checkpoint_with_nan_weights_is_refused_by_the_wrappers(tmp_path):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mhvae_perception.hub.checkpoints import CheckpointError

    torch.manual_seed(0)
    broken = presets.build("pendulum_sound", "mhvae").eval()
    with torch.no_grad():
        broken.encoders["image"][0].weight[0, 0, 0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", broken)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        MHVAEObservation(gym.make("PendulumSound-v0"), str(path), ("image",))
    with pytest.raises(CheckpointError, match="non-finite weights"):
        VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")]), str(path), ("image",))


def test_vectorised_sensor_failure_at_probability_one_and_single_sensor_warning(model):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from mhvae_perception.wrappers import VecSensorFailure

    inner = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")] * 4), model, ("image", "sound"))
    venv = VecSensorFailure(inner, p=1.0, seed=0)  # every sensor fails: exactly one survives, uniformly
    venv.reset()
    counts = {("image",): 0, ("sound",): 0}
    for _ in range(50):
        for info in venv.step(np.zeros((4, 1), np.float32))[3]:
            counts[info["modalities"]] += 1
            assert len(info["failed_modalities"]) == 1
    assert min(counts.values()) > 60  # 200 draws, 100 expected each
    with pytest.raises(TypeError, match="directly"):
        from stable_baselines3.common.vec_env import VecFrameStack

        VecSensorFailure(VecFrameStack(inner, 2), p=0.1)
    single = VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")]), model, ("sound",))
    with pytest.warns(UserWarning, match="no effect with a single sensor"):
        VecSensorFailure(single, p=0.5)
