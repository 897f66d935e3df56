"""Train MHVAE, JMVAE and MVAE on one dataset with the same budget and write docs/RESULTS.md.

    # the paper's protocol (500 epochs, K = 5000 on the whole test split; days on a CPU):
    python pretrain/reproduce.py --dataset mnist --full
    python pretrain/reproduce.py --dataset all --full       # Tables 1-3 in one command (device=auto: a GPU if any)
    # a reduced budget (clearly labelled as such in docs/RESULTS.md):
    python pretrain/reproduce.py --dataset mnist --epochs 3 --eval-samples 100 --eval-points 1000
    python pretrain/reproduce.py --render-only        # re-render docs/RESULTS.md from its stored data
    # runs trained and evaluated with pretrain/run.py (e.g. with their own warm-ups), one per model:
    python pretrain/reproduce.py --record runs/mnist-mhvae-seed0/eval-best-K5000-nall \
        runs/mnist-jmvae-seed0/eval-best-K5000-nall --commands "<how MHVAE was trained>" "<how JMVAE was trained>"

Each model runs pretrain/run.py's experiment in-process with the same settings in
``runs/reproduce/<dataset>-<model>-<budget>/``. An interrupted run is continued by the same command (its
folder is never deleted unless ``--restart`` is given); a finished run evaluated with the same settings is
not run again. docs/RESULTS.md gets a model's numbers only once its run has completed: for every row of the
paper's Tables 1-3, the paper's three columns (pretrain/paper.py) beside ours, with standard errors and the
differences ours MHVAE - paper MHVAE and ours MHVAE - ours JMVAE. Results of the other datasets already in
RESULTS.md are kept (their numbers are stored in docs/RESULTS.json).
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
from typing import Optional

import numpy as np

from mhvae_perception.models.registry import MODEL_KINDS
from pretrain import paper, results_table, shards
from pretrain.run import ex

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md"
MODELS = MODEL_KINDS  # the registry's kinds, MHVAE first
LEGACY_DATA_MARK = "<!-- reproduce-data"
END_MARK = "<!-- end of the tables written by pretrain/reproduce.py; what follows is kept -->"


# ------------------------------------------------------------------------------------------------ storage
def store_path(results: Path) -> Path:
    """The measured numbers behind ``results`` (``docs/RESULTS.md`` -> ``docs/RESULTS.json``)."""
    return results.with_suffix(".json")


def load_store(results: Path = RESULTS) -> dict:
    if store_path(results).is_file():
        return json.loads(store_path(results).read_text())
    if results.is_file():  # written before the numbers had their own file: a JSON block inside the Markdown
        m = re.search(re.escape(LEGACY_DATA_MARK) + r"\n(.*?)\n-->", results.read_text(), re.S)
        return json.loads(m.group(1)) if m else {}
    return {}


def write_results(store: dict, results: Path = RESULTS) -> None:
    """Write the numbers (``store_path``) and re-render the tables; what other tools wrote after the tables'
    end mark is kept as it is."""
    text = results.read_text() if results.is_file() else ""
    legacy = re.search(re.escape(LEGACY_DATA_MARK) + r"\n.*?\n-->\n", text, re.S)
    if END_MARK + "\n" in text:
        tail = text[text.index(END_MARK + "\n") + len(END_MARK) + 1:]
    else:  # the layout before docs/RESULTS.json: other sections followed the JSON block
        tail = text[legacy.end():] if legacy else ""
    results.parent.mkdir(parents=True, exist_ok=True)
    store_path(results).write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
    results.write_text(render(store) + "\n" + END_MARK + "\n" + tail)


# ------------------------------------------------------------------------------------------------ rendering
def _budget_of(entry: dict, model: str) -> dict:
    """A model's budget (stored per model; entries written before that share the entry's budget)."""
    return entry["models"][model].get("budget") or entry.get("budget") or {}


def render(store: dict) -> str:
    out = ["# Results: MHVAE vs JMVAE vs MVAE on the paper's Tables 1-3", "",
           "Test-split log-likelihood estimates (nats, higher is better) with K importance samples, for the rows of "
           f"{paper.SOURCE}, Tables 1-3. x1 is the image, x2 the label (MNIST, FashionMNIST) or the 18 attributes "
           "(CelebA); `input` is what the importance proposal sees. The paper's numbers live in "
           "`pretrain/paper.py` with their table; ours are written by `pretrain/reproduce.py`.",
           "",
           "**Our columns were measured at the budget in their header and under each table. Reduced budgets (a few "
           "epochs instead of 500/50, fewer importance samples and test points) only show the pipeline end to end; "
           "they are not comparable with the paper's fully trained models.**",
           ""]
    for dataset, t in paper.TABLES.items():
        out += [f"## {t['table']}: {t['title']} (x1 = {t['x1']}, x2 = {t['x2']})", ""]
        entry = store.get(dataset)
        if not entry or not entry.get("models"):
            out += ["Not run here yet.", ""]
            continue
        out += _entry_lines(dataset, entry, "###")
        for earlier in entry.get("earlier", []):
            b = _budget_of(earlier, next(m for m in MODELS if m in earlier["models"]))
            out += [f"### {t['title']} at an earlier budget: {b.get('epochs')} epochs, K = {b.get('eval_samples')}", "",
                    *_entry_lines(dataset, earlier, "####")]
    return "\n".join(out)


def _entry_lines(dataset: str, entry: dict, at_k_heading: str) -> list[str]:
    """One budget's table, its summary and its models at other K (headed ``at_k_heading``)."""
    ours = {m: {"values": r.get("values", {}), "standard_errors": r.get("standard_errors", {}),
                "rows": r.get("rows", []), "budget": _budget_of(entry, m)}
            for m, r in entry["models"].items()}
    out = results_table.comparison_table(dataset, ours, entry.get("paired_se")) + [""]
    out += _summary_lines(dataset, entry)
    for k, at_k in sorted((entry.get("at_k") or {}).items(), key=lambda item: int(item[0])):
        out += _at_k_lines(dataset, int(k), at_k, at_k_heading)
    return out


