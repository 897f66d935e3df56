"""Agents: a short SAC / DQN run on the wrapped envs, safe saving and loading (nothing in an agent folder is
executed), the MHVAE hash check, metrics, the evaluation command and the normalised transfer."""
from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from agents.common import (AgentFileError, load_agent, make_vec_env, random_returns, read_agent_meta,
                           read_resume_state, save_agent, train_agent)
from agents.settings import SettingsError
from agents.config import condition_name, parse_modalities
from mhvae_perception import presets, save_checkpoint
from mhvae_perception.hashing import file_sha256


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mhvae") / "mhvae.pt"
    return save_checkpoint(path, presets.build("pendulum_sound", "mhvae").eval())


@pytest.fixture(scope="module")
def trained(checkpoint, tmp_path_factory):
    """One tiny SAC agent (300 steps) with its metrics."""
    out = tmp_path_factory.mktemp("agent") / "sac"
    scalars: list[tuple[str, float, int]] = []
    meta = train_agent("pendulum_sound", "image", str(checkpoint), seed=0, timesteps=300, out_dir=out,
                       hp={"learning_starts": 100, "batch_size": 32}, eval_freq=200, n_eval_episodes=1,
                       progress=True, tensorboard=True, device="cpu", log=lambda s: None,
                       log_scalar=lambda *a: scalars.append(a))
    return out, meta, scalars


class MarkerPayload:
    """A pickle that creates a file when it is unpickled (what a malicious agent file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_parse_conditions():
    sensors = ("image", "sound")
    assert parse_modalities("both", sensors) == ("image", "sound") == parse_modalities("all", sensors)
    assert parse_modalities("sound,image") == ("sound", "image")
    assert condition_name(["sound", "image"], sensors) == "both" and condition_name("image") == "image"
    assert condition_name(["a", "b", "c"], ("a", "b", "c")) == "all" and condition_name(["a", "b"], "abc") == "a+b"
    with pytest.raises(ValueError, match="every sensor"):
        parse_modalities("both")  # which sensors "both" means depends on the environment


def test_short_sac_run_saves_safely_with_mhvae_reference(checkpoint, trained):
    out, meta, scalars = trained
    assert (out / "policy.pt").is_file() and (out / "agent.json").is_file() and not (out / "agent.zip").exists()
    assert (out / "best" / "policy.pt").is_file() and read_agent_meta(out / "best")["format"] == "mhvae-agent/1"
    assert any((out / "tb").rglob("events.out.tfevents*"))
    stored = json.loads((out / "agent.json").read_text())
    assert stored == json.loads(json.dumps(meta))
    assert stored["mhvae"]["sha256"] == file_sha256(checkpoint) and stored["train_modalities"] == ["image"]
    assert stored["hyperparameters"]["policy_kwargs"] == {"net_arch": [64, 64]}  # not SB3's additions
    assert stored["observation_space"]["shape"] == [20] and stored["action_space"]["low"] == [-2.0]
    names = {name for name, _, _ in scalars}
    assert {"eval/mean_reward", "train/wall_s"} <= names  # metrics for sacred's log_scalar
    agent, meta2 = load_agent(out, device="cpu")
    assert meta2["algo"] == "sac" and meta2["latent_stack"] == 2
    # acts on latents of any test condition; batched vectorised evaluation
    venv = make_vec_env("pendulum_sound", "sound", str(checkpoint), n_envs=2, n_stack=meta2["latent_stack"])
    obs = venv.reset()
    assert obs.shape == (2, 20)
    action, _ = agent.predict(obs, deterministic=True)
    assert action.shape == (2, 1) and np.all(np.abs(action) <= 2)


def test_reloaded_agent_acts_exactly_like_the_trained_one(checkpoint, tmp_path):
    from stable_baselines3 import SAC

    venv = make_vec_env("pendulum_sound", "image", str(checkpoint), n_envs=1, n_stack=2)
    agent = SAC("MlpPolicy", venv, seed=3, policy_kwargs={"net_arch": [16]}, buffer_size=10, device="cpu")
    meta = {"env": "pendulum_sound", "algo": "sac", "state": False, "train_modalities": ["image"], "latent_stack": 2,
            "hyperparameters": {"policy_kwargs": {"net_arch": [16]}}, "mhvae": None}
    save_agent(agent, tmp_path / "a", meta)
    again, _ = load_agent(tmp_path / "a", device="cpu")
    obs = np.random.default_rng(0).standard_normal((5, 20)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(obs, deterministic=True)[0], agent.predict(obs, deterministic=True)[0])
    for (k, v), (k2, v2) in zip(agent.policy.state_dict().items(), again.policy.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_changed_checkpoint_is_detected(checkpoint, trained, tmp_path):
    out, _, _ = trained
    copy = tmp_path / "m.pt"
    copy.write_bytes(checkpoint.read_bytes())
    meta = json.loads((out / "agent.json").read_text())
    meta["mhvae"]["path"] = str(copy)
    moved = tmp_path / "agent"
    moved.mkdir()
    (moved / "policy.pt").write_bytes((out / "policy.pt").read_bytes())
    (moved / "agent.json").write_text(json.dumps(meta))
    load_agent(moved, device="cpu")
    with open(copy, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(ValueError, match="SHA-256"):
        load_agent(moved, device="cpu")
    copy.unlink()
    with pytest.raises(FileNotFoundError, match="no longer exists"):
        load_agent(moved, device="cpu")


def _sb3_zip_with_payload(path: Path, marker: Path) -> None:
    """An SB3-format agent.zip whose 'data' entry holds a serialized object, as SB3's loader would unpickle it."""
    data = {"policy_class": {":type:": "<class 'abc.ABCMeta'>",
                             ":serialized:": base64.b64encode(pickle.dumps(MarkerPayload(marker))).decode()}}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data", json.dumps(data))
        archive.writestr("_stable_baselines3_version", "2.9.2")


