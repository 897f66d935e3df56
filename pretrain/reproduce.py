"""Train MHVAE, JMVAE and MVAE on one dataset with the same budget and write docs/RESULTS.md.

    # the paper's protocol (500 epochs, K = 5000 on the whole test split; days on a CPU):
    python pretrain/reproduce.py --dataset mnist --full
    # a reduced budget (clearly labelled as such in docs/RESULTS.md):
    python pretrain/reproduce.py --dataset mnist --epochs 3 --eval-samples 100 --eval-points 1000

Each model runs pretrain/run.py's experiment in-process with the same settings; its outputs land in
``runs/reproduce/<dataset>-<model>-<budget>/``. docs/RESULTS.md shows, for every row of the paper's
Tables 1-3, our three columns beside the paper's three. Results of the other datasets already in
RESULTS.md are kept (they are stored in a JSON block at the end of the file).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mhvae_perception.estimators import PAPER_ROWS  # noqa: E402
from pretrain.run import ex  # noqa: E402

RESULTS = REPO / "docs" / "RESULTS.md"
MODELS = ("mhvae", "jmvae", "mvae")
TABLES = (("mnist", "Table 1", "MNIST", "image", "label"),
          ("fashionmnist", "Table 2", "FashionMNIST", "image", "label"),
          ("celeba", "Table 3", "CelebA", "image", "attributes"))
ROWS = PAPER_ROWS  # the paper's rows: (row key, metric, input)
#: The paper's numbers (Vasco, Melo & Paiva 2020, arXiv 2006.02991, Tables 1-3): {dataset: {model: {row: value}}}.
#: Left EMPTY on purpose: the search tools available when this was written did not return the tables' text, and
#: no number may be typed in from memory. Fill in from the paper (and cite the table) to show them.
PAPER: dict = {}
DATA_MARK = "<!-- reproduce-data"


def _md(s: str) -> str:
    return s.replace("|", "\\|")


def load_store() -> dict:
    if not RESULTS.is_file():
        return {}
    m = re.search(re.escape(DATA_MARK) + r"\n(.*?)\n-->", RESULTS.read_text(), re.S)
    return json.loads(m.group(1)) if m else {}


def write_results(store: dict) -> None:
    """Re-render the tables; sections other tools appended after the data block are kept as they are."""
    tail = ""
    if RESULTS.is_file():
        text = RESULTS.read_text()
        m = re.search(re.escape(DATA_MARK) + r"\n.*?\n-->\n", text, re.S)
        tail = text[m.end():] if m else ""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(render(store) + tail)


def render(store: dict) -> str:
    out = ["# Results: MHVAE vs JMVAE vs MVAE on the paper's Tables 1-3", "",
           "Test-split log-likelihood estimates (nats, higher is better) with K importance samples, for the rows of "
           "Vasco, Melo & Paiva (2020), *MHVAE: a Human-Inspired Deep Hierarchical Generative Model for Multimodal "
           "Representation Learning* (arXiv 2006.02991), Tables 1-3. x1 is the image, x2 the label (MNIST, "
           "FashionMNIST) or the 18 attributes (CelebA); `input` is what the importance proposal sees.",
           "",
           "**Every number in the 'ours' columns was measured by `pretrain/reproduce.py` at the REDUCED budget stated "
           "under each table (a few epochs instead of 500/50, fewer importance samples and test points, on a shared "
           "2-core CPU). They are smoke-level results that only show the pipeline end to end; they are not comparable "
           "with the paper's fully trained models.**",
           "",
           "**Paper columns:** the paper's numbers could not be retrieved with the search tools available here, so "
           "they are marked *not found* rather than typed in from memory. To fill them in, add them to `PAPER` in "
           "`pretrain/reproduce.py` (citing the table) and re-render with `python pretrain/reproduce.py --render-only`.",
           ""]
    for key, table, title, x1, x2 in TABLES:
        out += [f"## {table}: {title} (x1 = {x1}, x2 = {x2})", ""]
        res = store.get(key)
        paper = PAPER.get(key, {})
        out += ["| metric | input | MHVAE (ours) | JMVAE (ours) | MVAE (ours) | MHVAE (paper) | JMVAE (paper) | MVAE (paper) |",
                "|---|---|---|---|---|---|---|---|"]
        for row, metric, inp in ROWS:
            ours = []
            for m in MODELS:
                v = (res or {}).get("models", {}).get(m, {}).get("values", {}).get(row)
                ours.append(f"{v:.2f}" if v is not None else "not run")
            theirs = [f"{paper[m][row]:.2f}" if m in paper and row in paper[m] else "not found" for m in MODELS]
            out.append(f"| {_md(metric)} | {_md(inp)} | " + " | ".join(ours + theirs) + " |")
        out.append("")
        values = {m: (res or {}).get("models", {}).get(m, {}).get("values", {}) for m in ("mhvae", "jmvae")}
        compared = [(row, metric, inp) for row, metric, inp in ROWS if all(row in v for v in values.values())]
        if compared:
            behind = [f"{_md(metric)} from {_md(inp)}" for row, metric, inp in compared
                      if values["mhvae"][row] < values["jmvae"][row]]
            out += [f"MHVAE >= JMVAE on {len(compared) - len(behind)} of {len(compared)} rows at this budget" +
                    (f"; behind on: {', '.join(behind)}." if behind else "."), ""]
        if res:
            b = res["budget"]
            label = "the paper's protocol" if res.get("full") else "REDUCED"
            out += [f"Budget ({label}): {b['epochs']} epoch(s)" +
                    (f" of at most {b['max_train_batches']} batches" if b.get("max_train_batches") else "") +
                    f", batch {b['batch_size']}, lr {b['lr']}, warm-ups U_m = {b['warmup_modality_epochs']}, "
                    f"U_c = {b['warmup_core_epochs']}, U_b = {b['warmup_epochs']} (paper values" +
                    ("" if res.get("full") else "; the KL warm-up is therefore far from complete") + f"); evaluation K = {b['eval_samples']} on {b['test_points']} of "
                    f"{b['test_split_size']} test points; seed {b['seed']}.",
                    "",
                    *([f"Data: the {b['test_split_size'] * 100 // 15:,}-image CelebA subset found (not the full dataset "
                       f"with its official partition), split 85/15 with a seed; 64x64 crops, Bernoulli likelihood.", ""]
                      if key == "celeba" and b["test_split_size"] != 19962 else []),
                    f"Command: `{res['command']}`",
                    "",
                    "Wall time (train + evaluate, per model): " +
                    ", ".join(f"{m.upper()} {res['models'][m]['wall_s'] / 60:.1f} min" +
                              (f" (evaluation {res['models'][m]['eval_wall_s'] / 60:.1f} min)" if "eval_wall_s" in res["models"][m] else "")
                              for m in MODELS if m in res["models"]) +
                    f"; machine: {res['machine']}; date {res['date']}.",
                    ""]
        else:
            out += ["Not run here yet.", ""]
    out += [DATA_MARK, json.dumps(store, indent=1, sort_keys=True), "-->", ""]
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[t[0] for t in TABLES], default="mnist")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--full", action="store_true", help="the paper's protocol (no overrides)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train-batches", type=int, default=None)
    p.add_argument("--eval-samples", type=int, default=100)
    p.add_argument("--eval-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--resume", action="store_true",
                   help="continue existing runs/reproduce/ folders (default: start them afresh, so wall times are whole runs)")
    p.add_argument("--render-only", action="store_true", help="only re-render docs/RESULTS.md from its stored data")
    args = p.parse_args(argv)

    store = load_store()
    if args.render_only:
        write_results(store)
        return
    updates = {"dataset": args.dataset, "seed": args.seed, "progress": False}
    if not args.full:
        updates.update(epochs=args.epochs, eval_samples=args.eval_samples, eval_points=args.eval_points)
        if args.max_train_batches:
            updates["max_train_batches"] = args.max_train_batches
    if args.num_threads:
        updates["num_threads"] = args.num_threads
    budget_tag = "paper" if args.full else f"e{args.epochs}" + (f"b{args.max_train_batches}" if args.max_train_batches else "") \
        + f"-K{args.eval_samples}-n{args.eval_points}"
    entry = {"command": "python pretrain/reproduce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
             "machine": f"{platform.machine()} CPU ({os.cpu_count()} cores), {platform.system()}, shared with other jobs",
             "date": time.strftime("%Y-%m-%d"), "full": bool(args.full), "models": {}}
    for model in args.models:
        cfg = dict(updates, model=model, run_dir=f"runs/reproduce/{args.dataset}-{model}-{budget_tag}")
        if not args.resume and Path(cfg["run_dir"]).exists():
            shutil.rmtree(cfg["run_dir"])  # a fresh run: the recorded wall time covers training and evaluation
        t0 = time.time()
        run = ex.run("main", config_updates=cfg, options={"--loglevel": "WARNING"})
        wall = time.time() - t0
        rd = Path(run.config["run_dir"])
        metrics = json.loads((rd / "metrics.json").read_text())
        entry["models"][model] = {"values": metrics["values"], "wall_s": wall, "eval_wall_s": metrics["eval_wall_s"],
                                  "run_dir": str(rd)}
        c = run.config
        entry["budget"] = {k: c[k] for k in ("epochs", "max_train_batches", "batch_size", "lr", "warmup_modality_epochs",
                                             "warmup_core_epochs", "warmup_epochs", "eval_samples", "seed")}
        entry["budget"].update(test_points=metrics["test_points"], test_split_size=metrics["test_split_size"])
        print(f"{args.dataset}/{model}: {wall / 60:.1f} min; " + ", ".join(f"{k}: {v:.2f}" for k, v in metrics["values"].items()),
              flush=True)
        store[args.dataset] = entry  # written after every model: a crash keeps what was measured
        write_results(store)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
