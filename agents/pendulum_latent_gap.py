"""Where do the sensors' core latents disagree? |mean q(z_c | image) - mean q(z_c | sound)| along an agent's
own PendulumSound trajectories, upright (cos θ > 0.95, where a swing-up policy spends most of its time) and
elsewhere, for one or more MHVAEs.

The transfer predictor scores the latents on the random-policy test split, which is upright only 3.5 % of the
time; this measures them on the states the agent visits.

    python agents/pendulum_latent_gap.py --agent runs/transfer-pendulum-stack1/agents/image-seed0 \\
        --models runs/PendulumSound-v0-mhvae-seed0/checkpoints/best.pt pendulum_sound-mhvae-pipeline
"""
from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401  (registers PendulumSound-v0)
from agents.common import load_agent
from mhvae_perception.hub import resolve_model

UPRIGHT_COS = 0.95


@torch.no_grad()
def latent_gap(agent_dir: str, models: list[str], episodes: int = 3, seed: int = 700) -> dict:
    """Mean distance between the image and sound posterior means per model, upright and elsewhere, and the
    latents' spread (mean distance of the image latents from their mean) to compare models on one scale. The
    agent acts from its own training sensors through its own MHVAE (one latent per step: latent_stack 1);
    ``action_change_*``: how much its action would change, fed the other sensor's latent instead."""
    agent, meta = load_agent(agent_dir, device="cpu")
    if meta["state"] or int(meta["latent_stack"]) != 1:
        raise ValueError(f"{agent_dir}: needs an agent on single MHVAE latents (latent_stack=1), got "
                         f"state={meta['state']}, latent_stack={meta['latent_stack']}")
    mods = tuple(meta["train_modalities"])
    if len(mods) != 1:
        raise ValueError(f"{agent_dir}: needs an agent trained on one sensor, got {mods}")
    own = resolve_model(meta["mhvae"]["path"])[0]
    nets = [resolve_model(m)[0] for m in models]
    env = gym.make("PendulumSound-v0")
    other = "sound" if mods == ("image",) else "image"
    cos, gaps, images, changes = [], [], [], []
    for ep in range(int(episodes)):
        obs, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            x = {k: torch.as_tensor(obs[k][None]) for k in ("image", "sound")}
            zi = [m.encode({"image": x["image"]})[0][0] for m in nets]
            gaps.append([float((a - m.encode({"sound": x["sound"]})[0][0]).norm()) for a, m in zip(zi, nets)])
            images.append([a.numpy() for a in zi])
            cos.append(float(np.cos(env.unwrapped.state[0])))
            action, _ = agent.predict(own.encode({k: x[k] for k in mods})[0].numpy(), deterministic=True)
            swapped, _ = agent.predict(own.encode({other: x[other]})[0].numpy(), deterministic=True)
            changes.append(float(np.abs(action - swapped).max()))
            obs, _, term, trunc, _ = env.step(action[0])
            done = term or trunc
    cos, gaps, changes = np.array(cos), np.array(gaps), np.array(changes)
    up = cos > UPRIGHT_COS
    out = {"steps": int(len(cos)), "upright_fraction": float(up.mean()), "trained_on": mods[0],
           "action_change_upright": float(changes[up].mean()) if up.any() else None,
           "action_change_elsewhere": float(changes[~up].mean()) if (~up).any() else None, "models": {}}
    for j, name in enumerate(models):
        z = np.stack([row[j] for row in images])
        out["models"][name] = {"gap_upright": float(gaps[up, j].mean()) if up.any() else None,
                               "gap_elsewhere": float(gaps[~up, j].mean()) if (~up).any() else None,
                               "spread": float(np.linalg.norm(z - z.mean(0), axis=1).mean())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", required=True, help="agent folder (latent_stack 1) whose trajectories are used")
    parser.add_argument("--models", nargs="+", required=True, help="MHVAE checkpoints or shipped model names")
    parser.add_argument("--episodes", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    res = latent_gap(args.agent, args.models, args.episodes)
    print(f"{res['steps']} steps, upright (cos θ > {UPRIGHT_COS}) {100 * res['upright_fraction']:.0f} % of them; "
          f"the {res['trained_on']} agent's action changes by {res['action_change_upright']:.2f} upright and "
          f"{res['action_change_elsewhere']:.2f} elsewhere when fed the other sensor's latent (its own MHVAE)")
    print("| model | gap upright | gap elsewhere | latent spread |\n|---|---|---|---|")
    for name, r in res["models"].items():
        print(f"| {name} | {r['gap_upright']:.2f} | {r['gap_elsewhere']:.2f} | {r['spread']:.2f} |")


if __name__ == "__main__":
    main()