def test_crafted_sb3_zip_is_never_unpickled(trained, tmp_path):
    from stable_baselines3 import SAC

    out, _, _ = trained
    # the payload is live: SB3's own loader runs it (that is why agents are no longer stored this way)
    live = tmp_path / "live"
    live_marker = tmp_path / "executed-by-sb3"
    live.mkdir()
    _sb3_zip_with_payload(live / "agent.zip", live_marker)
    try:
        SAC.load(live / "agent.zip", device="cpu")
    except Exception:
        pass
    assert live_marker.exists()
    # an old-format folder (agent.zip only) is refused without reading it
    marker = tmp_path / "executed"
    old = tmp_path / "old"
    old.mkdir()
    _sb3_zip_with_payload(old / "agent.zip", marker)
    with pytest.raises(AgentFileError, match="unpickles"):
        load_agent(old, device="cpu")
    # a valid folder with a malicious agent.zip beside it: loads, the zip is ignored
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in ("agent.json", "policy.pt"):
        (mixed / name).write_bytes((out / name).read_bytes())
    _sb3_zip_with_payload(mixed / "agent.zip", marker)
    load_agent(mixed, device="cpu")
    assert not marker.exists()


def test_crafted_policy_pickle_is_refused(trained, tmp_path):
    out, _, _ = trained
    marker = tmp_path / "executed"
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"w": MarkerPayload(marker)}, evil / "policy.pt")  # a full pickle, as torch.save writes it
    meta = json.loads((out / "agent.json").read_text())
    meta["policy_sha256"] = file_sha256(evil / "policy.pt")  # an attacker controls both files
    (evil / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError, match="not a plain tensor state dict"):
        load_agent(evil, device="cpu")
    assert not marker.exists()


