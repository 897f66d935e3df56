"""Sweep MHVAE variants on an environment and rank them by probe transfer, before any agent is trained.

    python pretrain/sweep.py --env-id PendulumSound-v0 --epochs 8                 # every variant below
    python pretrain/sweep.py --env-id PendulumSound-v0 --epochs 8 --variants paper,agree1 --dry-run

Each variant is one ``pretrain/run.py`` command (printed, and recorded in the table), run one after the other with
one torch thread; a variant whose run folder already holds ``metrics.json`` is not run again, and an interrupted
one resumes from its ``last.pt``, so re-running the sweep continues it. The table (``sweep.md``), the data
(``sweep.json``) and a bar chart (``sweep.png``) go to ``runs/sweeps/<env>-ep<epochs>/``.

The predictor (``mhvae_perception.evaluation.probes``): held-out R² of state probes from q(z_c | one sensor), and "probe
transfer": a probe fitted on one sensor's latents scored on the other's. Variants: the MHVAE's own knobs (λ_i,
β_i^m, β^c, warm-ups, MRD w_i) and the optional cross-modal agreement term γ (an extension beyond the paper).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

#: name -> (what it changes, run.py settings). ``model_overrides`` changes the model description (see run.py).
VARIANTS: dict[str, tuple[str, dict]] = {
    "paper": ("paper defaults (λ = β^m = β^c = 1, w = 0.5)", {}),
    "recipe": ("the transfer recipe (loss_recipe=transfer, run.py's default for environments: λ from the sensors' "
               "size and likelihood, β^m = 10, γ = 10)", {"loss_recipe": "transfer"}),
    "recipe_beta1": ("the transfer recipe with β^m = 1 on every sensor (does β^m = 10 drop small objects?)",
                     {"loss_recipe": "transfer", "model_overrides": {"modalities": {"*": {"kl_weight": 1.0}}}}),
    "beta_c0.2": ("β^c = 0.2", {"model_overrides": {"core": {"kl_weight": 0.2}}}),
    "followup": ("the follow-up work's weights: λ_sound = 100, β^m = 10",
                 {"model_overrides": {"modalities": {"sound": {"recon_weight": 100.0, "kl_weight": 10.0},
                                                     "image": {"kl_weight": 10.0}}}}),
    "agree1": ("agreement γ = 1", {"model_overrides": {"agreement_weight": 1.0}}),
    "agree10": ("agreement γ = 10", {"model_overrides": {"agreement_weight": 10.0}}),
    "followup_agree1": ("λ_sound = 100, β^m = 10 and agreement γ = 1",
                        {"model_overrides": {"agreement_weight": 1.0,
                                             "modalities": {"sound": {"recon_weight": 100.0, "kl_weight": 10.0},
                                                            "image": {"kl_weight": 10.0}}}}),
    "followup_agree10": ("λ_sound = 100, β^m = 10 and agreement γ = 10",
                         {"model_overrides": {"agreement_weight": 10.0,
                                              "modalities": {"sound": {"recon_weight": 100.0, "kl_weight": 10.0},
                                                             "image": {"kl_weight": 10.0}}}}),
}


def command(env_id: str, epochs: int, name: str, settings: dict, extra: list[str]) -> list[str]:
    """The run.py command of one variant (settings given as sacred ``key=value`` with Python literals)."""
    # every variant but "recipe" changes the paper's loss weights, so they start from loss_recipe=paper
    updates = {"env_id": env_id, "epochs": epochs, "tag": f"sweep-{name}", "num_threads": 1, "progress": False,
               "loss_recipe": "paper", **settings}
    # sacred reads bare words as strings and other values as Python literals (JSON-style dicts read the same)
    literal = lambda v: v if isinstance(v, str) else json.dumps(v) if isinstance(v, dict) else repr(v)  # noqa: E731
    return [sys.executable, "pretrain/run.py", "with", *(f"{k}={literal(v)}" for k, v in updates.items()), *extra]


def run_dir(env_id: str, name: str) -> Path:
    return Path("runs") / f"{env_id.replace('/', '_').replace(':', '_')}-mhvae-seed0-sweep-{name}"


def summarise(name: str, what: str, cmd: list[str], folder: Path) -> dict:
    metrics = json.loads((folder / "metrics.json").read_text())
    probes = metrics["probes"]
    history = json.loads((folder / "history.json").read_text()) if (folder / "history.json").is_file() else []
    return {"name": name, "what": what, "command": " ".join(shlex.quote(c) for c in cmd[1:]),
            "train_wall_s": history[-1].get("time/elapsed_s") if history else None,
            "valid_elbo": max((r.get("valid/elbo", float("-inf")) for r in history), default=None), "probes": probes}


def render(rows: list[dict], env_id: str, epochs: int) -> str:
    if not rows:
        return "no finished variant yet\n"
    names = rows[0]["probes"]["state_names"]
    single = [c for c in rows[0]["probes"]["within"]["linear"] if "+" not in c]
    cells = lambda d: " / ".join(f"{d[v]:.2f}" for v in names)  # noqa: E731
    head = ([f"from {c} (linear)" for c in single] + [f"{k.split('->')[0]} probe on {k.split('->')[1]} (linear)"
                                                       for k in rows[0]["probes"]["transfer"]["linear"]]
            + ["transfer score linear / mlp", "active dims (" + ", ".join(rows[0]["probes"]["active_dims"]) + ")",
               "best valid ELBO", "train wall"])
    lines = [f"# MHVAE sweep on {env_id}: {epochs} epochs per variant, ranked by probe transfer", "",
             f"Each cell: held-out R² of {' / '.join(names)}; transfer score: mean over directions and variables "
             f"of R² clipped to [-1, 1] (1 = a read-out fitted on one sensor's latents works on the other's).", "",
             "| variant | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: -r["probes"]["transfer_score"]["linear"]):
        p = r["probes"]
        vals = [cells(p["within"]["linear"][c]) for c in single]
        vals += [cells(v) for v in p["transfer"]["linear"].values()]
        vals.append(" / ".join(f"{p['transfer_score'][k]:.2f}" for k in p["transfer_score"]))
        vals.append(", ".join(str(k) for k in p["active_dims"].values()) + f" of {p['latent_dim']}")
        vals.append(f"{r['valid_elbo']:.1f}" if r["valid_elbo"] is not None else "—")
        vals.append(f"{r['train_wall_s'] / 60:.1f} min" if r["train_wall_s"] else "—")
        lines.append(f"| {r['name']}: {r['what']} | " + " | ".join(vals) + " |")
    lines += ["", "Commands (from the repository root):", "", "```bash"]
    lines += [f"python {r['command']}" for r in rows] + ["```"]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: -r["probes"]["transfer_score"]["linear"])
    kinds = list(rows[0]["probes"]["transfer_score"])
    fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.4))
    width = 0.8 / len(kinds)
    for j, kind in enumerate(kinds):
        ax.bar([i + j * width for i in range(len(rows))], [r["probes"]["transfer_score"][kind] for r in rows], width,
               label=f"{kind} probe")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks([i + width * (len(kinds) - 1) / 2 for i in range(len(rows))])
    ax.set_xticklabels([r["name"] for r in rows], fontsize=8, rotation=20)
    ax.set_ylabel("probe transfer score")
    ax.set_ylim(-1.05, 1.05)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env-id", default="PendulumSound-v0")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--set", action="append", default=[], help="extra run.py setting for every variant, key=value")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    names = [n for n in args.variants.split(",") if n]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    out = Path("runs") / "sweeps" / f"{args.env_id.replace(':', '_')}-ep{args.epochs}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    t0 = time.time()
    for i, name in enumerate(names):
        what, settings = VARIANTS[name]
        cmd = command(args.env_id, args.epochs, name, settings, args.set)
        folder = run_dir(args.env_id, name)
        print(f"[{i + 1}/{len(names)}] {name}: {' '.join(shlex.quote(c) for c in cmd[1:])}", flush=True)
        if args.dry_run:
            continue
        if not (folder / "metrics.json").is_file():
            subprocess.run(cmd, check=True)
        rows.append(summarise(name, what, cmd, folder))
        done = time.time() - t0
        print(f"    done ({done / 60:.1f} min so far; ETA {done / (i + 1) * (len(names) - i - 1) / 60:.0f} min)",
              flush=True)
        (out / "sweep.json").write_text(json.dumps(rows, indent=2))
        (out / "sweep.md").write_text(render(rows, args.env_id, args.epochs))
        plot(rows, out / "sweep.png", f"{args.env_id}\nprobe transfer per variant ({args.epochs} epochs each)")
    if rows:
        print((out / "sweep.md").read_text())


if __name__ == "__main__":
    main()
