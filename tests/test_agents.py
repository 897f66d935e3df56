"""A short SAC run on the wrapped PendulumSound completes, saves the agent with its MHVAE reference, reloads."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.common import load_agent, make_vec_env, random_returns, train_agent
from agents.config import condition_name, parse_modalities
from mhvae_perception import presets, save_checkpoint
from mhvae_perception.wrappers import file_sha256


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mhvae") / "mhvae.pt"
    return save_checkpoint(path, presets.build_model("pendulum_sound", "mhvae").eval())


def test_parse_conditions():
    assert parse_modalities("both") == ("image", "sound")
    assert parse_modalities("sound,image") == ("sound", "image")
    assert condition_name(["sound", "image"]) == "both" and condition_name("image") == "image"


def test_short_sac_run_saves_with_mhvae_reference(checkpoint, tmp_path):
    out = tmp_path / "agent"
    meta = train_agent("pendulum_sound", "image", str(checkpoint), seed=0, timesteps=300, out_dir=out,
                       hp={"learning_starts": 100, "batch_size": 32}, eval_freq=200, n_eval_episodes=1,
                       progress=True, tensorboard=True, log=lambda s: None)
    assert (out / "agent.zip").is_file() and (out / "best" / "best_model.zip").is_file()
    assert any((out / "tb").rglob("events.out.tfevents*"))
    stored = json.loads((out / "agent.json").read_text())
    assert stored == json.loads(json.dumps(meta))
    assert stored["mhvae"]["sha256"] == file_sha256(checkpoint) and stored["train_modalities"] == ["image"]
    agent, meta2 = load_agent(out)
    assert meta2["algo"] == "sac"
    # acts on latents of any test condition; batched vectorised evaluation
    assert meta2["latent_stack"] == 2
    venv = make_vec_env("pendulum_sound", "sound", str(checkpoint), n_envs=2, n_stack=meta2["latent_stack"])
    obs = venv.reset()
    assert obs.shape == (2, 20)
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2)
    # a changed checkpoint is detected
    with open(checkpoint, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="SHA-256"):
        load_agent(out)


def test_random_policy_returns_are_pendulum_like():
    r = random_returns("pendulum_sound", 2, seed=0)
    assert r.shape == (2,) and np.all(r < 0) and np.all(r > -16.3 * 300)


def test_short_dqn_run_on_hyperhot(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "hh.pt", presets.build_model("hyperhot", "mhvae").eval())
    meta = train_agent("hyperhot", "sound", str(path), seed=0, timesteps=150, out_dir=tmp_path / "dqn",
                       hp={"learning_starts": 50, "batch_size": 16, "target_update_interval": 50},
                       eval_freq=10_000, n_eval_episodes=1, progress=False, tensorboard=False, log=lambda s: None)
    assert meta["algo"] == "dqn" and (tmp_path / "dqn" / "agent.zip").is_file()
    agent, _ = load_agent(tmp_path / "dqn")
    venv = make_vec_env("hyperhot", "image", str(path), n_envs=2, n_stack=meta["latent_stack"])
    action, _ = agent.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,) and set(action.tolist()) <= set(range(6))


def test_normalised_transfer_is_undefined_without_a_gain_over_random():
    from agents.transfer import normalised_transfer

    results = {"random": {"mean": -10.0}, "image": {"image": {"mean": 10.0}, "sound": {"mean": 5.0}},
               "sound": {"sound": {"mean": -10.0}, "image": {"mean": -10.0}}}
    norm = normalised_transfer(results, ["image", "sound"])
    assert norm["image->sound"] == 75.0
    assert norm["sound->image"] is None
