"""Cost of the MHVAE observation wrapper on PendulumSound (run by hand; one torch thread).

    python benchmarks/bench_wrapper.py [--checkpoint PATH] [--steps 2000] [--sac-steps 2000]

Prints env steps/s of the raw env, the wrapped env (per modality subset) and the vectorised wrapper with 8 envs,
the milliseconds the wrapper adds per step, and SB3 SAC training steps/s on the wrapped env (agents/config.py
settings, 2 stacked latents) next to SAC on Pendulum-v1 state observations, with ratios.
Targets (issue): wrapper adds < 0.5 ms/step; wrapped SAC >= 70 % of state-based SAC speed.
"""
from __future__ import annotations

import argparse
import time


import gymnasium as gym
import numpy as np
import torch

import envs  # noqa: F401
from mhvae_perception import presets
from mhvae_perception.hub import resolve_model
from mhvae_perception.wrappers import MHVAEObservation, VecMHVAEObservation


def steps_per_s(env, n: int, vec: bool = False) -> float:
    rng = np.random.default_rng(0)
    if vec:
        env.reset()
        acts = rng.uniform(-2, 2, (n, env.num_envs, 1)).astype(np.float32)
    else:
        env.reset(seed=0)
        acts = rng.uniform(-2, 2, (n, 1)).astype(np.float32)
    for a in acts[:20]:  # warm-up
        env.step(a)
    t0 = time.perf_counter()
    for a in acts:
        if vec:
            env.step(a)
        else:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
    dt = time.perf_counter() - t0
    return n * (env.num_envs if vec else 1) / dt


def sac_steps_per_s(make_env, n: int) -> float:
    from stable_baselines3 import SAC

    from agents.config import HYPERPARAMS

    hp = {**HYPERPARAMS["sac"], "learning_starts": 200}
    agent = SAC("MlpPolicy", make_env(), seed=0, verbose=0, **hp)
    agent.learn(300)  # warm-up: past learning_starts, so the timed part always trains
    t0 = time.perf_counter()
    agent.learn(n, reset_num_timesteps=False)
    return n / (time.perf_counter() - t0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="MHVAE checkpoint (default: random-init preset, same cost)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--sac-steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = resolve_model(args.checkpoint)[0] if args.checkpoint else presets.build("pendulum_sound").eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); model: {args.checkpoint or 'random init'}")

    raw = steps_per_s(gym.make("PendulumSound-v0"), args.steps)
    print(f"raw PendulumSound-v0          {raw:9.0f} steps/s  ({1e3 / raw:.3f} ms/step)")
    for mods in (("image",), ("sound",), ("image", "sound")):
        w = steps_per_s(MHVAEObservation(gym.make("PendulumSound-v0"), model, mods), args.steps)
        print(f"wrapped {'+'.join(mods):21s} {w:9.0f} steps/s  ({1e3 / w:.3f} ms/step; wrapper adds "
              f"{1e3 / w - 1e3 / raw:.3f} ms/step; ratio {w / raw:.2f})")

    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    n_vec = max(args.steps // 8, 50)
    vraw = steps_per_s(DummyVecEnv([lambda: gym.make("PendulumSound-v0")] * 8), n_vec, vec=True)
    print(f"8 envs raw DummyVecEnv        {vraw:9.0f} env-steps/s ({1e3 / vraw:.3f} ms/env-step)")
    for mods in (("image",), ("sound",), ("image", "sound")):
        v = steps_per_s(VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")] * 8), model, mods),
                        n_vec, vec=True)
        print(f"8 envs vec-wrapped {'+'.join(mods):10s} {v:9.0f} env-steps/s ({1e3 / v:.3f} ms/env-step; wrapper adds "
              f"{1e3 / v - 1e3 / vraw:.3f} ms/env-step; ratio {v / vraw:.2f})")

    state = sac_steps_per_s(lambda: gym.make("Pendulum-v1", max_episode_steps=300), args.sac_steps)
    print(f"SAC on Pendulum-v1 state      {state:9.1f} train steps/s")
    for mods in (("image",), ("image", "sound")):
        def make():
            return VecFrameStack(VecMHVAEObservation(DummyVecEnv([lambda: gym.make("PendulumSound-v0")]), model, mods), 2)
        s = sac_steps_per_s(make, args.sac_steps)
        print(f"SAC on wrapped {'+'.join(mods):14s} {s:9.1f} train steps/s  (ratio to state: {s / state:.2f}; "
              f"target >= 0.70)")


if __name__ == "__main__":
    main()
