"""Frozen wrapper vs fine-tuned extractor: does training the encoder from one sensor break acting from the other?

For each seed, SAC (agents/config.py's settings) learns an environment from one sensor's core latent z_c in two ways:

- ``wrapper``: :class:`MHVAEObservation` computes z_c outside the agent (the encoder frozen), ``MlpPolicy``;
- ``finetuned``: ``MultiInputPolicy`` with :class:`MHVAEExtractor` (``fine_tune=True``) on the raw Dict
  observation: the encoder learns with the policy's losses (SAC's actor and critics each train their own copy).

Both are tested over the same episodes from the training sensor and from the other one (the actor's extractor
switched with ``set_modalities``), beside a uniform random policy; transfer = (other − random) / (own − random).
Training speed (steps/s) is measured in the same run. Writes a JSON record, a Markdown table and a bar chart.

    python agents/extractor_compare.py --model pendulum_sound-mhvae-pipeline --train-sensor image \\
        --seeds 0 1 2 --timesteps 20000 --test-episodes 100 --out docs/extractor_pendulum
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import SAC
from stable_baselines3.common.evaluation import evaluate_policy

import envs  # noqa: F401  (registers PendulumSound-v0 and Hyperhot-v0)
from agents.common import random_returns
from agents.config import HYPERPARAMS
from mhvae_perception.hub import resolve_model
from mhvae_perception.wrappers import MHVAEExtractor, MHVAEObservation

VARIANTS = ("wrapper", "finetuned")


def make_agent(variant: str, env_id: str, model, sensor: str, seed: int) -> SAC:
    """SAC on ``sensor``'s z_c: through the wrapper (frozen) or through a fine-tuned extractor."""
    hp = json.loads(json.dumps(HYPERPARAMS["sac"]))  # a deep copy of the shared settings
    if variant == "wrapper":
        env = MHVAEObservation(gym.make(env_id), model, modalities=(sensor,))
        return SAC("MlpPolicy", env, seed=seed, verbose=0, **hp)
    hp["policy_kwargs"].update(features_extractor_class=MHVAEExtractor,
                               features_extractor_kwargs={"model": model, "modalities": [sensor], "fine_tune": True})
    return SAC("MultiInputPolicy", gym.make(env_id), seed=seed, verbose=0, **hp)


def test_returns(agent: SAC, variant: str, env_id: str, model, sensor: str, episodes: int, seed: int) -> np.ndarray:
    """Deterministic returns acting from ``sensor`` over ``episodes`` seeded test episodes."""
    if variant == "wrapper":
        env = MHVAEObservation(gym.make(env_id), model, modalities=(sensor,))
    else:
        agent.policy.actor.features_extractor.set_modalities(sensor)
        env = gym.make(env_id)
    env.reset(seed=seed)
    returns, _ = evaluate_policy(agent, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True,
                                 warn=False)
    return np.asarray(returns, dtype=np.float64)


