"""PendulumSound: physics identical to Pendulum-v1, image and sound sensors against hand-computed cases."""
import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.pendulum_sound import (
    F0,
    MICROPHONES,
    SOUND_SPEED,
    PendulumSoundEnv,
    pixel_grid,
    rod_mask,
    sound_bounds,
    sound_features,
)


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_physics_identical_to_pendulum_v1(seed):
    ref = gym.make("Pendulum-v1").unwrapped
    env = gym.make("PendulumSound-v0")  # with its registered wrappers: TimeLimit(300), frame stacking
    ref.reset(seed=seed)
    env.reset(seed=seed)
    np.testing.assert_array_equal(env.unwrapped.state, ref.state)
    rng = np.random.default_rng(seed)
    for t in range(300):
        # in-range float32 actions (Pendulum-v1 clips out-of-range ones, PendulumSound rejects them);
        # include the extremes and bang-bang stretches so the speed clip at 8 is exercised
        u = np.array([rng.choice([-2.0, 2.0]) if t % 50 < 25 else rng.uniform(-2, 2)], dtype=np.float32)
        _, r_ref, *_ = ref.step(u)
        _, r, term, trunc, _ = env.step(u)
        np.testing.assert_array_equal(env.unwrapped.state, ref.state)
        assert r == r_ref
        assert not term
        assert trunc == (t == 299)


def test_speed_clip_reached_in_physics_test_regime():
    env = PendulumSoundEnv()
    env.reset(seed=0)
    speeds = []
    for _ in range(200):
        env.step(np.array([2.0], dtype=np.float32))
        speeds.append(abs(env.state[1]))
    assert max(speeds) == 8.0


def test_time_limit_kwarg():
    env = gym.make("PendulumSound-v0", time_limit=5)
    env.reset(seed=0)
    truncs = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(5)]
    assert truncs == [False] * 4 + [True]


def test_reward_formula():
    env = PendulumSoundEnv()
    env.reset(seed=0)
    env.state = np.array([3.0 * np.pi / 2, 1.5])  # normalised angle = -pi/2
    _, r, *_ = env.step(np.array([1.0], dtype=np.float32))
    assert r == pytest.approx(-((np.pi / 2) ** 2 + 0.1 * 1.5**2 + 0.001))


# --- sound ----------------------------------------------------------------------------------------------
def _tangent_theta_towards_top_mic() -> float:
    """θ where the circle's tangent passes through the microphone (0, 2.2): p·m = l² -> cos θ = 1 / 2.2."""
    return float(np.arccos(1 / 2.2))


def test_doppler_tip_moving_straight_at_microphone():
    th = _tangent_theta_towards_top_mic()
    # velocity = θ̇ (cos θ, -sin θ) points at the mic for θ̇ < 0 (approaching) and away for θ̇ > 0
    approaching = sound_features(th, -8.0)[2]
    receding = sound_features(th, 8.0)[2]
    assert approaching[0] == pytest.approx(F0 * SOUND_SPEED / (SOUND_SPEED - 8.0), rel=1e-6)  # 733.33 Hz
    assert receding[0] == pytest.approx(F0 * SOUND_SPEED / (SOUND_SPEED + 8.0), rel=1e-6)  # 314.29 Hz
    half = sound_features(th, -3.0)[2]
    assert half[0] == pytest.approx(F0 * SOUND_SPEED / (SOUND_SPEED - 3.0), rel=1e-6)
    # distance from the tangent point to the mic: sqrt(R² - l²)
    assert approaching[1] == pytest.approx(1 / (2.2**2 - 1), rel=1e-6)


def test_doppler_perpendicular_motion_and_amplitudes():
    # θ = 0: tip at (0, 1) moving along x, the top mic (0, 2.2) is straight above -> no Doppler shift
    feats = sound_features(0.0, 5.0)
    assert feats[2, 0] == pytest.approx(F0, rel=1e-7)
    assert feats[2, 1] == pytest.approx(1 / 1.2**2, rel=1e-6)
    # bottom mics at (∓2.2, -2.2): d² = 2.2² + 3.2²; velocity (5, 0) has component ±5·2.2/d towards them
    d = np.hypot(2.2, 3.2)
    assert feats[0, 1] == pytest.approx(1 / d**2, rel=1e-6)
    assert feats[1, 1] == pytest.approx(1 / d**2, rel=1e-6)
    assert feats[0, 0] == pytest.approx(F0 * SOUND_SPEED / (SOUND_SPEED + 5 * 2.2 / d), rel=1e-6)  # receding
    assert feats[1, 0] == pytest.approx(F0 * SOUND_SPEED / (SOUND_SPEED - 5 * 2.2 / d), rel=1e-6)  # approaching
    # at rest every mic hears f0
    np.testing.assert_allclose(sound_features(1.234, 0.0)[:, 0], F0, rtol=1e-7)


