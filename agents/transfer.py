"""Cross-modal transfer experiment (sacred): train on one sensor set, act from another.

    python agents/transfer.py with mhvae=runs/pendulum_sound-mhvae-seed0-rl/checkpoints/best.pt
    python agents/transfer.py with mhvae=PATH seeds=[0] timesteps=5000 test_episodes=10   # a quick look
    python agents/transfer.py with env=my_package:MyEnv-v0 mhvae=PATH latent_diagnostics=False   # any Dict env
    python agents/transfer.py print_config

``env`` is any environment agents/train.py takes (an alias, a registered Gymnasium id or ``module:Id``, observing a
Dict of >= 2 sensors); the conditions default to each sensor alone and all together (``both`` for two sensors).
For every training condition (image, sound, both on PendulumSound) and seed an agent is trained (or reused from
``out_dir/agents/<condition>-seed<s>`` when it was trained there with the same settings, MHVAE checkpoint hash
included; a folder holding an agent with other settings is refused: use another out_dir), then evaluated for ``test_episodes`` episodes under every test condition. References: a uniform random policy
and the same algorithm trained on the true low-dimensional state (its agents in ``out_dir/agents/reference/``).
In results.json the cells are under ``results.cells[train][test]`` and the references beside them
(``results.random``, ``results.true_state``), so a sensor may be called ``state``. A robustness curve evaluates agents under
per-step sensor failures (VecSensorFailure over every sensor) for each probability in ``failure_probs``.
A latent-agreement diagnostic compares q(z_c | image), q(z_c | sound) and q(z_c | both) on the dataset's
test split.

Outputs in ``out_dir``: results.json, table.md, transfer.png, robustness.png, robustness.json; the returns and
normalised transfers are also logged as sacred metrics. Agents are stored in the tensor-only format of
agents/common.py (nothing executed at load); folders of the old pickle-based format are retrained.
"""
from __future__ import annotations

from mhvae_perception.experiment import check_settings_first, prepare_experiment  # first: quiets sacred's warning
from mhvae_perception.hub import resolve_model, shipped_or_path

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sacred import Experiment

from agents.common import (env_settings, evaluate_returns, load_agent, make_vec_env, mhvae_reference,
                           random_returns, set_threads, train_agent)
from agents.config import parse_modalities
from agents.environments import AgentEnv, check_algo, default_hyperparameters
from agents.settings import check_transfer_settings

ex = prepare_experiment(Experiment("mhvae_transfer", save_git_info=False))

#: the key of the true-state agents (results, agent folders): beside the cells, never one of them
TRUE_STATE = "true_state"


@ex.config
def config():
    env = "pendulum_sound"  # an alias (pendulum_sound, hyperhot, hyperhot_hits), a Gymnasium id or module:Id
    algo = None  # None: from the action space (Box: sac, Discrete: dqn, MultiDiscrete/MultiBinary: ppo)
    mhvae = None  # MHVAE checkpoint (required)
    seeds = [0, 1, 2]
    timesteps = None  # training steps per agent; None: the env's default (agents/config.py)
    episode_steps = None  # None: the env's registered time limit (1000 when it has none)
    train_conditions = None  # None: each sensor alone, then all (image, sound, both on PendulumSound)
    test_conditions = None  # None: as train_conditions' default
    state_reference = None  # None: when the env has a state environment (agents/config.py state_env_id)
    test_episodes = 30  # per (agent, test condition); the issue asks 100
    n_eval_envs = 10  # evaluation episodes run in parallel (one batched encoder pass per step)
    failure_probs = [0.0, 0.25, 0.5, 0.75, 0.9]  # per-step, per-sensor failure probability (robustness curve)
    robustness_conditions = None  # agents (by training condition) in the robustness curve; None: all, then each sensor
    robustness_episodes = 10
    latent_stack = None  # consecutive latents per agent observation (None: agents/config.py)
    train_failure_p = None  # train with per-step sensor failures of this probability (multi-sensor conditions)
    train_sample = False  # train on samples of q(z_c | sensors) instead of their means (tests use the means)
    hp = default_hyperparameters(env, algo)  # agents/config.py's HYPERPARAMS[algo]; hp.learning_rate=3e-4 etc.
    eval_freq = 2500  # EvalCallback period during training (steps)
    n_eval_episodes = 3  # EvalCallback episodes
    save_freq = 5000  # save the training state every N steps; a re-run with the same settings resumes
    keep_resume = False  # keep each agent's training state (replay buffer) so that a larger timesteps continues it
    num_threads = 1
    device = "auto"  # agents' device: auto (CUDA when available) | cpu | cuda[:N]
    progress = False
    verbose = 1  # SB3's logger on stdout while each agent trains; 0: quiet
    out_dir = f"runs/transfer-{str(env).replace('/', '_').replace(':', '_')}"
    budget_note = ""  # free text stored with the results (e.g. "reduced budget")
    latent_diagnostics = True  # latent agreement on the dataset's test split (needs the collected dataset)
    state_source = "auto"  # the dataset of the diagnostics: the one collected with this state source (pretrain's)


