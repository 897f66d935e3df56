"""Regression: the built-in environments' observation contract is frozen.

``tests/data/env_regression.json`` was recorded with the code as it was BEFORE the environments moved their
time limits to registration (``max_episode_steps``) and their frame stacking to Gymnasium's
``FrameStackObservation``: for a fixed reset seed and a fixed action sequence it holds a SHA-256 of every
image observation (float32 bytes), a weighted checksum of the sound observations, the rewards and the episode
ends, and the observation spaces' shapes, dtypes and bounds. The same rollouts must give the same values now.
(Recorded by running this file's ``rollout`` against the environments of commit d68f2fa.)
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the environments)

RECORD = json.loads((Path(__file__).parent / "data" / "env_regression.json").read_text())


def rollout(env_id: str, n_steps: int, seed: int, action_seed: int, make_kwargs: dict) -> dict:
    """The same rollout and digests as the recording script (reset without a seed at each episode end)."""
    env = gym.make(env_id, **make_kwargs)
    rng = np.random.default_rng(action_seed)
    digest = hashlib.sha256()
    sound_check, rewards, ends = 0.0, [], []

    def add(obs: dict, k: int) -> None:
        nonlocal sound_check
        image = np.asarray(obs["image"])
        assert image.dtype == np.float32 and obs["sound"].dtype == np.float32
        digest.update(image.tobytes())
        sound = np.asarray(obs["sound"], dtype=np.float64).ravel()
        weights = 1.0 + (np.arange(sound.size) % 97) / 97.0  # position-dependent: frame order and layout count
        sound_check += (k + 1) * float(sound @ weights) + float(np.abs(sound).sum())

    obs, _ = env.reset(seed=seed)
    add(obs, 0)
    for t in range(n_steps):
        if env_id.startswith("Pendulum"):
            action = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
        else:
            action = int(rng.integers(6))
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(float(reward))
        add(obs, t + 1)
        if terminated or truncated:
            ends.append([t, bool(terminated), bool(truncated)])
            obs, _ = env.reset()
            add(obs, t + 1)
    space = env.observation_space
    return {
        "image_sha256": digest.hexdigest(), "sound_checksum": sound_check, "ends": ends,
        "rewards_sha256": hashlib.sha256(np.asarray(rewards, np.float64).tobytes()).hexdigest(),
        "space": {k: {"shape": list(space[k].shape), "dtype": str(space[k].dtype),
                      "low_sha256": hashlib.sha256(np.ascontiguousarray(space[k].low).tobytes()).hexdigest(),
                      "high_sha256": hashlib.sha256(np.ascontiguousarray(space[k].high).tobytes()).hexdigest()}
                  for k in space.spaces},
    }


def _as_registration_limit(make_kwargs: dict) -> dict:
    """The recorded ``time_limit=N`` (the old in-env keyword) as Gymnasium's ``max_episode_steps=N``."""
    kwargs = dict(make_kwargs)
    if "time_limit" in kwargs:
        kwargs["max_episode_steps"] = kwargs.pop("time_limit")
    return kwargs


CASES = [(env_id, i, how) for env_id, runs in RECORD.items() for i in range(len(runs))
         for how in (("as recorded", "max_episode_steps") if "time_limit" in runs[i]["make_kwargs"] else ("as recorded",))]


@pytest.mark.parametrize("env_id,index,how", CASES)
def test_observation_and_reward_sequence_unchanged(env_id: str, index: int, how: str) -> None:
    rec = RECORD[env_id][index]
    kwargs = rec["make_kwargs"] if how == "as recorded" else _as_registration_limit(rec["make_kwargs"])
    got = rollout(env_id, rec["n_steps"], rec["seed"], rec["action_seed"], kwargs)
    assert got["space"] == rec["space"]
    assert got["ends"] == rec["ends"]
    assert got["rewards_sha256"] == rec["rewards_sha256"]
    assert got["image_sha256"] == rec["image_sha256"]
    # sounds go through exp/sqrt, whose last bit may differ between numpy builds: compare to 1e-7 relative
    assert got["sound_checksum"] == pytest.approx(rec["sound_checksum"], rel=1e-7)
