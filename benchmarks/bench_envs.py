"""Steps per second of PendulumSound-v0 and Hyperhot-v0 next to Pendulum-v1 rendering rgb_array every step.

Run by hand: ``python benchmarks/bench_envs.py [--steps 3000] [--repeats 3]``. Each environment is stepped
with seeded uniform random actions (resetting at episode ends); the best of ``repeats`` timings is reported,
all in the same process so the ratios compare like with like.
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # Pendulum-v1's rgb_array renderer initialises pygame's display
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import gymnasium as gym

import envs  # noqa: F401


def steps_per_second(env_id: str, n_steps: int, render: bool = False, **kwargs) -> float:
    """Time ``n_steps`` random steps (plus ``env.render()`` after each when ``render``)."""
    env = gym.make(env_id, **kwargs)
    env.action_space.seed(0)
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(n_steps)]
    t0 = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a)
        if render:
            env.render()
        if terminated or truncated:
            env.reset()
    elapsed = time.perf_counter() - t0
    env.close()
    return n_steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cases = [
        ("Pendulum-v1 (rgb_array, render() every step)", "Pendulum-v1", True, {"render_mode": "rgb_array"}),
        ("Pendulum-v1 (no rendering)", "Pendulum-v1", False, {}),
        ("PendulumSound-v0", "PendulumSound-v0", False, {}),
        ("Hyperhot-v0", "Hyperhot-v0", False, {}),
    ]
    results = {}
    for name, env_id, render, kwargs in cases:
        results[name] = max(steps_per_second(env_id, args.steps, render, **kwargs) for _ in range(args.repeats))
    ref = results[cases[0][0]]
    print(f"{'environment':48s} {'steps/s':>10s} {'x Pendulum-v1 rgb_array':>24s}")
    for name, sps in results.items():
        print(f"{name:48s} {sps:10.0f} {sps / ref:24.2f}")
    ratio = results["PendulumSound-v0"] / ref
    print(f"PendulumSound-v0 / Pendulum-v1(rgb_array) = {ratio:.2f} (target >= 2): {'OK' if ratio >= 2 else 'BELOW TARGET'}")


if __name__ == "__main__":
    main()