def summarise(returns: np.ndarray, steps: int, win_return: float | None = None) -> dict:
    """returns: (seeds, episodes). Pooled mean/std over all episodes, std of the per-seed means; with
    ``win_return`` also the fraction of episodes won (return >= win_return), pooled and per seed."""
    r = np.asarray(returns, dtype=np.float64)
    out = {"mean": float(r.mean()), "std": float(r.std()), "seed_means": r.mean(axis=-1).tolist(),
           "seed_std": float(r.mean(axis=-1).std()), "per_step_mean": float(r.mean() / steps),
           "per_step_std": float(r.std() / steps), "n_episodes": int(r.size)}
    if win_return is not None:
        won = r >= win_return
        out.update(win_rate=float(won.mean()), seed_win_rates=won.mean(axis=-1).tolist())
    return out


@torch.no_grad()
def latent_agreement(model, splits, n: int = 2000) -> dict:
    """How close q(z_c | one modality) is to q(z_c | all), relative to the spread of the latents, on the test
    split of ``splits`` (:func:`diagnostics_data`)."""
    batch = splits.test.batch(torch.arange(min(n, len(splits.test))))
    names = model.modality_names
    mus = {"both": model.encode(batch)[0]}  # "both": every modality (the name the tables use for two)
    sig = {"both": model.encode(batch)[1].mul(0.5).exp().mean().item()}
    for name in names:
        mu, logvar = model.encode({name: batch[name]})
        mus[name], sig[name] = mu, logvar.mul(0.5).exp().mean().item()
    spread = (mus["both"] - mus["both"].mean(0)).norm(dim=1).mean().item()
    out = {"spread_both": spread, "posterior_std_mean": sig,
           "per_dim_std_both": mus["both"].std(0).tolist()}
    keys = ["both", *names]
    for i, a in enumerate(keys):
        for b in keys[i + 1:]:
            d = (mus[a] - mus[b]).norm(dim=1).mean().item()
            out[f"dist_{a}_{b}"] = d
            out[f"rel_dist_{a}_{b}"] = d / spread
    return out


@torch.no_grad()
def pendulum_state_probe(model, n: int = 3000, seed: int = 0) -> dict:
    """How much of the true state (cos θ, sin θ, θ̇) each latent holds: R² of a least-squares fit on
    [z, 1] (fit on one half of a random-policy trajectory, scored on the other), for z_c given image, sound
    or both, and across modalities (fit on the latents of one condition, scored on those of another): an agent
    trained on one condition sees the other's latents at test time."""
    import gymnasium as gym

    e = gym.make("PendulumSound-v0")
    e.action_space.seed(seed)
    obs, _ = e.reset(seed=seed)
    frames, states = {"image": [], "sound": []}, []
    for _ in range(n):
        obs, _, term, trunc, _ = e.step(e.action_space.sample())
        th, thd = e.unwrapped.state
        states.append([np.cos(th), np.sin(th), thd])
        for k in frames:
            frames[k].append(obs[k])
        if term or trunc:
            obs, _ = e.reset()
    y = np.asarray(states)
    x = {k: torch.as_tensor(np.asarray(v)) for k, v in frames.items()}
    feats = lambda z: np.concatenate([z, np.ones((len(z), 1))], axis=1)  # noqa: E731
    r2 = lambda p, t: (1 - ((p - t) ** 2).mean(0) / t.var(0)).round(3).tolist()  # noqa: E731
    half = n // 2
    mus = {name: model.encode({k: x[k] for k in subset})[0].numpy()
           for name, subset in {"image": ("image",), "sound": ("sound",), "both": ("image", "sound")}.items()}
    out = {"targets": ["cos", "sin", "theta_dot"]}
    weights = {}
    for name, z in mus.items():
        w = np.linalg.lstsq(feats(z[:half]), y[:half], rcond=None)[0]
        weights[name] = w
        out[f"r2_{name}"] = r2(feats(z[half:]) @ w, y[half:])
    out["r2_fit_image_apply_sound"] = r2(feats(mus["sound"][half:]) @ weights["image"], y[half:])
    out["r2_fit_sound_apply_image"] = r2(feats(mus["image"][half:]) @ weights["sound"], y[half:])
    out["r2_fit_both_apply_image"] = r2(feats(mus["image"][half:]) @ weights["both"], y[half:])
    out["r2_fit_both_apply_sound"] = r2(feats(mus["sound"][half:]) @ weights["both"], y[half:])
    return out


