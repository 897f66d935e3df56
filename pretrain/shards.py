"""Merge the shards of one long evaluation into one result, as if it had run in one process.

K = 5000 on all 10,500 MNIST test points takes 2-2.5 hours per model on one core here, longer than what a session
can spare beside training; ``pretrain/run.py evaluate with eval_first_point=F eval_points=N`` scores the shard
[F, F + N) of the test split, so the evaluation splits into units that each finish (and are committed) inside a
session::

    python pretrain/run.py evaluate with checkpoint=mnist-mhvae-e50 eval_samples=5000 \\
        eval_first_point=0 eval_points=1750 eval_dir=runs/evals/mnist-mhvae-e50-K5000/from0
    ...                                   # from1750, from3500, ... (any order, any session)
    python pretrain/shards.py runs/evals/mnist-mhvae-e50-K5000/from* --out docs/evaluations/mnist-mhvae-e50-K5000
    python pretrain/shards.py compare MERGED_A MERGED_B     # a - b per row on the points both scored, paired

The merged folder has the same ``metrics.json`` / ``per_point.npz`` / ``results.md`` as a one-process evaluation
(rows' mean, std and standard error over every point of every shard), plus the shards it came from and whether
they cover the whole test split. Shards must be of one checkpoint, dataset, model and K, and must not overlap;
a shard's importance samples are seeded from its first point, so a merged result is not bit-identical to one
pass over the same points (it is another draw of the same estimator).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from pretrain import results_table

#: what every shard of one evaluation must agree on
SAME = ("dataset", "model", "num_samples", "test_split_size", "modalities", "train_epochs")


class ShardError(ValueError):
    """Shards that cannot be merged (another checkpoint or K, an overlap, a missing file)."""


def read_shard(folder: Path) -> tuple[dict, list[str], np.ndarray]:
    """(metrics, row keys, rows x points values) of one evaluation folder written by ``pretrain/run.py``."""
    metrics_file, values_file = folder / "metrics.json", folder / "per_point.npz"
    for f in (metrics_file, values_file):
        if not f.is_file():
            raise ShardError(f"{folder} has no {f.name}: give evaluation folders written by pretrain/run.py evaluate "
                             f"(eval_dir=...), each finished")
    metrics = json.loads(metrics_file.read_text())
    with np.load(values_file, allow_pickle=False) as z:
        rows, values = [str(r) for r in z["rows"]], np.asarray(z["values"], dtype=np.float64)
    if values.shape != (len(rows), metrics["test_points"]):
        raise ShardError(f"{values_file} holds {values.shape} values, its metrics.json says {len(rows)} rows x "
                         f"{metrics['test_points']} points: the folder is damaged; evaluate the shard again")
    return metrics, rows, values


def merge(folders: list[Path]) -> tuple[dict, dict[str, np.ndarray]]:
    """(merged metrics, {row: per-point values in test-split order}) of the shards in ``folders``."""
    if not folders:
        raise ShardError("no shard folders given")
    shards = sorted((read_shard(Path(f)) + (Path(f),) for f in folders),
                    key=lambda s: s[0].get("first_test_point", 0))
    first_metrics, rows, _, _ = shards[0]
    checkpoint = Path(str(first_metrics.get("checkpoint"))).name
    end, ranges = None, []
    for metrics, shard_rows, _, folder in shards:
        differing = [k for k in SAME if metrics.get(k) != first_metrics.get(k)]
        if Path(str(metrics.get("checkpoint"))).name != checkpoint:
            differing.append("checkpoint")
        if shard_rows != rows:
            differing.append("rows")
        if differing:
            raise ShardError(f"{folder} differs from {shards[0][3]} in {', '.join(differing)}: shards of one "
                             f"evaluation share the checkpoint, dataset, model and K")
        start = int(metrics.get("first_test_point", 0))
        if end is not None and start < end:
            raise ShardError(f"{folder} starts at test point {start}, inside the previous shard (which ends at "
                             f"{end}): shards must not overlap; leave one of them out")
        end = start + int(metrics["test_points"])
        ranges.append([start, end])
    values = np.concatenate([s[2] for s in shards], axis=1)
    points = np.concatenate([np.arange(a, b) for a, b in ranges])
    per_point = {row: values[i] for i, row in enumerate(rows)}
    described = {r["row"]: r for r in first_metrics["rows"]}
    merged_rows = []
    for row, v in per_point.items():
        std = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
        merged_rows.append({**{k: described.get(row, {}).get(k, "") for k in ("metric", "input")}, "row": row,
                            "value": float(v.mean()), "std": std, "se": std / math.sqrt(len(v)), "n": int(len(v))})
    split = int(first_metrics["test_split_size"])
    covered = sum(b - a for a, b in ranges)
    metrics = {**{k: first_metrics.get(k) for k in SAME + ("checkpoint", "device", "max_train_batches",
                                                           "train_wall_s")},
               "test_points": covered, "first_test_point": ranges[0][0], "complete": covered == split,
               "shards": [{"folder": str(s[3]), "points": r, "eval_wall_s": s[0].get("eval_wall_s")}
                          for s, r in zip(shards, ranges)],
               "rows": merged_rows, "values": {r["row"]: r["value"] for r in merged_rows},
               "standard_errors": {r["row"]: r["se"] for r in merged_rows},
               "eval_wall_s": sum(s[0].get("eval_wall_s") or 0.0 for s in shards),
               "elbo_terms": _merged_terms([s[0] for s in shards])}
    metrics["points"] = points.tolist() if not metrics["complete"] else None
    return metrics, per_point


def _merged_terms(shard_metrics: list[dict]) -> dict:
    """The single-sample ELBO terms: test terms weighted by each shard's points; the validation terms (the same
    points in every shard) from the first shard."""
    test = [m["elbo_terms"]["test"] for m in shard_metrics]
    total = sum(t["points"] for t in test)
    terms = {k: sum(t["terms"][k] * t["points"] for t in test) / max(total, 1) for k in test[0]["terms"]}
    return {"test": {"points": total, "terms": terms}, "valid": shard_metrics[0]["elbo_terms"]["valid"]}


def write_merged(out: Path, metrics: dict, per_point: dict[str, np.ndarray]) -> None:
    """``out``/metrics.json, per_point.npz (with the test-point index of each column) and results.md."""
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "per_point.npz", rows=np.array(list(per_point)), values=np.stack(list(per_point.values())))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    lines = results_table.run_results_markdown(metrics)
    coverage = ", ".join(f"[{a}, {b})" for a, b in (s["points"] for s in metrics["shards"]))
    lines += ["", f"Merged from {len(metrics['shards'])} shard(s) of test points {coverage}"
              + ("" if metrics["complete"] else f" (NOT the whole split of {metrics['test_split_size']})")
              + f"; evaluation wall time {metrics['eval_wall_s'] / 60:.1f} min summed over the shards."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def point_indices(metrics: dict) -> np.ndarray:
    """The test-split index of each column of an evaluation's per_point.npz (a merge's shards, else its range)."""
    if metrics.get("shards"):
        return np.concatenate([np.arange(a, b) for a, b in (s["points"] for s in metrics["shards"])])
    first = int(metrics.get("first_test_point", 0))
    return np.arange(first, first + int(metrics["test_points"]))


def compare(a: Path, b: Path) -> dict:
    """Per row, the mean of a - b over the test points both evaluations scored and its paired standard error
    (std of the per-point differences / sqrt(n)): two models compared on the same points, shards or not."""
    (ma, rows_a, va), (mb, rows_b, vb) = read_shard(Path(a)), read_shard(Path(b))
    if (ma["dataset"], ma["num_samples"]) != (mb["dataset"], mb["num_samples"]):
        raise ShardError(f"{a} and {b} differ in dataset or K ({ma['dataset']}, K = {ma['num_samples']} vs "
                         f"{mb['dataset']}, K = {mb['num_samples']}): compare evaluations of one dataset at one K")
    common, ia, ib = np.intersect1d(point_indices(ma), point_indices(mb), return_indices=True)
    if len(common) < 2:
        raise ShardError(f"{a} and {b} share {len(common)} test points: nothing to compare")
    return {"points": int(len(common)), "rows": paired_differences(rows_a, va[:, ia], rows_b, vb[:, ib])}


def paired_differences(rows_a: list[str], values_a: np.ndarray, rows_b: list[str], values_b: np.ndarray) -> dict:
    """Per row both have, the means of a and b, the mean of a - b and its paired standard error (std of the
    per-point differences / sqrt(n)); the columns of ``values_a`` and ``values_b`` (rows x points) are the same
    test points."""
    out = {}
    for i, row in enumerate(rows_a):
        if row in rows_b:
            a, b = values_a[i], values_b[rows_b.index(row)]
            diff = a - b
            out[str(row)] = {"a": float(a.mean()), "b": float(b.mean()), "difference": float(diff.mean()),
                             "se": float(diff.std(ddof=1) / math.sqrt(len(diff)))}
    return out


def main(argv=None) -> None:
    if argv is None:
        import sys

        argv = sys.argv[1:]
    if argv[:1] == ["compare"]:
        q = argparse.ArgumentParser(prog="shards.py compare", description=compare.__doc__.split("\n")[0])
        q.add_argument("a", type=Path)
        q.add_argument("b", type=Path)
        args = q.parse_args(argv[1:])
        try:
            result = compare(args.a, args.b)
        except ShardError as err:
            raise SystemExit(f"error: {err}") from None
        print(f"a = {args.a}, b = {args.b}, on the {result['points']} test points both scored (paired):")
        for row, r in result["rows"].items():
            print(f"  {row}: a {r['a']:.2f}, b {r['b']:.2f}, a - b {r['difference']:+.2f} ± {r['se']:.2f}")
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("shards", nargs="+", type=Path, help="evaluation folders of one checkpoint (eval_dir=...)")
    p.add_argument("--out", type=Path, required=True, help="folder for the merged metrics.json, per_point.npz, "
                                                            "results.md (refused if it holds another result)")
    args = p.parse_args(argv)
    try:
        metrics, per_point = merge(args.shards)
    except ShardError as err:
        raise SystemExit(f"error: {err}") from None
    if (args.out / "metrics.json").is_file():
        old = json.loads((args.out / "metrics.json").read_text())
        if not old.get("shards") or Path(str(old.get("checkpoint"))).name != Path(str(metrics["checkpoint"])).name:
            raise SystemExit(f"error: {args.out} holds another evaluation (not a merge of this checkpoint's shards); "
                             f"give an empty or new --out")
    write_merged(args.out, metrics, per_point)
    print("\n".join((args.out / "results.md").read_text().splitlines()[:20]))
    print(f"wrote {args.out}/metrics.json, per_point.npz, results.md "
          f"({metrics['test_points']} of {metrics['test_split_size']} points)")


if __name__ == "__main__":
    main()
