"""Collect an environment dataset on the states a trained agent visits.

A random-policy dataset hardly visits the states a good policy lives in (the pendulum held upright), so the
MHVAE's sensors may disagree there although they agree on the random-policy test split. This script collects
a dataset with a saved agent acting (deterministic actions, each replaced by a uniform random one with
probability ``--random-action-p`` so that the states around the agent's path are covered too); fine-tune the
model on it with ``pretrain/run.py with ... data_path=OUT init_weights=MODEL``.

    python agents/collect_on_policy.py --agent runs/transfer-pendulum-stack1/agents/image-seed0 \\
        --random-action-p 0.3 --out data/envs/PendulumSound-v0-onpolicy.npz
    python agents/collect_on_policy.py --agent AGENT --env my_envs:MyEnv-v0 --out OUT.npz   # an env of a module

The environment is the agent's (its agent.json). A file never chooses a module to import: an environment that
importing this project does not register is given again as ``--env module:Id`` (the same environment).
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import torch

import envs  # noqa: F401  (registers this project's environments)
from agents.common import read_agent_meta
from agents.environments import recorded_env
from agents.policy_loader import collection_policy
from mhvae_perception.data import collect as collector


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", required=True, help="a saved agent folder of agents/ (trained on MHVAE latents)")
    parser.add_argument("--random-action-p", type=float, default=0.3, help="probability of a uniform random action")
    parser.add_argument("--out", required=True, help="output .npz (the random-policy dataset is left as it is)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", default=None, help="the agent's environment as module:Id, when importing this "
                                                    "project does not register it (the module is imported)")
    parser.add_argument("--state-source", default="auto",
                        help="the true state recorded beside the sensors: auto | info:<key> | sensor:<name> | none "
                             "(as pretrain/run.py's state_source; the same as the random-policy dataset's)")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="torch threads (default 1: on a machine shared with other jobs, torch's default of one "
                             "thread per core made this collection 3.7x slower, docs/TRANSFER.md)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not 0.0 <= args.random_action_p <= 1.0:
        parser.error(f"--random-action-p must be in [0, 1], got {args.random_action_p}")
    if args.num_threads < 1:
        parser.error(f"--num-threads must be >= 1, got {args.num_threads}")
    torch.set_num_threads(args.num_threads)
    meta = read_agent_meta(args.agent)  # checked before any collection
    env = recorded_env(meta, args.env)  # registered in this process, or refused with the fix
    loader = functools.partial(collection_policy, random_action_p=args.random_action_p, seed=args.seed)
    loader.__qualname__ = f"agent with random actions p={args.random_action_p}"  # type: ignore[attr-defined]
    collector.register_policy_loader(loader)
    t0 = time.perf_counter()
    path = collector.collect(env.env_id, args.n_train, args.n_test, args.seed,
                             env_kwargs=json.loads(json.dumps(meta.get("env_kwargs") or {})),
                             policy=Path(args.agent), progress=not args.no_progress, path=args.out,
                             state_source=args.state_source)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