def diagnostics_data(env: str | AgentEnv, state_source: str = "auto"):
    """The dataset splits of the latent diagnostics (the file collected with ``state_source``, as pretraining's),
    or a FileNotFoundError with both fixes."""
    from mhvae_perception import data

    env = env_settings(env)
    try:
        if state_source != "auto":  # a file of its own (its name carries the collection settings)
            return data.load_env_splits(env.env_id, collect_if_missing=False, state_source=state_source)
        return data.load_dataset(env["dataset"] or env.env_id)  # a reward variant shares its game's dataset
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; or run without the latent diagnostics: latent_diagnostics=False") from None


def with_defaults(cfg: dict) -> dict:
    """``cfg`` with the env's defaults in place of None (conditions, state reference, timesteps, algorithm)."""
    env = env_settings(cfg["env"])
    out = dict(cfg)
    for name in ("train_conditions", "test_conditions"):
        out[name] = list(cfg.get(name) or env.conditions)
    if cfg.get("robustness_conditions") is None:
        out["robustness_conditions"] = [env.conditions[-1], *env.conditions[:-1]]
    if cfg.get("state_reference") is None:
        out["state_reference"] = env["state_env_id"] is not None
    out["timesteps"] = int(cfg.get("timesteps") or env["timesteps"])
    out["algo"] = check_algo(env, cfg.get("algo"))
    out["episode_steps"] = int(cfg.get("episode_steps") or env.episode_steps)
    return out


def train_all(cfg, ck_path: Path, log, log_scalar=None) -> dict:
    env = env_settings(cfg["env"])
    agents_dir = Path(cfg["out_dir"]) / "agents"
    conds = [(c, False) for c in cfg["train_conditions"]] + ([(TRUE_STATE, True)] if cfg["state_reference"] else [])
    dirs, walls = {}, {}
    for seed in cfg["seeds"]:  # seed-major: a cut-short run still has every condition for the first seeds
        for cond, state in conds:
            # a finished agent with these settings is reused as it is; the reference has a folder of its own, so a
            # sensor named "state" never shares it
            d = (agents_dir / "reference" if state else agents_dir) / f"{cond}-seed{seed}"
            scalar = None if log_scalar is None else (
                lambda name, value, step, tag=f"{cond}-seed{seed}": log_scalar(f"{tag}/{name}", value, step))
            meta = train_agent(env, None if state else parse_modalities(cond, env.sensors),
                               None if state else str(ck_path), seed, cfg["timesteps"], d, state=state,
                               hp=json.loads(json.dumps(cfg["hp"])), eval_freq=cfg["eval_freq"],
                               n_eval_episodes=cfg["n_eval_episodes"],
                               progress=cfg["progress"], latent_stack=cfg["latent_stack"],
                               train_failure_p=None if state else cfg["train_failure_p"],
                               train_sample=False if state else bool(cfg["train_sample"]), device=cfg["device"],
                               log=log, log_scalar=scalar, save_freq=cfg.get("save_freq"),
                               keep_resume=bool(cfg.get("keep_resume", False)), algo=cfg["algo"],
                               episode_steps=cfg["episode_steps"], verbose=int(cfg.get("verbose", 1)))
            dirs[(cond, seed)], walls[(cond, seed)] = d, meta["train_wall_s"]
    return {"dirs": dirs, "walls": walls}


