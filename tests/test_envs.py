"""Tests shared by both environments: registration, checkers, spaces, stacking, determinism, invalid actions."""
import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env

import envs

SHAPES = {
    "PendulumSound-v0": {"image": (2, 60, 60), "sound": (2, 3, 2)},
    "Hyperhot-v0": {"image": (2, 80, 80), "sound": (2, 4, 1047)},
    "HyperhotSpectrum-v0": {"image": (2, 80, 80), "sound": (2, 4, 524)},
}

# Warnings we accept, and why (see docs/ENVS.md):
# - Pendulum's action space is [-2, 2] by specification (identical to Pendulum-v1), not [-1, 1];
# - SB3 treats every 3-D Box as an image and wants uint8 in [0, 255] of at least 36x36; the spec asks for
#   float32 0/1 images and 3-D (stacked) sound arrays, so SB3's checker always emits these.
ALLOWED_GYM = [r"symmetric and normalized space"]
ALLOWED_SB3 = [
    r"is an image but its `dtype` is \(float32\)",
    r"is an image but the upper and lower bounds are not in \[0, 255\]",
    r"minimal resolution for an image is 36x36",
    r"symmetric and normalized Box action space",
]
IGNORED_CATEGORIES = (DeprecationWarning, PendingDeprecationWarning)  # from third-party imports (pkg_resources)


def _messages(record) -> list[str]:
    return [str(w.message) for w in record if not issubclass(w.category, IGNORED_CATEGORIES)]


def _unexpected(messages: list[str], allowed: list[str]) -> list[str]:
    return [m for m in messages if not any(re.search(p, m) for p in allowed)]


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_registered_and_make(env_id):
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, (envs.PendulumSoundEnv, envs.HyperhotEnv))
    assert env.spec.id == env_id


def _checker_messages(check, env_id: str, unwrapped: bool = True) -> list[str]:
    """The warning messages a checker emits on a fresh ``env_id``: the environment class itself (single frames,
    as Gymnasium's checker asks) or, ``unwrapped=False``, what ``gym.make`` returns (stacked, what agents see)."""
    env = gym.make(env_id).unwrapped if unwrapped else gym.make(env_id)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        check(env)
    return _messages(record)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_gymnasium_checker(env_id):
    msgs = _checker_messages(lambda env: gym_check_env(env, skip_render_check=True), env_id)
    assert _unexpected(msgs, ALLOWED_GYM) == []
    if env_id.startswith("Hyperhot"):
        assert msgs == []


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_sb3_checker(env_id):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    msgs = _checker_messages(lambda env: sb3_check_env(env, warn=True), env_id, unwrapped=False)
    assert _unexpected(msgs, ALLOWED_SB3) == []


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_spaces_shapes_dtypes_and_stacking(env_id):
    env = gym.make(env_id)
    space = env.observation_space
    assert isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"image", "sound"}
    for key, shape in SHAPES[env_id].items():
        assert space[key].shape == shape and space[key].dtype == np.float32
        assert np.all(np.isfinite(space[key].low)) and np.all(np.isfinite(space[key].high))
    assert np.all(space["image"].low == 0) and np.all(space["image"].high == 1)

    obs, info = env.reset(seed=3)
    for key, shape in SHAPES[env_id].items():
        assert obs[key].shape == shape and obs[key].dtype == np.float32
        np.testing.assert_array_equal(obs[key][0], obs[key][1])  # first frame repeated at reset
    assert set(np.unique(obs["image"])) <= {0.0, 1.0} and obs["image"].sum() > 0
    env.action_space.seed(3)
    prev = obs
    changed = False
    for _ in range(20):
        obs, *_ = env.step(env.action_space.sample())
        assert space.contains(obs)
        assert set(np.unique(obs["image"])) <= {0.0, 1.0}
        for key in ("image", "sound"):
            np.testing.assert_array_equal(obs[key][0], prev[key][1])  # stack shifts by one frame
        changed |= not np.array_equal(obs["image"][0], obs["image"][1])
        prev = obs
    assert changed


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_determinism(env_id):
    def rollout(seed):
        env = gym.make(env_id)
        env.action_space.seed(seed + 100)
        out = [env.reset(seed=seed)[0]]
        rewards = []
        for _ in range(60):
            obs, r, term, trunc, _ = env.step(env.action_space.sample())
            out.append(obs)
            rewards.append(r)
            if term or trunc:
                out.append(env.reset()[0])
        return out, rewards

    a, ra = rollout(7)
    b, rb = rollout(7)
    assert ra == rb and len(a) == len(b)
    for oa, ob in zip(a, b):
        for key in ("image", "sound"):
            np.testing.assert_array_equal(oa[key], ob[key])


@pytest.mark.parametrize(
    "env_id, bad",
    [
        ("PendulumSound-v0", np.array([2.5], dtype=np.float32)),
        ("PendulumSound-v0", np.array([-2.01])),
        ("PendulumSound-v0", np.array([np.nan], dtype=np.float32)),
        ("PendulumSound-v0", np.array([0.0, 0.0], dtype=np.float32)),
        ("PendulumSound-v0", "left"),
        ("Hyperhot-v0", 6),
        ("Hyperhot-v0", -1),
        ("Hyperhot-v0", 2.5),
        ("Hyperhot-v0", "shoot"),
    ],
)
def test_invalid_action_raises(env_id, bad):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"Invalid action .* not in action space (Box|Discrete)"):
        env.step(bad)