def test_tampered_missing_and_non_finite_weights(trained, tmp_path):
    out, _, _ = trained
    d = tmp_path / "a"
    d.mkdir()
    (d / "agent.json").write_bytes((out / "agent.json").read_bytes())
    with pytest.raises(FileNotFoundError, match=str(d / "policy.pt")):  # the real file name
        load_agent(d, device="cpu")
    state = torch.load(out / "policy.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].clone().fill_(float("nan"))
    torch.save(state, d / "policy.pt")
    with pytest.raises(AgentFileError, match="weights were changed"):
        load_agent(d, device="cpu")
    meta = json.loads((d / "agent.json").read_text())
    meta["policy_sha256"] = file_sha256(d / "policy.pt")
    (d / "agent.json").write_text(json.dumps(meta))
    with pytest.raises(AgentFileError, match="non-finite weights"):
        load_agent(d, device="cpu")
    with pytest.raises(FileNotFoundError, match="agent.json"):
        load_agent(tmp_path / "nowhere", device="cpu")


def test_hyperparameters_must_be_json(checkpoint, tmp_path):
    with pytest.raises(TypeError, match="plain JSON"):
        train_agent("pendulum_sound", "image", str(checkpoint), 0, 10, tmp_path / "x",
                    hp={"policy_kwargs": {"activation_fn": torch.nn.ReLU}}, log=lambda s: None)
    assert not (tmp_path / "x").exists()  # checked before any work


def test_random_policy_returns_are_pendulum_like():
    r = random_returns("pendulum_sound", 2, seed=0)
    assert r.shape == (2,) and np.all(r < 0) and np.all(r > -16.3 * 300)


def test_short_dqn_run_on_hyperhot(tmp_path):
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "hh.pt", presets.build("hyperhot", "mhvae").eval())
    meta = train_agent("hyperhot", "sound", str(path), seed=0, timesteps=150, out_dir=tmp_path / "dqn",
                       hp={"learning_starts": 50, "batch_size": 16, "target_update_interval": 50},
                       eval_freq=10_000, n_eval_episodes=1, progress=False, tensorboard=False, device="cpu",
                       log=lambda s: None)
    assert meta["algo"] == "dqn" and (tmp_path / "dqn" / "policy.pt").is_file()
    agent, _ = load_agent(tmp_path / "dqn", device="cpu")
    venv = make_vec_env("hyperhot", "image", str(path), n_envs=2, n_stack=meta["latent_stack"])
    action, _ = agent.predict(venv.reset(), deterministic=True)
    assert action.shape == (2,) and set(action.tolist()) <= set(range(6))


def test_evaluate_command(trained, tmp_path):
    from agents.evaluate import ex, summarise

    out, _, _ = trained
    run = ex.run(config_updates={"agent": str(out), "modalities": "sound", "episodes": 3, "n_envs": 2,
                                 "out_dir": str(tmp_path / "ev"), "device": "cpu"})
    result = json.loads((tmp_path / "ev" / "returns.json").read_text())
    assert len(result["returns"]) == 3 and result["lengths"] == [300] * 3 and result["condition"] == "sound"
    rows = (tmp_path / "ev" / "returns.csv").read_text().splitlines()
    assert rows[0] == "episode,return,length" and len(rows) == 4
    np.testing.assert_allclose([float(r.split(",")[1]) for r in rows[1:]], result["returns"])
    summary = run.result[next(iter(run.result))]
    assert summary["mean"] == pytest.approx(np.mean(result["returns"]))
    assert summary["sem"] == pytest.approx(np.std(result["returns"], ddof=1) / np.sqrt(3))
    s = summarise(np.array([1.0, 2.0, 3.0, 6.0]))
    assert (s["mean"], s["std"], s["sem"]) == pytest.approx((3.0, np.sqrt(3.5), np.sqrt(14 / 3) / 2))