def evaluate_all(cfg, ck_path: Path, dirs: dict, log) -> dict:
    """``{"cells": {train: {test: summary}}, "random": summary, "true_state": summary (with the reference)}``:
    the references apart from the cells, so that no sensor's name (``state``, ``random``) can stand for one."""
    env = env_settings(cfg["env"])
    steps, win = cfg["episode_steps"], env["win_return"]
    n, n_envs = int(cfg["test_episodes"]), int(cfg["n_eval_envs"])
    cells: dict = {}
    results: dict = {"cells": cells}
    for cond in cfg["train_conditions"]:
        cells[cond] = {}
        agents = [load_agent(dirs[(cond, s)], device=cfg["device"]) for s in cfg["seeds"]]
        for test in cfg["test_conditions"]:
            per_seed = []
            for s, (agent, meta) in zip(cfg["seeds"], agents):
                venv = make_vec_env(env, test, str(ck_path), n_envs=n_envs, seed=100_000 + s * 1000,
                                    n_stack=meta["latent_stack"], episode_steps=steps)
                per_seed.append(evaluate_returns(agent, venv, n))
                venv.close()
            cells[cond][test] = summarise(np.stack(per_seed), steps, win)
            log(f"train {cond:5s} test {test:5s}: {cells[cond][test]['mean']:9.1f} ± {cells[cond][test]['std']:.1f}")
    if cfg["state_reference"]:
        per_seed = []
        for s in cfg["seeds"]:
            agent = load_agent(dirs[(TRUE_STATE, s)], device=cfg["device"])[0]
            venv = make_vec_env(env, None, None, n_envs=n_envs, state=True, seed=100_000 + s * 1000,
                                episode_steps=steps)
            per_seed.append(evaluate_returns(agent, venv, n))
            venv.close()
        results[TRUE_STATE] = summarise(np.stack(per_seed), steps, win)
        log(f"state reference: {results[TRUE_STATE]['mean']:.1f} ± {results[TRUE_STATE]['std']:.1f}")
    rand = np.stack([random_returns(env, n, seed=200_000 + s * 1000, episode_steps=steps) for s in cfg["seeds"]])
    results["random"] = summarise(rand, steps, win)
    log(f"random policy: {results['random']['mean']:.1f} ± {results['random']['std']:.1f}")
    return results


def normalised_transfer(results: dict, conditions) -> dict:
    """100 * (R[train, test] - R_random) / (R[train, train] - R_random) for train != test; None ("undefined",
    never a percentage) where the agent does no better than random on its own condition: with a zero or
    negative gain the ratio is meaningless (a negative denominator would flip its sign)."""
    rnd, cells = results["random"]["mean"], results["cells"]
    out = {}
    for a in conditions:
        for b in cells[a]:
            if a != b:
                gain = cells[a][a]["mean"] - rnd
                out[f"{a}->{b}"] = 100.0 * (cells[a][b]["mean"] - rnd) / gain if gain > 1e-9 else None
    return out


def robustness(cfg, ck_path: Path, dirs: dict, log) -> dict:
    env = env_settings(cfg["env"])
    steps, win = cfg["episode_steps"], env["win_return"]
    out = {"failure_probs": list(map(float, cfg["failure_probs"])), "episodes_per_seed": int(cfg["robustness_episodes"])}
    for cond in cfg["robustness_conditions"]:
        if cond not in cfg["train_conditions"]:
            continue
        curve = []
        agents = [load_agent(dirs[(cond, s)], device=cfg["device"]) for s in cfg["seeds"]]
        for p in cfg["failure_probs"]:
            per_seed = []
            for s, (agent, meta) in zip(cfg["seeds"], agents):
                venv = make_vec_env(env, env.sensors, str(ck_path), n_envs=int(cfg["n_eval_envs"]),
                                    seed=300_000 + s * 1000, n_stack=meta["latent_stack"], failure_p=float(p),
                                    failure_seed=s, episode_steps=steps)
                per_seed.append(evaluate_returns(agent, venv, int(cfg["robustness_episodes"])))
                venv.close()
            curve.append(summarise(np.stack(per_seed), steps, win))
            log(f"robustness: trained on {cond}, failure p={p}: {curve[-1]['mean']:.1f} ± {curve[-1]['std']:.1f}")
        out[cond] = curve
    return out