def test_valid_action_types_accepted():
    env = gym.make("PendulumSound-v0").unwrapped
    env.reset(seed=0)
    env.step(np.array([2.0]))  # float64 within bounds is fine
    env.step([-1.5])
    hh = gym.make("Hyperhot-v0").unwrapped
    hh.reset(seed=0)
    hh.step(np.int64(5))
    hh.step(0)


@pytest.mark.parametrize("env_id, shape", [("PendulumSound-v0", (300, 300, 3)), ("Hyperhot-v0", (420, 320, 3))])
def test_rgb_array_render(env_id, shape):
    env = gym.make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == shape and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) >= 3  # background + at least two coloured objects


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_human_render_headless_dummy_display(env_id, monkeypatch):
    pytest.importorskip("pygame")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    env = gym.make(env_id, render_mode="human")
    env.unwrapped.metadata = {**env.unwrapped.metadata, "render_fps": 1000}  # don't sleep in tests
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.unwrapped._viewer is not None and env.unwrapped._viewer.screen is not None
    assert env.render() is None
    env.close()
    assert env.unwrapped._viewer is None


def test_pygame_not_imported_by_envs():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, gymnasium, envs; gymnasium.make('Hyperhot-v0').reset(seed=0); print('pygame' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(envs.__file__).resolve().parent.parent).stdout
    assert out.strip() == "False"


# --- registration: time limit, stacking, true state -------------------------------------------------------
@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_registration_wrappers_and_spec_round_trip(env_id):
    spec = gym.spec(env_id)
    assert spec.max_episode_steps == envs.MAX_EPISODE_STEPS[env_id]
    assert [w.name for w in spec.additional_wrappers][-1] == "FrameStackObservation"
    env = gym.make(env_id)
    assert isinstance(env, gym.wrappers.FrameStackObservation)
    assert env.spec.max_episode_steps == envs.MAX_EPISODE_STEPS[env_id]
    again = gym.make(env.spec)  # the spec recreates the same stack of wrappers
    assert again.observation_space == env.observation_space
    a, _ = env.reset(seed=4)
    b, _ = again.reset(seed=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    # the class (or the wrapper below the stack: HyperhotSpectrum's spectra) returns single frames; gym.make
    # stacks the last two
    single = env.env.observation_space
    assert env_id == "HyperhotSpectrum-v0" or single == env.unwrapped.observation_space
    for key in a:
        assert env.observation_space[key].shape == (2, *single[key].shape)


def test_pendulum_true_state_in_info():
    env = gym.make("PendulumSound-v0")
    assert env.unwrapped.state_names == ("cos_theta", "sin_theta", "theta_dot")
    _, info = env.reset(seed=2)
    th, thdot = env.unwrapped.state
    np.testing.assert_allclose(info["state"], [np.cos(th), np.sin(th), thdot], rtol=1e-6)
    assert info["state"].dtype == np.float32 and info["state"].shape == (3,)
    for _ in range(5):
        _, _, _, _, info = env.step(np.array([1.5], dtype=np.float32))
        th, thdot = env.unwrapped.state
        np.testing.assert_allclose(info["state"], [np.cos(th), np.sin(th), thdot], rtol=1e-6)


def test_hyperhot_true_state_layout():
    env = gym.make("Hyperhot-v0")
    raw = env.unwrapped
    names = raw.state_names
    assert len(names) == 25 and len(set(names)) == 25
    _, info = env.reset(seed=0)
    state = dict(zip(names, info["state"]))
    assert state["ship_x"] == 68 and [state[f"enemy{i}_x"] for i in range(4)] == [32, 64, 96, 128]
    assert all(state[f"enemy{i}_alive"] == 1 for i in range(4)) and state["bullet_active"] == 0
    for _ in range(7):  # shoot, and an enemy fires at step 6
        _, _, _, _, info = env.step(3)
    state = dict(zip(names, info["state"]))
    assert state["ship_x"] == raw.player_x and state["enemy_dir"] == raw.enemy_dir
    assert state["bullet_active"] == 1 and (state["bullet_x"], state["bullet_y"]) == tuple(raw.player_bullet)
    for i in range(4):
        assert state[f"enemy{i}_x"] == raw.enemy_x[i] and state[f"enemy{i}_alive"] == raw.enemy_alive[i]
        active = bool(raw.enemy_bullet_active[i])
        assert state[f"enemy_bullet{i}_active"] == active
        expected = tuple(raw.enemy_bullets[i]) if active else (0, 0)
        assert (state[f"enemy_bullet{i}_x"], state[f"enemy_bullet{i}_y"]) == expected
    assert sum(state[f"enemy_bullet{i}_active"] for i in range(4)) >= 1


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_check_env_without_a_display_opens_no_window(env_id, monkeypatch):
    """Gymnasium's check_env renders every mode, "human" included; with no display and no SDL driver chosen the
    env picks SDL's dummy driver (and says so) instead of trying to open a window."""
    pytest.importorskip("pygame")
    from gymnasium.utils.env_checker import check_env

    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setattr("sys.platform", "linux")
    env = gym.make(env_id)
    with pytest.warns(UserWarning, match="no display"):
        check_env(env.unwrapped)
    import os

    assert os.environ.get("SDL_VIDEODRIVER") == "dummy"
