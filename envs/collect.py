"""Command line: ``python -m envs.collect --env PendulumSound-v0 [--out PATH] [--seed 0] [--n-train N --n-test N]``."""
from __future__ import annotations

import argparse
import time

from envs.datasets import DEFAULT_SIZES, collect_dataset, default_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Collect a uniform-random-policy image+sound dataset.")
    parser.add_argument("--env", required=True, choices=sorted(DEFAULT_SIZES), help="environment id")
    parser.add_argument("--out", default=None, help="output .npz (default <data root>/envs/<env_id>.npz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-train", type=int, default=None, help="default: %s" % DEFAULT_SIZES)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    path = collect_dataset(args.env, args.n_train, args.n_test, args.seed, args.out or default_path(args.env),
                           progress=not args.no_progress)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