def fmt(r: dict) -> str:
    if "win_rate" in r:  # Hyperhot: returns of a few points, and the episodes won
        return f"{r['mean']:.1f} ± {r['std']:.1f} (won {100 * r['win_rate']:.0f} %; seeds ± {r['seed_std']:.1f})"
    return f"{r['mean']:.0f} ± {r['std']:.0f} ({r['per_step_mean']:.2f}/step; seeds ± {r['seed_std']:.0f})"


def _short(r: dict) -> str:
    if "win_rate" in r:
        return f"{r['mean']:.1f} ± {r['std']:.1f} (won {100 * r['win_rate']:.0f} %)"
    return f"{r['mean']:.0f} ± {r['std']:.0f}"


def write_outputs(cfg, results: dict, norm: dict, robust: dict, agreement: dict, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(cfg["out_dir"])
    tests = list(cfg["test_conditions"])
    lines = [f"Episode return, mean ± std over {cfg['test_episodes']} test episodes × {len(cfg['seeds'])} seeds "
             f"(per-step reward; std of the per-seed means). {cfg['timesteps']} training steps per agent.", "",
             "| train \\ test | " + " | ".join(tests) + " |", "|---|" + "---|" * len(tests)]
    for cond in cfg["train_conditions"]:
        lines.append(f"| {cond} | " + " | ".join(fmt(results["cells"][cond][t]) for t in tests) + " |")
    if TRUE_STATE in results:
        lines.append("| true state (reference) | " + " | ".join([fmt(results[TRUE_STATE])] * len(tests)) + " |")
    lines.append("| random policy | " + " | ".join([fmt(results["random"])] * len(tests)) + " |")
    lines += ["", "Normalised transfer (random = 0 %, train condition tested on itself = 100 %):", "",
              "| train -> test | normalised return |", "|---|---|"]
    lines += [f"| {k} | " + ("undefined (no better than random on its own condition)" if v is None else f"{v:.0f} %")
              + " |" for k, v in norm.items()]
    if robust:
        lines += ["", f"Robustness: return under per-step, per-sensor failure probability p (every sensor; never "
                      f"all at once), {robust['episodes_per_seed']} episodes × {len(cfg['seeds'])} seeds:", "",
                  "| trained on \\ p | " + " | ".join(f"{p:g}" for p in robust["failure_probs"]) + " |",
                  "|---|" + "---|" * len(robust["failure_probs"])]
        for cond in cfg["robustness_conditions"]:
            if cond in robust:
                lines.append(f"| {cond} | " + " | ".join(_short(r) for r in robust[cond]) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(tests)
    xs = np.arange(len(cfg["train_conditions"]))
    for k, t in enumerate(tests):
        means = [results["cells"][c][t]["mean"] for c in cfg["train_conditions"]]
        stds = [results["cells"][c][t]["seed_std"] for c in cfg["train_conditions"]]
        ax.bar(xs + (k - (len(tests) - 1) / 2) * width, means, width, yerr=stds, capsize=3, label=f"test: {t}")
    ax.axhline(results["random"]["mean"], color="k", ls=":", label="random policy")
    if TRUE_STATE in results:
        ax.axhline(results[TRUE_STATE]["mean"], color="g", ls="--", label="true state")
    ax.set_xticks(xs, [f"train: {c}" for c in cfg["train_conditions"]])
    ax.set_ylabel("episode return")
    ax.set_title(f"{cfg['env']}: cross-modal transfer\n({len(cfg['seeds'])} seeds, error bar = seed std)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=120)
    plt.close(fig)

    if robust:
        fig, ax = plt.subplots(figsize=(6, 4))
        for cond in cfg["robustness_conditions"]:
            if cond in robust:
                m = np.array([r["mean"] for r in robust[cond]])
                s = np.array([r["seed_std"] for r in robust[cond]])
                ax.errorbar(robust["failure_probs"], m, yerr=s, marker="o", capsize=3, label=f"trained on {cond}")
        ax.axhline(results["random"]["mean"], color="k", ls=":", label="random policy")
        ax.set_xlabel("per-step failure probability of each sensor")
        ax.set_ylabel("episode return")
        ax.set_title(f"{cfg['env']}: return under sensor failures\n({len(cfg['seeds'])} seeds, error bar = seed std)",
                     fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "robustness.png", dpi=120)
        plt.close(fig)
        (out / "robustness.json").write_text(json.dumps(robust, indent=2))

    (out / "results.json").write_text(json.dumps({"config": cfg, "results": results, "normalised_transfer": norm,
                                                  "robustness": robust, "latent_agreement": agreement, **meta},
                                                 indent=2, default=str))


def run(cfg: dict, log=print, log_scalar: Callable[[str, float, int], None] | None = None) -> dict:
    """The whole experiment; ``log_scalar(name, value, step)`` (sacred's ``_run.log_scalar``) gets every
    training curve, cell mean and normalised transfer. Every setting is checked first."""
    check_transfer_settings(cfg)
    cfg = with_defaults(cfg)
    set_threads(cfg["num_threads"])
    ck_path = shipped_or_path(cfg["mhvae"])
    # the diagnostics' dataset is loaded first: a missing file is reported before hours of training
    splits = (diagnostics_data(cfg["env"], cfg.get("state_source", "auto")) if cfg.get("latent_diagnostics", True)
              else None)
    out = Path(cfg["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = time.perf_counter()
    trained = train_all(cfg, ck_path, log, log_scalar)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = evaluate_all(cfg, ck_path, trained["dirs"], log)
    times["evaluate_s"] = time.perf_counter() - t0
    norm = normalised_transfer(results, cfg["train_conditions"])
    if log_scalar is not None:
        for cond in cfg["train_conditions"]:
            for test in cfg["test_conditions"]:
                log_scalar(f"return/{cond}->{test}", results["cells"][cond][test]["mean"], 0)
        for ref_name in ("random", TRUE_STATE):
            if ref_name in results:
                log_scalar(f"return/{ref_name}", results[ref_name]["mean"], 0)
        for k, v in norm.items():
            if v is not None:
                log_scalar(f"normalised_transfer/{k}", v, 0)
    for k, v in norm.items():
        log(f"normalised transfer {k}: " + ("undefined" if v is None else f"{v:.0f} %"))
    t0 = time.perf_counter()
    robust = robustness(cfg, ck_path, trained["dirs"], log) if cfg["failure_probs"] else {}
    times["robustness_s"] = time.perf_counter() - t0
    agreement: dict = {}
    if splits is not None:
        agreement = latent_agreement(resolve_model(ck_path)[0], splits)
        log("latent agreement: " + json.dumps({k: round(v, 3) for k, v in agreement.items() if k.startswith("rel_")}))
    if env_settings(cfg["env"])["state_probe"]:
        agreement["state_probe"] = pendulum_state_probe(resolve_model(ck_path)[0])
        log("state probe (R² cos, sin, θ̇): " + json.dumps({k: v for k, v in agreement["state_probe"].items()
                                                             if k.startswith("r2")}))
    meta = {"mhvae_checkpoint": mhvae_reference(ck_path), "wall_times_s": times,
            "agent_train_wall_s": {f"{c}-seed{s}": w for (c, s), w in trained["walls"].items()}}
    write_outputs(cfg, results, norm, robust, agreement, meta)
    log(f"wrote {out / 'table.md'}, results.json, transfer.png{', robustness.png' if robust else ''}; times {times}")
    return {"normalised_transfer": norm, "wall_times_s": times}


check_settings_first(ex, lambda config, command: check_transfer_settings(config))


@ex.main
def main(_config, _run, hp):  # hp captured: an hp.<name> of another algorithm reaches the check, which names it
    return run({k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in dict(_config).items()},
               log_scalar=_run.log_scalar)


if __name__ == "__main__":
    ex.run_commandline()
