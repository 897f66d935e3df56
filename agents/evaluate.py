"""Evaluate a saved agent (sacred experiment): episode returns under any sensor condition.

    python agents/evaluate.py with agent=runs/agents/pendulum_sound-image-seed0 modalities=sound episodes=100
    python agents/evaluate.py with agent=PATH modalities=both failure_p=0.5          # sensors fail per step
    python agents/evaluate.py with agent=PATH video=True episodes=3                  # needs moviepy
    python agents/evaluate.py with agent=PATH env=my_package:MyEnv-v0     # an env registered by a module
    python -m agents.evaluate print_config

The agent folder's agent.json names the environment (an alias or a Gymnasium id; a file never chooses a module
to import: an id that importing this project does not register is passed again as ``env=module:Id``), the frame stack and the MHVAE checkpoint the agent was
trained on: the evaluation encodes with that checkpoint (its recorded SHA-256 checked). ``mhvae=PATH`` names
the same model elsewhere (same SHA-256); another checkpoint (another SHA-256, even of the same architecture) is
refused unless ``allow_other_mhvae=True``, which evaluates with it and warns (the agent never saw its latents). Outputs in ``out_dir`` (default ``<agent>/eval-<condition>``): returns.json (settings,
per-episode returns and lengths, summary) and returns.csv (one row per episode), videos/ with ``video=True``;
the summary is printed as a table (mean ± std, standard error, min, max) and logged as sacred metrics.
"""
from __future__ import annotations

from mhvae_perception.experiment import check_settings_first, prepare_experiment  # first: quiets sacred's warning

import csv
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sacred import Experiment

from agents.common import (check_mhvae_reference, check_video_support, load_agent, make_vec_env, out_of_range_counts,
                           random_returns, read_agent_meta, set_threads)
from agents.config import ON_OUT_OF_RANGE, condition_name, parse_modalities
from agents.environments import recorded_env
from agents.settings import SettingsError, check_evaluate_settings, check_text
from mhvae_perception.hashing import file_sha256
from mhvae_perception.hub import shipped_or_path

ex = prepare_experiment(Experiment("mhvae_evaluate", save_git_info=False))


@ex.config
def config():
    agent = None  # agent folder (agent.json + policy.pt), required
    env = None  # None: the agent's (agent.json; registered in this process); module:Id imports module first
    modalities = None  # a sensor | both / all | comma-separated list; None: the agent's training modalities
    episodes = 100
    n_envs = 10  # episodes run in parallel (one batched encoder pass per step)
    seed = 0
    failure_p = None  # per-step, per-sensor failure probability (float or {sensor: p}); None: no failures
    mhvae = None  # None: the agent's own checkpoint (agent.json's path, SHA-256 checked); a path: the same file
    allow_other_mhvae = False  # accept an mhvae with another SHA-256 than the agent's (warns: other latents)
    random_reference = True  # also measure a uniform random policy with the same number of episodes
    video = False  # record episodes of environment 0 with Gymnasium's RecordVideo (rgb_array; needs moviepy)
    on_out_of_range = ON_OUT_OF_RANGE  # outside the MHVAE's training range: warn (counted) | error | ignore
    device = "auto"
    num_threads = 1
    out_dir = None  # default: <agent>/eval-<condition>[-fail<p>]