def _at_k_lines(dataset: str, k: int, at_k: dict, heading: str = "###") -> list[str]:
    """The table's models evaluated again at another K (``record_at_k``)."""
    models = [m for m in MODELS if m in at_k["models"]]
    first = at_k["models"][models[0]]["budget"]
    ours = {m: {key: at_k["models"][m].get(key) for key in ("values", "standard_errors", "rows", "budget")}
            for m in models}
    walls = ", ".join(f"{m.upper()} {at_k['models'][m]['eval_wall_s'] / 60:.1f} min"
                      + (f" in {at_k['models'][m]['shards']} shards" if at_k["models"][m].get("shards", 1) > 1 else "")
                      for m in models if at_k["models"][m].get("eval_wall_s") is not None)
    lines = [f"{heading} The same models at K = {k}", "",
             *results_table.comparison_table(dataset, ours, at_k.get("paired_se")), ""]
    values = {m: at_k["models"][m]["values"] for m in ("mhvae", "jmvae") if m in at_k["models"]}
    if len(values) == 2:
        compared = [key for key in paper.ROW_KEYS if all(key in v for v in values.values())]
        ahead = sum(values["mhvae"][key] >= values["jmvae"][key] for key in compared)
        lines += [f"Ours at K = {k}: MHVAE >= JMVAE on {ahead} of {len(compared)} of the paper's rows.", ""]
    lines += [f"The models of the table above ({', '.join('`' + at_k['models'][m]['checkpoint'] + '`' for m in models)}), "
              f"evaluated with K = {k} on {first['test_points']} of {first['test_split_size']} test points. "
              f"Evaluation wall time: {walls}; machine: {at_k.get('machine')}; date {at_k.get('date')}. "
              f"Command: `{at_k['command']}`.", ""]
    return lines