def test_evaluate_with_failures_and_clear_errors(trained, tmp_path):
    from agents.evaluate import evaluate

    out, _, _ = trained
    result = evaluate({"agent": str(out), "modalities": "both", "episodes": 2, "n_envs": 2, "seed": 0,
                       "failure_p": 0.5, "random_reference": False, "out_dir": str(tmp_path / "f"), "device": "cpu"},
                      log=lambda s: None)
    assert result["failure_p"] == 0.5 and len(result["returns"]) == 2
    with pytest.raises(ValueError, match="agent=PATH"):
        evaluate({"agent": None, "episodes": 1, "n_envs": 1})
    try:
        import moviepy  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="moviepy"):
            evaluate({"agent": str(out), "episodes": 1, "n_envs": 1, "video": True})


def test_normalised_transfer_is_undefined_without_a_gain_over_random():
    from agents.transfer import normalised_transfer

    results = {"random": {"mean": -10.0}, "cells": {"image": {"image": {"mean": 10.0}, "sound": {"mean": 5.0}},
                                                    "sound": {"sound": {"mean": -10.0}, "image": {"mean": -10.0}},
                                                    "both": {"both": {"mean": -20.0}, "image": {"mean": -30.0}}}}
    norm = normalised_transfer(results, ["image", "sound", "both"])
    assert norm["image->sound"] == 75.0
    assert norm["sound->image"] is None  # as good as random on its own sensors
    assert norm["both->image"] is None  # worse than random: never a (sign-flipped) percentage


def test_interrupted_training_resumes_from_the_last_save(checkpoint, tmp_path):
    out = tmp_path / "resumable"
    hp = {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}}
    common = dict(seed=0, out_dir=out, hp=hp, eval_freq=100, n_eval_episodes=1, progress=False, tensorboard=False,
                  device="cpu", save_freq=100, keep_resume=True)

    def killed_during_step_300(name, value, step):
        if name == "eval/mean_reward" and step == 300:
            raise KeyboardInterrupt("killed")  # during step 300, before its save

    with pytest.raises(KeyboardInterrupt):
        train_agent("pendulum_sound", "image", str(checkpoint), timesteps=400, log=lambda s: None,
                    log_scalar=killed_during_step_300, **common)
    assert json.loads((out / "resume" / "resume.json").read_text())["num_timesteps"] == 200
    saved = torch.load(out / "resume" / "params.pt", weights_only=True)
    with np.load(out / "resume" / "replay.npz", allow_pickle=False) as replay:
        first_obs = replay["observations"].copy()
    assert len(first_obs) == 200 and np.abs(first_obs).sum() > 0
    logs: list[str] = []
    meta = train_agent("pendulum_sound", "image", str(checkpoint), timesteps=400, log=logs.append, **common)
    assert meta["resumed_from_step"] == 200 and any("resuming" in m for m in logs)
    with np.load(out / "resume" / "replay.npz", allow_pickle=False) as replay:
        assert len(replay["observations"]) == 400  # the 200 transitions of the first run were kept
        np.testing.assert_array_equal(replay["observations"][:200], first_obs)
    agent, _ = load_agent(out, device="cpu")
    first = saved["sb3"]["policy"]
    assert any(not torch.equal(first[k], v) for k, v in agent.policy.state_dict().items())  # trained further
    # other settings: the saved state is not theirs, and this folder's agent is not overwritten with them
    # (tests/test_agents_safety.py); in a folder of their own they start from step 0
    assert read_resume_state(out, {**meta, "seed": 1}, 400, logs.append) is None
    assert any("other settings" in m for m in logs)
    with pytest.raises(SettingsError, match=r"seed: 0 -> 1"):
        train_agent("pendulum_sound", "image", str(checkpoint), timesteps=100, log=logs.append,
                    **{**common, "seed": 1})
    other = train_agent("pendulum_sound", "image", str(checkpoint), timesteps=100, log=logs.append,
                        **{**common, "seed": 1, "out_dir": tmp_path / "other"})
    assert other["resumed_from_step"] == 0
    train_agent("pendulum_sound", "image", str(checkpoint), timesteps=100, log=logs.append,
                **{**common, "seed": 1, "keep_resume": False, "out_dir": tmp_path / "other2"})
    assert (tmp_path / "other2" / "agent.json").is_file()
    assert not (tmp_path / "other2" / "resume").exists()  # removed once the agent is saved