def summarise(returns: np.ndarray) -> dict:
    """Mean, std (population), standard error of the mean, min, max of per-episode returns."""
    r = np.asarray(returns, dtype=np.float64)
    n = int(r.size)
    std = float(r.std())
    return {"n_episodes": n, "mean": float(r.mean()), "std": std,
            "sem": float(r.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
            "min": float(r.min()), "max": float(r.max())}


def table(rows: dict[str, dict]) -> str:
    lines = ["| policy | episodes | mean ± std | standard error | min | max |", "|---|---|---|---|---|---|"]
    for name, s in rows.items():
        lines.append(f"| {name} | {s['n_episodes']} | {s['mean']:.1f} ± {s['std']:.1f} | {s['sem']:.1f} | "
                     f"{s['min']:.1f} | {s['max']:.1f} |")
    return "\n".join(lines)


def check_settings(cfg: dict) -> dict:
    """The agent's description, after checking every setting (before any loading, stepping or writing)."""
    agent = cfg.get("agent")
    if agent is None or (isinstance(agent, str) and not agent.strip()):
        raise SettingsError("setting agent=None: pass the agent folder, python agents/evaluate.py with agent=PATH")
    check_text("agent", agent)
    try:
        meta = read_agent_meta(agent)
    except FileNotFoundError as err:
        raise SettingsError(f"setting agent={str(agent)!r}: {err}") from None
    check_evaluate_settings(cfg, meta)
    choose_mhvae(cfg, meta)
    if cfg.get("video"):
        check_video_support()
    return meta


def choose_mhvae(cfg: dict, meta: dict) -> dict | None:
    """The checkpoint the evaluation encodes with (``{"path", "sha256", "other"}``; None for a state agent): the
    agent's own (recorded path, SHA-256 checked), or ``mhvae`` when it is the same file (same SHA-256) or when
    ``allow_other_mhvae`` accepts another one (``other``: True). An agent acting on another model's latents is
    evaluated on inputs it never saw, so that is refused unless asked for."""
    if meta["state"]:
        return None
    agent, ref = Path(cfg["agent"]), meta.get("mhvae") or {}
    if cfg.get("mhvae") is None:
        if not ref.get("path"):
            raise SettingsError(f"{agent} was trained on an in-memory MHVAE (no checkpoint recorded): pass "
                                f"mhvae=PATH with allow_other_mhvae=True to evaluate it with a checkpoint")
        check_mhvae_reference(agent, meta)  # the recorded file still exists and has the recorded SHA-256
        return {"path": ref["path"], "sha256": ref["sha256"], "other": False}
    path = shipped_or_path(cfg["mhvae"])
    digest = file_sha256(path)
    if digest == ref.get("sha256"):
        return {"path": str(path), "sha256": digest, "other": False}
    if not cfg.get("allow_other_mhvae"):
        raise SettingsError(
            f"setting mhvae={str(cfg['mhvae'])!r}: {path} (SHA-256 {digest[:12]}...) is not the checkpoint {agent} was "
            f"trained on ({ref.get('path')}, SHA-256 {str(ref.get('sha256'))[:12]}...). Its latents differ, so the "
            f"agent would act on inputs it never saw. Leave mhvae=None to use the agent's own, or set "
            f"allow_other_mhvae=True to evaluate with this checkpoint on purpose")
    return {"path": str(path), "sha256": digest, "other": True}


def evaluate(cfg: dict, log=print, log_scalar=None) -> dict:
    """Run the evaluation and write returns.json / returns.csv; returns the summary."""
    meta = check_settings(cfg)
    model = choose_mhvae(cfg, meta)
    if model is not None and model["other"]:
        message = (f"evaluating {cfg['agent']} with {model['path']}, not the MHVAE the agent was trained on "
                   f"(allow_other_mhvae=True): it acts on latents it never saw")
        warnings.warn(message, UserWarning, stacklevel=2)
        log(f"warning: {message}")
    set_threads(cfg.get("num_threads"))
    # the checkpoint was chosen and checked above (choose_mhvae); the policy file is checked here
    agent, meta = load_agent(cfg["agent"], check_mhvae=False, device=cfg.get("device", "auto"))
    env = recorded_env(meta, cfg.get("env"))
    state = bool(meta["state"])
    mods = None if state else parse_modalities(cfg.get("modalities") or meta["train_modalities"], env.sensors)
    mhvae = None if state else model["path"]
    cond = "state" if state else condition_name(mods, env.sensors)
    steps = int(meta.get("episode_steps") or env.episode_steps)  # older agents: the env's time limit
    fail = cfg.get("failure_p")
    out = Path(cfg.get("out_dir") or Path(cfg["agent"]) / (f"eval-{cond}" + (f"-fail{fail}" if fail is not None else "")))
    n, n_envs = int(cfg["episodes"]), min(int(cfg["n_envs"]), int(cfg["episodes"]))
    if cfg.get("video"):
        n_envs = 1  # RecordVideo records environment 0: one environment, so every episode is filmed
    venv = make_vec_env(env, mods, mhvae, n_envs=n_envs, state=state, seed=int(cfg["seed"]),
                        n_stack=meta["latent_stack"], failure_p=fail, failure_seed=int(cfg["seed"]),
                        video_folder=out / "videos" if cfg.get("video") else None,
                        on_out_of_range=cfg.get("on_out_of_range", ON_OUT_OF_RANGE), episode_steps=steps)
    from stable_baselines3.common.evaluation import evaluate_policy

    t0 = time.perf_counter()
    returns, lengths = evaluate_policy(agent, venv, n_eval_episodes=n, deterministic=True,
                                       return_episode_rewards=True, warn=False)
    wall = time.perf_counter() - t0
    outside = out_of_range_counts(venv)
    venv.close()
    rows = {f"agent ({cond}{f', failure p={fail}' if fail is not None else ''})": summarise(returns)}
    rand = None
    if cfg.get("random_reference", True):
        rand = random_returns(env, n, seed=int(cfg["seed"]) + 200_000, episode_steps=steps)
        rows["uniform random policy"] = summarise(rand)
    result = {"agent": str(cfg["agent"]), "env": meta["env"], "algo": meta["algo"], "condition": cond,
              "modalities": list(mods) if mods else None, "failure_p": fail, "mhvae": mhvae,
              "mhvae_sha256": None if state else model["sha256"], "other_mhvae": bool(model and model["other"]),
              "policy_sha256": meta.get("policy_sha256"), "seed": int(cfg["seed"]),
              "episode_steps": steps, "wall_s": round(wall, 2), "summary": rows, "out_of_range_observations": outside,
              "returns": [float(r) for r in returns], "lengths": [int(k) for k in lengths],
              "random_returns": None if rand is None else [float(r) for r in rand]}
    out.mkdir(parents=True, exist_ok=True)  # only now: a run that fails earlier leaves no empty folder
    (out / "returns.json").write_text(json.dumps(result, indent=2))
    with open(out / "returns.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["episode", "return", "length"])
        writer.writerows((i, float(r), int(k)) for i, (r, k) in enumerate(zip(returns, lengths)))
    log(table(rows))
    if outside:
        log(f"observations outside the MHVAE's training range: {outside} of {int(sum(lengths))} steps")
    log(f"per-episode returns: {out / 'returns.json'}, {out / 'returns.csv'}")
    if log_scalar is not None:
        for i, r in enumerate(returns):
            log_scalar("episode_return", float(r), i)
        for key in ("mean", "std", "sem"):
            log_scalar(f"return_{key}", rows[next(iter(rows))][key], 0)
    return result


check_settings_first(ex, lambda config, command: check_settings(config))


@ex.main
def main(_config, _run):
    cfg = dict(_config)
    return evaluate(cfg, log_scalar=_run.log_scalar)["summary"]


if __name__ == "__main__":
    ex.run_commandline()