def _summary_lines(dataset: str, entry: dict) -> list[str]:
    models = [m for m in MODELS if m in entry["models"]]
    values = {m: entry["models"][m].get("values", {}) for m in ("mhvae", "jmvae") if m in entry["models"]}
    lines = []
    if len(values) == 2:
        compared = [k for k in paper.ROW_KEYS if all(k in v for v in values.values())]
        ahead = sum(values["mhvae"][k] >= values["jmvae"][k] for k in compared)
        lines += [f"Ours: MHVAE >= JMVAE on {ahead} of {len(compared)} of the paper's rows at this budget.", ""]
    b = _budget_of(entry, models[0])
    # U_m and U_c are the MHVAE's, U_b the baselines' (own_warmups)
    u_b = next((_budget_of(entry, m).get("warmup_epochs") for m in models if "warmup_epochs" in own_warmups(m)),
               b.get("warmup_epochs"))
    label = "the paper's protocol" if entry.get("full") else "REDUCED"
    lines += [f"Budget ({label}): {b.get('epochs')} epoch(s)"
              + (f" of at most {b['max_train_batches']} batches" if b.get("max_train_batches") else "")
              + f", batch {b.get('batch_size')}, lr {b.get('lr')}, warm-ups U_m = {b.get('warmup_modality_epochs')}, "
              f"U_c = {b.get('warmup_core_epochs')}, U_b = {u_b}; evaluation K = "
              f"{b.get('eval_samples')} on {b.get('test_points')} of {b.get('test_split_size')} test points; "
              f"seed {b.get('seed')}.", ""]
    if dataset == "celeba" and b.get("test_split_size") not in (None, 19962):
        lines += ["Data: the CelebA subset found (not the full dataset with its official partition), split 85/15 "
                  "with a seed; 64x64 crops, Bernoulli likelihood.", ""]
    walls = []
    for m in models:
        r = entry["models"][m]
        text = f"{m.upper()} {r['wall_s'] / 60:.1f} min" if r.get("wall_s") is not None else f"{m.upper()} ?"
        if r.get("eval_wall_s") is not None:
            text += f" (evaluation {r['eval_wall_s'] / 60:.1f} min)"
        walls.append(text)
    commands = list(dict.fromkeys(entry["models"][m].get("command") or entry["command"] for m in models))
    lines += ["Command" + ("s" if len(commands) > 1 else "") + ": " + "; ".join(f"`{c}`" for c in commands), "",
              "Wall time (training summed over sessions + evaluation, per model): " + ", ".join(walls)
              + f"; machine: {entry.get('machine')}; date {entry.get('date')}.", ""]
    return lines


# ------------------------------------------------------------------------------------------------ running
def budget_tag(args) -> str:
    """``paper`` or e.g. ``e3b150-K100-n1000``: names the run folders and groups the models of one budget."""
    if args.full:
        return "paper"
    return (f"e{args.epochs}" + (f"b{args.max_train_batches}" if args.max_train_batches else "")
            + f"-K{args.eval_samples}-n{args.eval_points}")


def run_settings(args, model: str) -> dict:
    """run.py settings of ``model`` for these arguments (its run folder names the budget)."""
    updates = {"dataset": args.dataset, "model": model, "seed": args.seed, "progress": False}
    if not args.full:
        updates.update(epochs=args.epochs, eval_samples=args.eval_samples, eval_points=args.eval_points)
        if args.max_train_batches:
            updates["max_train_batches"] = args.max_train_batches
    if args.num_threads:
        updates["num_threads"] = args.num_threads
    updates["run_dir"] = str(Path(args.runs) / f"{args.dataset}-{model}-{budget_tag(args)}")
    return updates


