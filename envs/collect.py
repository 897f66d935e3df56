"""Command line: collect a pretraining dataset of any Gymnasium environment with a Dict observation space.

``python -m envs.collect --env-id PendulumSound-v0 [--n-train N --n-test N] [--seed 0] [--n-envs 4] [--out PATH]
[--state-source auto|info:KEY|sensor:NAME|none]``
(``--env`` is the older spelling of ``--env-id``). Ids of other packages: ``--env-id module:EnvId``. A progress
bar with an ETA is shown unless ``--no-progress``.
"""
from __future__ import annotations

import argparse
import json
import time

import envs  # noqa: F401  (registers this project's environments and presets)
from mhvae_perception.data import collect as collector


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Collect an observation dataset (uniform random policy).")
    parser.add_argument("--env-id", "--env", dest="env_id", required=True,
                        help="Gymnasium id (e.g. PendulumSound-v0, Hyperhot-v0, or module:EnvId)")
    parser.add_argument("--out", default=None, help="output .npz (default <data root>/envs/<env_id>[-<hash>].npz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="default: the env preset's size, else %d"
                        % collector.GENERIC_SIZES[0])
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--n-envs", type=int, default=collector.DEFAULT_N_ENVS, help="environments stepped together")
    parser.add_argument("--env-kwargs", default="{}", help="JSON object of gym.make keyword arguments")
    parser.add_argument("--state-source", default="auto",
                        help="where the true state for the probes comes from: auto (info['state'] when the env "
                             "declares state_names), info:<key>, sensor:<name> or none")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as err:
        parser.error(f"--env-kwargs must be a JSON object: {err}")
    t0 = time.perf_counter()
    path = collector.collect(args.env_id, args.n_train, args.n_test, args.seed, env_kwargs=env_kwargs,
                             n_envs=args.n_envs, progress=not args.no_progress, path=args.out,
                             state_source=args.state_source)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