def test_sound_bounds_are_tight_and_contain_extremes():
    low, high = sound_bounds()
    np.testing.assert_allclose(low[:, 0], F0 * 20 / 28, rtol=2e-5)
    np.testing.assert_allclose(high[:, 0], F0 * 20 / 12, rtol=2e-5)
    r = np.linalg.norm(MICROPHONES, axis=1)
    np.testing.assert_allclose(low[:, 1], 1 / (r + 1) ** 2, rtol=2e-5)
    np.testing.assert_allclose(high[:, 1], 1 / (r - 1) ** 2, rtol=2e-5)
    ths = np.linspace(-np.pi, np.pi, 721)
    feats = np.array([sound_features(th, w) for th in ths for w in (-8.0, 0.0, 8.0)])
    assert np.all(feats >= low) and np.all(feats <= high)
    # and the extremes are (nearly) reached
    assert feats[..., 0].max() > 0.999 * F0 * 20 / 12 and feats[..., 0].min() < 1.001 * F0 * 20 / 28


def test_observed_sound_matches_state():
    env = PendulumSoundEnv()
    obs, _ = env.reset(seed=5)
    np.testing.assert_array_equal(obs["sound"], sound_features(*env.state))
    for _ in range(10):
        obs, *_ = env.step(np.array([1.0], dtype=np.float32))
    np.testing.assert_array_equal(obs["sound"], sound_features(*env.state))


def _state_from_sound(frame: np.ndarray) -> tuple[float, float]:
    """Trilaterate the tip from the three 1/d² amplitudes, then θ̇ from the Doppler shifts (least squares)."""
    d2 = 1.0 / frame[:, 1].astype(np.float64)
    # |p - m_i|² = d_i²  ->  linear in p after subtracting the first equation
    a = 2 * (MICROPHONES[1:] - MICROPHONES[0])
    b = d2[0] - d2[1:] + (MICROPHONES[1:] ** 2).sum(1) - (MICROPHONES[0] ** 2).sum()
    p = np.linalg.solve(a, b)
    th = np.arctan2(p[0], p[1])
    v_r = SOUND_SPEED * (1 - F0 / frame[:, 0].astype(np.float64))
    u = (MICROPHONES - p) / np.sqrt(d2)[:, None]
    g = u @ np.array([np.cos(th), -np.sin(th)])  # v_r = θ̇ · g
    return th, float(g @ v_r / (g @ g))


def _theta_from_image(img: np.ndarray) -> float:
    gx, gy = pixel_grid(100, 60)
    on = img > 0.5
    return float(np.arctan2(gx[on].mean(), gy[on].mean()))


def _ang(a: float, b: float) -> float:
    return abs((a - b + np.pi) % (2 * np.pi) - np.pi)


def test_each_modality_identifies_the_state():
    env = gym.make("PendulumSound-v0")  # two stacked frames
    env.reset(seed=11)
    rng = np.random.default_rng(0)
    for _ in range(150):
        obs, *_ = env.step(rng.uniform(-2, 2, size=1).astype(np.float32))
        th, thdot = env.unwrapped.state
        # sound alone, one frame: θ and θ̇
        s_th, s_thdot = _state_from_sound(obs["sound"][1])
        assert _ang(s_th, th) < 1e-3 and abs(s_thdot - thdot) < 1e-3
        # image alone, two frames: θ from the rod, θ̇ from the change between frames (pixel quantisation)
        i_th = _theta_from_image(obs["image"][1])
        i_thdot = ((i_th - _theta_from_image(obs["image"][0]) + np.pi) % (2 * np.pi) - np.pi) / 0.05
        assert _ang(i_th, th) < 0.05
        assert abs(i_thdot - thdot) < 1.5


# --- image ----------------------------------------------------------------------------------------------
def test_image_rod_geometry():
    gx, gy = pixel_grid(100, 60)
    assert gx[0, 0] == pytest.approx(-1.32 + 0.022) and gy[0, 0] == pytest.approx(1.32 - 0.022)
    up = rod_mask(0.0, gx, gy)  # θ = 0: rod points up
    assert up[18, 29] and up[18, 30] and not up[41, 29] and not up[18, 35]
    right = rod_mask(np.pi / 2, gx, gy)  # θ = π/2: tip at (1, 0)
    assert right[29, 41] and not right[29, 18]
    # capsule area (l·w + π(w/2)²) / pixel area; an axis-aligned rod covers 4 columns for a 4.5 px width
    expected = (1 * 0.2 + np.pi * 0.01) / 0.044**2
    for th in np.linspace(-np.pi, np.pi, 13):
        assert abs(rod_mask(th, gx, gy).sum() - expected) < 0.15 * expected


def test_image_observation_is_the_rod():
    env = PendulumSoundEnv()
    env.reset(seed=0)
    env.state = np.array([0.0, 0.0])
    obs, *_ = env.step(np.zeros(1, dtype=np.float32))  # upright & at rest stays upright
    gx, gy = pixel_grid(100, 60)
    np.testing.assert_array_equal(obs["image"], rod_mask(env.state[0], gx, gy).astype(np.float32))
    assert obs["image"][18, 29] == 1.0 and obs["image"][41, 29] == 0.0