def finished_metrics(run_dir: Path, epochs: int, eval_samples: int, eval_points: Optional[int]) -> Optional[dict]:
    """metrics.json of a completed run trained for ``epochs`` and evaluated with this K and number of test
    points, else None."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    split = m.get("test_split_size")
    n = split if eval_points is None or split is None else min(eval_points, split)
    same = m.get("train_epochs") == epochs and m.get("num_samples") == eval_samples and m.get("test_points") == n
    return m if same else None


def run_model(args, model: str) -> tuple[dict, dict]:
    """Train + evaluate one model (continuing its folder); returns (its metrics, its run settings)."""
    updates = run_settings(args, model)
    run_dir = Path(updates["run_dir"])
    if args.restart and run_dir.exists():
        shutil.rmtree(run_dir)  # asked for explicitly with --restart
    protocol = paper.PROTOCOL[args.dataset]
    budget = (protocol["epochs"], protocol["eval_samples"], None) if args.full else \
        (args.epochs, args.eval_samples, args.eval_points)
    metrics = finished_metrics(run_dir, *budget)
    if metrics is not None and (run_dir / "config.json").is_file():
        print(f"{run_dir}: already complete with this budget; reusing its metrics.json", flush=True)
        return metrics, json.loads((run_dir / "config.json").read_text())
    run = ex.run("main", config_updates=updates, options={"--loglevel": "WARNING"})
    return json.loads((run_dir / "metrics.json").read_text()), dict(run.config)


def own_warmups(kind: str) -> tuple[str, ...]:
    """The warm-up settings a model kind uses (every run records all three)."""
    return ("warmup_modality_epochs", "warmup_core_epochs") if kind == "mhvae" else ("warmup_epochs",)


def model_entry(metrics: dict, config: dict, command: str) -> dict:
    """What RESULTS.json keeps of one evaluated model: its rows, budget, folder, command and wall times."""
    budget = {k: config.get(k) for k in ("epochs", "max_train_batches", "batch_size", "lr", "warmup_modality_epochs",
                                         "warmup_core_epochs", "warmup_epochs", "seed")}
    budget.update(eval_samples=metrics["num_samples"], test_points=metrics["test_points"],
                  test_split_size=metrics["test_split_size"])
    train_s, eval_s = metrics.get("train_wall_s"), metrics.get("eval_wall_s")
    return {"values": metrics["values"], "standard_errors": metrics.get("standard_errors", {}),
            "rows": metrics.get("rows", []), "budget": budget, "run_dir": config["run_dir"], "command": command,
            "eval_wall_s": eval_s, "train_wall_s": train_s, "wall_s": (train_s or 0.0) + (eval_s or 0.0)}


def record(eval_dirs: list[Path], commands: list[str], machine: str) -> tuple[str, dict]:
    """(dataset, RESULTS.json entry) for evaluations already made by ``pretrain/run.py`` (each folder holds the
    evaluate command's metrics.json; its run folder's config.json gives the budget). All must be of one dataset
    and the paper's models may appear once each."""
    if len(commands) != len(eval_dirs):
        raise SystemExit(f"--record got {len(eval_dirs)} folders but {len(commands)} --commands: give one command "
                         f"(how the run was trained) per folder, in the same order")
    models, datasets = {}, set()
    for d, command in zip(eval_dirs, commands):
        if not (d / "metrics.json").is_file():
            raise SystemExit(f"{d} has no metrics.json: give an evaluation folder written by pretrain/run.py "
                             f"(e.g. runs/<run>/eval-best-K5000-nall)")
        metrics = json.loads((d / "metrics.json").read_text())
        run_folder = d.parent
        if not (run_folder / "config.json").is_file():
            raise SystemExit(f"{run_folder} has no config.json: {d} must sit in the run folder it evaluates")
        config = json.loads((run_folder / "config.json").read_text())
        summary = run_folder / "summary.json"
        if metrics.get("train_wall_s") is None and summary.is_file():  # a shipped model's file has no history
            metrics["train_wall_s"] = json.loads(summary.read_text()).get("train_wall_s")
        if metrics["model"] in models:
            raise SystemExit(f"{metrics['model']} appears twice in --record")
        datasets.add(metrics["dataset"])
        models[metrics["model"]] = model_entry(metrics, config, command)
    if len(datasets) != 1 or not datasets <= set(paper.TABLES):
        raise SystemExit(f"--record needs evaluations of one of {list(paper.TABLES)}, got {sorted(datasets)}")
    dataset = datasets.pop()
    budgets = {(m["budget"]["epochs"], m["budget"]["eval_samples"], m["budget"]["test_points"]) for m in models.values()}
    if len(budgets) != 1:
        raise SystemExit(f"--record: the models differ in epochs / K / test points {sorted(budgets)}; a table "
                         f"compares models at one budget")
    epochs, k, n = budgets.pop()
    protocol = paper.PROTOCOL[dataset]
    full = all(b["test_points"] == b["test_split_size"] and b["eval_samples"] == protocol["eval_samples"]
               and all(b[key] == protocol[key] for key in ("epochs", "lr", "batch_size") + own_warmups(kind))
               for kind, b in ((kind, m["budget"]) for kind, m in models.items()))
    first = next(iter(models.values()))["budget"]
    entry = {"command": commands[0], "budget_tag": f"e{epochs}-K{k}-n{n}", "seed": first["seed"], "full": full,
             "date": time.strftime("%Y-%m-%d"), "machine": machine, "models": models}
    folders = {m: d for m, d in zip((json.loads((d / "metrics.json").read_text())["model"] for d in eval_dirs),
                                    eval_dirs)}
    if "mhvae" in folders and "jmvae" in folders:
        entry["paired_se"] = paired_standard_errors(folders["mhvae"], folders["jmvae"])
    return dataset, entry


def merge_recorded(old: dict, new: dict) -> dict:
    """``new`` becomes the dataset's first table; the tables ``old`` holds at other budgets (or seeds) stay
    below it as ``earlier`` ones (e.g. the 50-epoch models under the 500-epoch ones), and one at the same budget
    and seed is merged with it (:func:`merge_same_budget`)."""
    tables = [old_entry for old_entry in (_without_earlier(old), *old.get("earlier", [])) if old_entry.get("models")]
    same = [t for t in tables if _same_budget(t, new)]
    merged = merge_same_budget(same[0], new) if same else dict(new)
    earlier = [t for t in tables if not _same_budget(t, new)]
    if earlier:
        merged["earlier"] = earlier
    return merged


