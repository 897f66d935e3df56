"""How the paper's rows move with K: the estimates of each row at several K from ONE stream of importance samples
per test point (the estimate at K uses the stream's first K samples), for one or more models, with a figure.

    python pretrain/k_curve.py --models mnist-mhvae-e50 mnist-jmvae-e50 --points 200 \
        --ks 100 1000 5000 20000 --out docs/figures/mnist_k_curve.png

Writes the figure and, beside it, a JSON file with every row's mean and standard error at each K (and the
command, points and wall time). The rows proposed from the label are biased low at finite K and still rise at the
paper's K = 5000; the image rows barely move. That is why RESULTS.md compares ours with the paper only at equal K.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mhvae_perception import data, estimators
from mhvae_perception.hub import resolve_model
from pretrain import paper

#: the rows drawn: the image row (barely moves with K) and the rows proposed from the label (x2)
ROWS = ("log p(x1) | x1", "log p(x1,x2) | x2", "log p(x1|x2) | x2", estimators.TIGHTER_CONDITIONAL_ROW)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="checkpoint paths or shipped model names")
    p.add_argument("--dataset", choices=list(paper.TABLES), default="mnist", help="whose test split")
    p.add_argument("--points", type=int, default=200, help="the first N test points")
    p.add_argument("--ks", nargs="+", type=int, default=[100, 1000, 5000, 20000])
    p.add_argument("--batch", type=int, default=50, help="test points per estimator call")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--out", type=Path, required=True, help="the figure (.png); the numbers go beside it (.json)")
    args = p.parse_args(argv)
    if args.points < 1 or min(args.ks) < 1 or args.batch < 1:
        p.error("--points, --ks and --batch must be >= 1")
    if args.out.suffix != ".png":
        p.error(f"--out must name a .png file, got {args.out}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    ks = sorted(set(args.ks))

    loaded = {name: resolve_model(name) for name in args.models}  # every name is checked before any work
    dataset = args.dataset
    test = data.load_dataset(dataset).test
    for name, (model, _) in loaded.items():
        if set(model.modality_names) != set(test.shapes):
            p.error(f"{name} has modalities {model.modality_names}, the {dataset} test split {tuple(test.shapes)}")

    started = time.time()
    results = {}
    for name, (model, _) in loaded.items():
        torch.manual_seed(args.seed)
        per_k = {k: {} for k in ks}
        bar = tqdm(total=args.points, desc=f"{name}: K up to {ks[-1]}", unit="point")
        for batch in test.iter_batches(args.batch, limit=args.points):
            for k, rows in estimators.paper_rows_at(model, batch, ks).items():
                for row, values in rows.items():
                    per_k[k].setdefault(row, []).append(values.double())
            bar.update(len(next(iter(batch.values()))))
        bar.close()
        results[name] = {str(k): {row: {"mean": float(torch.cat(v).mean()),
                                        "se": float(torch.cat(v).std() / math.sqrt(len(torch.cat(v))))}
                                  for row, v in rows.items()} for k, rows in per_k.items()}
    wall = time.time() - started

    record = {"command": "python pretrain/k_curve.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
              "dataset": dataset, "points": args.points, "ks": ks, "seed": args.seed, "wall_s": round(wall, 1),
              "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ROWS), figsize=(5 * len(ROWS), 4.2), squeeze=False)
    for ax, row in zip(axes[0], ROWS):
        for name, per_k in results.items():
            means = [per_k[str(k)][row]["mean"] for k in ks]
            ses = [per_k[str(k)][row]["se"] for k in ks]
            ax.errorbar(ks, means, yerr=ses, marker="o", capsize=3, label=f"ours: {name}")
        for kind in ("mhvae", "jmvae"):
            value = paper.paper_value(dataset, kind, row) if row in paper.ROW_KEYS else None
            if value is not None:
                ax.axhline(value, linestyle="--", linewidth=1, color="grey" if kind == "jmvae" else "black",
                           label=f"paper {kind.upper()} (K = {paper.PROTOCOL[dataset]['eval_samples']})")
        ax.axvline(paper.PROTOCOL[dataset]["eval_samples"], color="lightgrey", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("K (importance samples per test point)")
        ax.set_ylabel("nats (mean over test points)")
        ax.set_title(f"{row}\n(first {args.points} {dataset} test points)")
        ax.legend(fontsize=7)
    fig.suptitle("The rows proposed from the label rise with K: compare with the paper only at equal K")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')} ({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