def test_collection_policy_acts_like_the_agent_on_raw_observations(checkpoint, trained, tmp_path):
    import gymnasium as gym

    from agents.policy_loader import collection_policy, register, unregister
    from mhvae_perception.data import collect as collector

    out, _, _ = trained
    gvec = gym.vector.SyncVectorEnv([lambda: gym.make("PendulumSound-v0")] * 2)
    policy = collection_policy(out, gvec)
    obs, _ = gvec.reset(seed=5)
    sb3 = make_vec_env("pendulum_sound", "image", str(checkpoint), n_envs=2, seed=5, n_stack=2)
    sobs = sb3.reset()
    agent, _ = load_agent(out, device="cpu")
    for _ in range(3):  # the same actions as SB3's VecFrameStack over the latent wrapper
        a1, a2 = policy(obs), agent.predict(sobs, deterministic=True)[0]
        np.testing.assert_allclose(a1, a2, atol=1e-4)
        obs, *_ = gvec.step(a1)
        sobs, *_ = sb3.step(a2)
    register()
    try:
        path = collector.collect("PendulumSound-v0", 20, 10, n_envs=2, policy=out, progress=False,
                                 path=tmp_path / "c.npz")
    finally:
        unregister()
    assert collection_policy not in collector.POLICY_LOADERS
    assert collector.read_collected(path)[1]["policy"].startswith("agent:")
    with pytest.raises(ValueError, match="not an agent folder"):
        collection_policy(tmp_path, gvec)


def test_hyperhot_hits_variant_adds_the_kill_reward_to_the_same_game():
    """The denser-reward variant is the same game (same random actions, same episodes) plus +1 per kill: its
    random-policy returns are never lower and are higher where the random ship killed an enemy."""
    from agents.common import env_settings

    assert env_settings("hyperhot_hits")["dataset"] == "hyperhot" and env_settings("hyperhot").env_kwargs == {}
    assert env_settings("hyperhot_hits").env_id == env_settings("hyperhot").env_id == "Hyperhot-v0"
    plain, hits = random_returns("hyperhot", 3, seed=0), random_returns("hyperhot_hits", 3, seed=0)
    assert np.all(hits >= plain) and np.any(hits > plain)


def test_train_sample_trains_on_posterior_samples_and_evaluates_on_means(checkpoint, tmp_path, monkeypatch):
    import agents.common as common

    means = make_vec_env("pendulum_sound", "sound", str(checkpoint), seed=3).reset()
    again = make_vec_env("pendulum_sound", "sound", str(checkpoint), seed=3).reset()
    draws = make_vec_env("pendulum_sound", "sound", str(checkpoint), seed=3, sample=True).reset()
    assert np.array_equal(means, again)  # the mean is deterministic; a sample is not the mean
    assert not np.allclose(draws, means)
    assert np.array_equal(draws, make_vec_env("pendulum_sound", "sound", str(checkpoint), seed=3, sample=True).reset())
    built = []
    monkeypatch.setattr(common, "make_vec_env", lambda *a, **k: built.append(k.get("sample", False))
                        or make_vec_env(*a, **k))
    meta = train_agent("pendulum_sound", "sound", str(checkpoint), seed=0, timesteps=150, out_dir=tmp_path / "a",
                       hp={"learning_starts": 100, "batch_size": 32}, eval_freq=1000, n_eval_episodes=1,
                       progress=False, tensorboard=False, device="cpu", log=lambda s: None, train_sample=True)
    assert built == [True, False]  # training env samples, evaluation env uses the means
    assert meta["train_sample"] is True and read_agent_meta(tmp_path / "a")["train_sample"] is True
    with pytest.raises(ValueError, match="train_sample.*state=True"):
        train_agent("pendulum_sound", None, None, seed=0, timesteps=10, out_dir=tmp_path / "s", state=True,
                    train_sample=True)