def _same_budget(a: dict, b: dict) -> bool:
    return a.get("budget_tag") == b.get("budget_tag") and a.get("seed") == b.get("seed")


def _without_earlier(entry: dict) -> dict:
    return {k: v for k, v in entry.items() if k != "earlier"}


def merge_same_budget(old: dict, new: dict) -> dict:
    """``new`` with the models ``old`` (the same budget and seed) holds that ``new`` lacks, as
    :func:`reproduce_dataset` keeps them: a third model is added to a table whose first two models' run
    folders are gone. Their paired standard errors and other-K tables stay; a model recorded again replaces its
    entry (and then the paired errors come from the new folders only)."""
    new = _without_earlier(new)
    kept = {kind: m for kind, m in old.get("models", {}).items() if kind not in new["models"]}
    if not kept:
        return new
    merged = {**new, "models": {**kept, **new["models"]}, "full": bool(new["full"] and old.get("full"))}
    if "paired_se" not in new and "paired_se" in old and {"mhvae", "jmvae"} <= set(kept):
        merged["paired_se"] = old["paired_se"]
    if "at_k" in old:
        merged["at_k"] = old["at_k"]
    return merged


def paired_standard_errors(a: Path, b: Path) -> dict[str, float]:
    """Per row, the standard error of the mean difference a - b over the test points both evaluations saw (std of
    the per-point differences / sqrt(n)); empty when either folder lacks ``per_point.npz`` or the two were scored
    on different points (another split seed or number of points)."""
    configs = [json.loads((d.parent / "config.json").read_text()) for d in (a, b)]
    if configs[0].get("split_seed") != configs[1].get("split_seed"):
        return {}
    return _paired_over_points(a, b)


def _paired_over_points(a: Path, b: Path) -> dict[str, float]:
    """:func:`paired_standard_errors` of two evaluations known to share their split."""
    files = [d / "per_point.npz" for d in (a, b)]
    if not all(f.is_file() for f in files):
        return {}
    (rows_a, va), (rows_b, vb) = ((list(z["rows"]), z["values"]) for z in (np.load(f, allow_pickle=False) for f in files))
    if va.shape[1] != vb.shape[1]:
        return {}
    return {row: r["se"] for row, r in shards.paired_differences(rows_a, va, rows_b, vb).items()}


def record_at_k(store: dict, eval_dirs: list[Path], command: str, machine: str) -> tuple[str, int]:
    """Store evaluations at another K of the models already in a dataset's table (e.g. the shipped 50-epoch
    models at the paper's K = 5000, merged from shards by pretrain/shards.py) as ``store[dataset]["at_k"][K]``;
    the training budget is the table's, the evaluation budget the folders'. Returns (dataset, K)."""
    found = []
    for d in eval_dirs:
        if not (d / "metrics.json").is_file():
            raise SystemExit(f"{d} has no metrics.json: give evaluation folders (pretrain/run.py evaluate, or "
                             f"pretrain/shards.py --out for a sharded one)")
        found.append((d, json.loads((d / "metrics.json").read_text())))
    datasets = {m["dataset"] for _, m in found}
    ks = {m["num_samples"] for _, m in found}
    points = {(m.get("first_test_point", 0), m["test_points"]) for _, m in found}
    if len(datasets) != 1 or len(ks) != 1 or len(points) != 1:
        raise SystemExit(f"--record-at-k needs evaluations of one dataset at one K on the same test points; got "
                         f"datasets {sorted(datasets)}, K {sorted(ks)}, (first point, points) {sorted(points)}")
    dataset, k = datasets.pop(), ks.pop()
    entry = store.get(dataset) or {}
    kinds = [m["model"] for _, m in found]
    missing = [kind for kind in kinds if kind not in entry.get("models", {})]
    if missing or len(set(kinds)) != len(kinds):
        raise SystemExit(f"--record-at-k: {dataset}'s table has models {sorted(entry.get('models', {}))}; these "
                         f"evaluations are of {kinds}: each must be one of the table's models, once")
    models = {}
    for d, m in found:
        budget = {**_budget_of(entry, m["model"]), "eval_samples": k, "test_points": m["test_points"],
                  "test_split_size": m["test_split_size"]}
        models[m["model"]] = {"values": m["values"], "standard_errors": m.get("standard_errors", {}),
                              "rows": m.get("rows", []), "budget": budget, "eval_wall_s": m.get("eval_wall_s"),
                              "checkpoint": Path(str(m.get("checkpoint"))).name, "folder": str(d),
                              "shards": len(m.get("shards") or [None])}
    at_k = {"command": command, "date": time.strftime("%Y-%m-%d"), "machine": machine, "models": models}
    folders = {m["model"]: d for d, m in found}
    if "mhvae" in folders and "jmvae" in folders:
        at_k["paired_se"] = _paired_over_points(folders["mhvae"], folders["jmvae"])
    entry.setdefault("at_k", {})[str(k)] = at_k
    return dataset, k