def summary(values) -> dict:
    """Mean, standard error and count of the defined values (a seed's transfer is None when its agent did not
    beat the random policy from its own sensor: the ratio has no meaning there)."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if len(values) == 0:
        return {"mean": None, "se": None, "n": 0}
    return {"mean": float(values.mean()), "se": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1
            else 0.0, "n": int(len(values))}


def transfer_cell(summary_: dict, seeds: int) -> str:
    if summary_["n"] == 0:
        return "— (own no better than random)"
    cell = f"{summary_['mean']:.0%} ± {summary_['se']:.0%}"
    return cell if summary_["n"] == seeds else f"{cell} ({summary_['n']} of {seeds} seeds beat random)"


def table(record: dict) -> str:
    own, other = record["train_sensor"], record["test_sensor"]
    lines = [f"| variant | from {own} (own) | from {other} | transfer | train steps/s |", "|---|---|---|---|---|"]
    for variant, r in record["variants"].items():
        lines.append(f"| {variant} | {r['own']['mean']:.1f} ± {r['own']['se']:.1f} | {r['other']['mean']:.1f} ± "
                     f"{r['other']['se']:.1f} | {transfer_cell(r['transfer'], r['own']['n'])} | "
                     f"{r['steps_per_s']['mean']:.0f} |")
    lines.append(f"| random policy | {record['random']['mean']:.1f} ± {record['random']['se']:.1f} | | | |")
    return "\n".join(lines)


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    names = list(record["variants"])
    x = np.arange(len(names))
    for offset, key, label in ((-0.2, "own", f"acting from {record['train_sensor']} (trained on)"),
                               (0.2, "other", f"acting from {record['test_sensor']}")):
        ax.bar(x + offset, [record["variants"][n][key]["mean"] for n in names], 0.4, label=label,
               yerr=[record["variants"][n][key]["se"] for n in names], capsize=4)
    ax.axhline(record["random"]["mean"], color="grey", ls="--", label="random policy")
    ax.set_xticks(x, names)
    ax.set_ylabel("episode return (mean ± SE over seeds)")
    ax.set_title(f"{record['env_id']}: frozen wrapper vs fine-tuned extractor\n"
                 f"SAC {record['timesteps']:,} steps, {len(record['seeds'])} seeds, {record['test_episodes']} test episodes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env-id", default="PendulumSound-v0")
    p.add_argument("--model", default="pendulum_sound-mhvae-pipeline", help="a checkpoint or a shipped model name")
    p.add_argument("--train-sensor", default="image")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--timesteps", type=int, default=20_000)
    p.add_argument("--test-episodes", type=int, default=100)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--out", type=Path, required=True, help="output prefix: <out>.json, <out>.md, <out>.png")
    args = p.parse_args(argv)
    model, _ = resolve_model(args.model)  # a bad name or file stops here, before any training
    sensors = model.modality_names
    if args.train_sensor not in sensors or len(sensors) != 2:
        p.error(f"--train-sensor must be one of the model's two sensors {sensors}, got {args.train_sensor!r}")
    if args.timesteps < 1 or args.test_episodes < 2:
        p.error("--timesteps must be >= 1 and --test-episodes >= 2")
    other = next(s for s in sensors if s != args.train_sensor)
    torch.set_num_threads(1)
    started = time.time()
    rand = random_returns(args.env_id, args.test_episodes, seed=10_000)  # the env's own episode length
    results = {v: {"own": [], "other": [], "transfer": [], "steps_per_s": []} for v in args.variants}
    runs, total = 0, len(args.variants) * len(args.seeds)
    for variant in args.variants:
        for seed in args.seeds:
            agent = make_agent(variant, args.env_id, model, args.train_sensor, seed)
            t0 = time.time()
            agent.learn(args.timesteps)
            rate = args.timesteps / (time.time() - t0)
            own = test_returns(agent, variant, args.env_id, model, args.train_sensor, args.test_episodes, 10_000)
            oth = test_returns(agent, variant, args.env_id, model, other, args.test_episodes, 10_000)
            gain = own.mean() - rand.mean()
            r = results[variant]
            r["own"].append(own.mean()), r["other"].append(oth.mean()), r["steps_per_s"].append(rate)
            r["transfer"].append(float((oth.mean() - rand.mean()) / gain) if gain > 0 else None)
            runs += 1
            elapsed = time.time() - started
            print(f"[{runs}/{total}] {variant} seed {seed}: own {own.mean():.1f}, {other} {oth.mean():.1f}, "
                  f"{rate:.0f} steps/s; elapsed {elapsed / 60:.1f} min, ETA {elapsed / runs * (total - runs) / 60:.1f} min",
                  flush=True)
    record = {"command": "python agents/extractor_compare.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "env_id": args.env_id, "model": args.model, "train_sensor": args.train_sensor, "test_sensor": other,
              "seeds": args.seeds, "timesteps": args.timesteps, "test_episodes": args.test_episodes,
              "random": summary(rand), "wall_min": round((time.time() - started) / 60, 1),
              "variants": {v: {**{k: summary(vals) for k, vals in r.items()}, "per_seed": r} for v, r in results.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table(record) + "\n")
    plot(record, args.out.with_suffix(".png"))
    print(table(record))


if __name__ == "__main__":
    main()
