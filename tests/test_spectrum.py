"""envs.common.MagnitudeSpectrum and HyperhotSpectrum-v0: the sound as log-magnitude spectra."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import envs  # noqa: F401  (registers the environments)
from envs.common import MagnitudeSpectrum


class WaveEnv(gym.Env):
    """A Dict env whose "sound" is a given waveform (2 microphones) and whose "image" is untouched."""

    def __init__(self, wave: np.ndarray, bound: float = 1.0) -> None:
        self.wave = wave.astype(np.float32)
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0.0, 1.0, shape=(3,), dtype=np.float32),
            "sound": spaces.Box(-bound, bound, shape=wave.shape, dtype=np.float32)})
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return {"image": np.full(3, 0.5, np.float32), "sound": self.wave}, {}

    def step(self, action):
        return {"image": np.full(3, 0.5, np.float32), "sound": self.wave}, 0.0, False, False, {}


def test_a_pure_tone_gives_its_closed_form_spectrum():
    n, k, a = 64, 5, 0.8
    t = np.arange(n)
    wave = np.stack([a * np.cos(2 * np.pi * k * t / n), np.zeros(n)])
    env = MagnitudeSpectrum(WaveEnv(wave), keys=("sound",))
    obs, _ = env.reset(seed=0)
    assert obs["sound"].shape == (2, n // 2 + 1) == env.observation_space["sound"].shape
    expected = np.zeros((2, n // 2 + 1))
    expected[0, k] = np.log1p(a * n / 2)  # |X_k| = a n / 2 for a cosine on bin k, 0 elsewhere
    np.testing.assert_allclose(obs["sound"], expected, atol=1e-5)
    np.testing.assert_array_equal(obs["image"], np.full(3, 0.5, np.float32))  # other sensors untouched


def test_declared_bounds_are_exact_and_hold_at_the_extreme():
    n = 50
    env = MagnitudeSpectrum(WaveEnv(np.full((2, n), 2.0), bound=2.0))
    space = env.observation_space["sound"]
    assert space.dtype == np.float32 and np.all(space.low == 0)
    assert np.allclose(space.high, np.log1p(n * 2.0))  # a constant at the bound: DC magnitude n * bound
    obs, _ = env.reset()
    assert env.observation_space.contains(obs) and np.isclose(obs["sound"][0, 0], space.high[0, 0])


def test_bad_sensors_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="'speech' must be a bounded Box.*pass keys="):
        MagnitudeSpectrum(WaveEnv(np.zeros((2, 8))), keys=("speech",))
    with pytest.raises(TypeError, match="needs a Dict observation space"):
        MagnitudeSpectrum(gym.make("CartPole-v1"))


def test_hyperhot_spectrum_is_hyperhot_with_the_spectrum_of_its_sound():
    wave, spec = gym.make("Hyperhot-v0"), gym.make("HyperhotSpectrum-v0")
    a, _ = wave.reset(seed=4)
    b, _ = spec.reset(seed=4)
    wave.action_space.seed(1)
    for _ in range(15):
        action = wave.action_space.sample()
        a, ra, *_ = wave.step(action)
        b, rb, *_ = spec.step(action)
        assert ra == rb and spec.observation_space.contains(b)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_allclose(b["sound"], np.log1p(np.abs(np.fft.rfft(a["sound"].astype(np.float64)))),
                                   rtol=1e-6)
    assert b["sound"].max() > 1.0  # tones present