def machine_description() -> str:
    return f"{platform.machine()} CPU ({os.cpu_count()} cores), {platform.system()}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=[*paper.TABLES, "all"], default="mnist",
                   help="one of the paper's datasets, or all: Tables 1-3 in turn")
    p.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    p.add_argument("--full", action="store_true", help="the paper's protocol (no overrides)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-train-batches", type=int, default=None)
    p.add_argument("--eval-samples", type=int, default=100)
    p.add_argument("--eval-points", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--restart", action="store_true",
                   help="delete these runs' folders and start them over (default: continue interrupted runs)")
    p.add_argument("--runs", default="runs/reproduce", help="folder of the run folders")
    p.add_argument("--results", type=Path, default=RESULTS, help="the Markdown file to write (docs/RESULTS.md)")
    p.add_argument("--render-only", action="store_true", help="only re-render the results file from its stored data")
    p.add_argument("--record", nargs="+", type=Path, metavar="EVAL_DIR",
                   help="store evaluations already made by pretrain/run.py (e.g. runs/<run>/eval-best-K5000-nall, "
                        "one per model, one dataset) instead of running anything; needs --commands. Models "
                        "already recorded for the dataset at the same budget and seed stay beside them")
    p.add_argument("--commands", nargs="+", default=[], help="with --record: how each run was trained, in order")
    p.add_argument("--record-at-k", nargs="+", type=Path, metavar="EVAL_DIR",
                   help="store evaluations at another K (one folder per model, e.g. pretrain/shards.py's merged "
                        "folders) of the models already in the dataset's table; needs --command")
    p.add_argument("--command", default=None, help="with --record-at-k: how the evaluations were made")
    p.add_argument("--machine", default=None, help="with --record: the machine that ran them (default: this one)")
    args = p.parse_args(argv)

    store = load_store(args.results)
    if args.render_only:
        write_results(store, args.results)
        return
    if args.record_at_k:
        if not args.command:
            raise SystemExit("--record-at-k needs --command: how the evaluations were made (the evaluate and "
                             "shards commands)")
        dataset, k = record_at_k(store, args.record_at_k, args.command, args.machine or machine_description())
        write_results(store, args.results)
        print(f"wrote {args.results} ({dataset} at K = {k})")
        return
    if args.record:
        dataset, entry = record(args.record, args.commands, args.machine or machine_description())
        store[dataset] = merge_recorded(store.get(dataset) or {}, entry)
        write_results(store, args.results)
        print(f"wrote {args.results} ({dataset}: {', '.join(store[dataset]['models'])})")
        return
    command = "python pretrain/reproduce.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    for dataset in (list(paper.TABLES) if args.dataset == "all" else [args.dataset]):  # all: Tables 1-3 in turn
        reproduce_dataset(argparse.Namespace(**{**vars(args), "dataset": dataset}), store, command)
    print(f"wrote {args.results}")


def reproduce_dataset(args: argparse.Namespace, store: dict, command: str) -> None:
    """Train and evaluate ``args.models`` on ``args.dataset``, writing the results file after each model; the
    dataset's tables at other budgets stay below this one (:func:`merge_recorded`)."""
    old = store.get(args.dataset) or {}
    entry = {"command": command, "budget_tag": budget_tag(args), "seed": args.seed, "full": bool(args.full),
             "date": time.strftime("%Y-%m-%d"),
             "machine": machine_description(),
             "models": {}}
    for model in args.models:
        metrics, c = run_model(args, model)
        entry["models"][model] = model_entry(metrics, c, command)
        print(f"{args.dataset}/{model}: " + ", ".join(f"{k}: {v:.2f}" for k, v in metrics["values"].items()),
              flush=True)
        # only completed runs reach this line; the other models measured with this budget stay
        store[args.dataset] = merge_recorded(old, entry)
        write_results(store, args.results)


if __name__ == "__main__":
    main()
