"""Normalised transfer of several transfer runs side by side: one bar chart and a markdown table.

    python agents/compare_transfer.py --out docs/figures/pendulum_sound_transfer_steps.png \\
        "2 latents=agents/results/pendulum_sound-chosen" "posterior samples=agents/results/pendulum_sound-sampled" \\
        "1 latent=agents/results/pendulum_sound-stack1" "fine-tuned, 1 latent=agents/results/pendulum_sound-onpolicy"

Each argument is LABEL=FOLDER, the folder holding a transfer.py ``results.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(folder: str) -> dict:
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no transfer results there (agents/transfer.py writes results.json)")
    return json.loads(path.read_text())["normalised_transfer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="LABEL=FOLDER")
    parser.add_argument("--out", required=True, help="the bar chart (.png)")
    parser.add_argument("--target", type=float, default=80.0, help="a dashed line at this percentage")
    args = parser.parse_args()
    runs = []
    for item in args.runs:
        label, sep, folder = item.partition("=")
        if not sep:
            parser.error(f"{item!r}: give LABEL=FOLDER")
        runs.append((label, load(folder)))
    pairs = sorted({k for _, norm in runs for k in norm})
    print("| run | " + " | ".join(pairs) + " |\n|---|" + "---|" * len(pairs))
    for label, norm in runs:
        cells = ["–" if k not in norm else "undefined" if norm[k] is None else f"{norm[k]:.0f} %" for k in pairs]
        print(f"| {label} | " + " | ".join(cells) + " |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(pairs), 3.8))
    width = 0.8 / len(runs)
    xs = np.arange(len(pairs))
    for j, (label, norm) in enumerate(runs):
        values = [norm.get(k) if norm.get(k) is not None else np.nan for k in pairs]
        ax.bar(xs + (j - (len(runs) - 1) / 2) * width, values, width, label=label)
    ax.axhline(args.target, color="k", ls="--", lw=1, label=f"target {args.target:g} %")
    ax.set_xticks(xs, pairs)
    ax.set_ylabel("normalised transfer (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