def test_hyperhot_win_rate_counts_the_episodes_that_reach_the_win_return():
    from agents.common import env_settings
    from agents.transfer import fmt, summarise

    win = env_settings("hyperhot_hits")["win_return"]
    hit = env_settings("hyperhot_hits").env_kwargs["hit_reward"]
    assert 3 * hit - 1 < win <= 10 + 4 * hit  # three kills without the win stay below; a win reaches it
    returns = np.array([[14.0, 2.0, -1.0, 14.0], [0.0, -1.0, 1.0, 13.0]])  # seeds x episodes
    s = summarise(returns, steps=450, win_return=win)
    assert s["win_rate"] == 3 / 8 and s["seed_win_rates"] == [0.5, 0.25]
    assert "won 38 %" in fmt(s)
    assert "win_rate" not in summarise(returns, steps=450) and "/step" in fmt(summarise(returns, steps=450))


def test_collection_policy_replaces_actions_with_random_ones_at_the_given_rate(trained):
    import gymnasium as gym

    from agents.policy_loader import collection_policy

    out, _, _ = trained
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("PendulumSound-v0")] * 200)
    obs, _ = vec.reset(seed=0)
    agent = collection_policy(out, vec)(obs)
    assert np.array_equal(collection_policy(out, vec, random_action_p=0.0)(obs), agent)
    mixed = collection_policy(out, vec, random_action_p=0.25, seed=1)(obs)
    swapped = ~np.isclose(mixed, agent).all(axis=1)
    assert 0.15 < swapped.mean() < 0.35 and np.all(np.abs(mixed) <= 2.0)
    assert np.array_equal(mixed, collection_policy(out, vec, random_action_p=0.25, seed=1)(obs))  # seeded
    with pytest.raises(TypeError, match="random_action_p"):
        collection_policy(out, vec, random_action_p=1.5)


def test_pendulum_latent_gap_measures_along_the_agents_own_episodes(checkpoint, trained, tmp_path):
    from agents.pendulum_latent_gap import latent_gap

    out = tmp_path / "one-latent"
    train_agent("pendulum_sound", "sound", str(checkpoint), seed=0, timesteps=120, out_dir=out, latent_stack=1,
                hp={"learning_starts": 100, "batch_size": 16}, eval_freq=10_000, n_eval_episodes=1, progress=False,
                tensorboard=False, device="cpu", log=lambda s: None)
    res = latent_gap(str(out), [str(checkpoint), str(checkpoint)], episodes=1)
    assert res["steps"] == 300 and res["trained_on"] == "sound" and 0.0 <= res["upright_fraction"] <= 1.0
    assert list(res["models"]) == [str(checkpoint)]  # one name given twice is one entry
    gaps = res["models"][str(checkpoint)]
    assert gaps["gap_elsewhere"] > 0 and gaps["spread"] > 0 and res["action_change_elsewhere"] >= 0
    with pytest.raises(ValueError, match="latent_stack=1"):
        latent_gap(str(trained[0]), [str(checkpoint)], episodes=1)  # the fixture's agent stacks 2 latents


def test_compare_transfer_tables_and_plots_several_runs(tmp_path, monkeypatch, capsys):
    import sys

    from agents import compare_transfer

    for name, norm in (("a", {"image->sound": 50.0, "sound->image": None}), ("b", {"image->sound": 90.0})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"normalised_transfer": norm}))
    out = tmp_path / "steps.png"
    monkeypatch.setattr(sys, "argv", ["x", "--out", str(out), f"first={tmp_path / 'a'}", f"second={tmp_path / 'b'}"])
    compare_transfer.main()
    text = capsys.readouterr().out
    assert "| first | 50 % | undefined |" in text and "| second | 90 % | – |" in text and out.stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="results.json"):
        compare_transfer.load(str(tmp_path))
