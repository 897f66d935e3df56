"""The whole cross-sensor transfer experiment for one environment, in one command.

    python agents/pipeline.py --env PendulumSound-v0 --out runs/pipeline/PendulumSound-v0
    python agents/pipeline.py --env my_package:MyEnv-v0 --out runs/pipeline/MyEnv --state-source sensor:state
    python agents/pipeline.py --env PendulumSound-v0 --out ... --dry-run        # print the stages only

Stages, each a command of this project run as a subprocess (its output in ``<out>/logs/<stage>.log`` and on the
terminal), each skipped when its output exists and its command has not changed (a changed command, e.g. more
seeds, runs the stage again: its script reuses what it can), and resumed by its own script when interrupted:

1. ``pretrain``: collect the random-policy dataset when missing and pretrain an MHVAE (``pretrain/run.py``: the
   short environment schedule and ``loss_recipe=transfer``); its evaluation ends with the transfer predictor
   (state probes fitted on one sensor's core latents, scored on the other's).
2. ``gate``: the predictor's transfer score (linear / MLP). Below ``--gate-threshold`` it says plainly that
   transfer is unlikely and what to try; ``--gate stop`` stops there, ``warn`` (default) goes on.
3. ``scout``: one agent trained from all sensors (``agents/train.py``), to visit the states a good policy lives in.
4. ``collect-onpolicy``: a dataset collected by that agent, with random actions mixed in (``agents/collect_on_policy.py``).
5. ``finetune``: the MHVAE fine-tuned on it (``pretrain/run.py with init_weights=...``): random-policy data
   hardly shows the states a good agent visits, where the sensors' latents can disagree (docs/TRANSFER.md).
6. ``transfer``: agents from each sensor and from all, ``--seeds``, tested from every sensor set, with the
   random-policy and (where the env has one) true-state references, the transfer table, charts and the
   robustness curve under failing sensors (``agents/transfer.py``).

A model made earlier (in another session: run folders do not survive on every machine, shipped models do) enters
with ``--model`` (a checkpoint or shipped name: the ``pretrain`` stage becomes its evaluation, which gives the gate
its predictor) or ``--tuned-model`` (already fine-tuned on an agent's states: ``scout``, ``collect-onpolicy`` and
``finetune`` are left out and the agents are trained on it)::

    python agents/pipeline.py --env hyperhot_spectrum_hits --out runs/pipeline/HyperhotSpectrum-v0 \
        --tuned-model hyperhot_spectrum-mhvae-pipeline --timesteps 500000 --seeds 0 1 --test-episodes 100

``--env`` may be an alias of agents/config.py, a reward variant of a game (``hyperhot_spectrum_hits``: +1 per
enemy killed): its model is pretrained and evaluated on the game's id, its agents get the variant's reward.

``--stop-after STAGE`` ends the run there (a session too short for the whole pipeline ships or commits that
stage's product; the same command without it goes on from the next stage).

``<out>/pipeline.json`` records every stage's command, budget, status and wall time (rewritten after each stage);
``<out>/summary.md`` shows them with the transfer table. Run folders do not survive between sessions on every
machine: keep (commit) ``<out>/model-onpolicy/checkpoints/best.pt`` (or ship it), ``<out>/transfer/results.json``,
``table.md`` and the figures once they exist.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
GATE_CHOICES = ("warn", "stop", "off")


@dataclass
class Stage:
    """One step of the pipeline: a command, what it costs, and how to tell that its product exists."""

    name: str
    what: str
    command: list[str]
    budget: str
    done: Callable[[], bool]


def script(path: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / path), *args]


def sacred_value(value) -> str:
    """A value as sacred's ``key=value`` reads it (bare strings, Python/JSON literals for the rest)."""
    return value if isinstance(value, str) else json.dumps(value)


def finished_agent(folder: Path, timesteps: int) -> bool:
    """Whether ``folder`` holds an agent trained for ``timesteps`` steps (agents/train.py's agent.json)."""
    meta = folder / "agent.json"
    if not meta.is_file():
        return False
    try:
        return int(json.loads(meta.read_text()).get("timesteps", -1)) >= timesteps
    except (ValueError, TypeError, AttributeError):
        return False


def predictor_scores(model_dir: Path) -> Optional[dict]:
    """The transfer score of the pretrained model's probes (``{"linear": s, "mlp": s}``), None without probes."""
    metrics = model_dir / "metrics.json"
    if not metrics.is_file():
        return None
    probes = json.loads(metrics.read_text()).get("probes")
    return None if not probes else dict(probes["transfer_score"])


def gate_message(scores: Optional[dict], threshold: float) -> tuple[bool, str]:
    """(transfer likely?, the sentence saying so and what to try)."""
    if scores is None:
        return True, ("no transfer predictor: the dataset has no true state. Give one with --state-source "
                      "info:<key> | sensor:<name> (or state_names + info['state'] in the env) to be warned before "
                      "agents are trained")
    best = max(scores.values())
    said = ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
    if best >= threshold:
        return True, f"transfer predictor: score {said} (>= {threshold}): a read-out of one sensor's z_c works on the other's"
    return False, (f"transfer predictor: score {said} (< {threshold}): an agent trained from one sensor will "
                   f"probably NOT act well from another. Try: more pretraining epochs (--pretrain-epochs), a larger "
                   f"agreement weight (--pretrain-set 'model_overrides={{\"agreement_weight\": 30.0}}'), other "
                   f"reconstruction weights (model_overrides modalities.<sensor>.recon_weight), or check in "
                   f"<out>/model/probes.md which state variable does not transfer")


def build_stages(args: argparse.Namespace) -> list[Stage]:
    out = args.out
    model, tuned = out / "model", out / "model-onpolicy"
    given = args.tuned_model or args.model  # a model made earlier: evaluated (for the gate) instead of pretrained
    base = args.model or str(model / "checkpoints" / "best.pt")
    agents_model = args.tuned_model or str(tuned / "checkpoints" / "best.pt")
    scout = out / "scout" / "all-seed0"
    onpolicy = out / "data" / "onpolicy.npz"
    env_word = f"env_id={game_env_id(args.env)}"  # the model is the game's, whatever reward variant the agents get
    pre = [f"{k}={v}" for k, v in (s.split("=", 1) for s in args.pretrain_set)]
    agent_extra = list(args.agent_set)
    epochs = [f"epochs={args.pretrain_epochs}"] if args.pretrain_epochs else []
    first = Stage("pretrain", "collect the random-policy dataset (when missing) and pretrain the MHVAE",
                  script("pretrain/run.py", "with", env_word, f"run_dir={model}", "progress=False", "num_threads=1",
                         f"state_source={args.state_source}", *epochs, *pre),
                  f"pretrain/run.py's environment schedule{' with ' + ' '.join(epochs + pre) if epochs or pre else ''}",
                  lambda: (model / "metrics.json").is_file())
    if given:
        first = Stage("evaluate", f"the given model {given}: test likelihoods and the transfer predictor",
                      script("pretrain/run.py", "evaluate", "with", f"checkpoint={given}", env_word,
                             f"eval_dir={model}", "progress=False", "num_threads=1",
                             f"state_source={args.state_source}"),
                      "the environment schedule's evaluation", lambda: (model / "metrics.json").is_file())
    gate = Stage("gate", "the transfer predictor's verdict", [], f"threshold {args.gate_threshold}, {args.gate}",
                 lambda: False)
    refinement = [
        Stage("scout", "one agent from all sensors, to visit the states a good policy lives in",
              script("agents/train.py", "with", f"env={args.env}", "train_modalities=all", f"mhvae={base}", "seed=0",
                     f"timesteps={args.timesteps}", f"run_dir={scout}", "progress=False", *agent_extra),
              f"{args.timesteps:,} steps, seed 0", lambda: finished_agent(scout, args.timesteps)),
        Stage("collect-onpolicy", "a dataset collected by the scout, random actions mixed in",
              script("agents/collect_on_policy.py", "--agent", str(scout), "--env", args.env, "--random-action-p",
                     str(args.random_action_p), "--out", str(onpolicy), "--state-source", args.state_source,
                     *(["--n-train", str(args.onpolicy_train), "--n-test", str(args.onpolicy_test)]
                       if args.onpolicy_train else [])),
              f"random actions p = {args.random_action_p}", lambda: onpolicy.is_file()),
        Stage("finetune", "the MHVAE fine-tuned on the scout's states",
              script("pretrain/run.py", "with", env_word, f"data_path={onpolicy}", f"init_weights={base}",
                     f"epochs={args.finetune_epochs}", "warmup_modality_epochs=0", "warmup_core_epochs=0",
                     f"run_dir={tuned}", "progress=False", "num_threads=1", f"state_source={args.state_source}", *pre),
              f"{args.finetune_epochs} epochs, no warm-up", lambda: (tuned / "metrics.json").is_file()),
    ]
    transfer = Stage("transfer", "agents from each sensor and from all, tested from every sensor set",
                     script("agents/transfer.py", "with", f"env={args.env}", f"mhvae={agents_model}",
                            f"seeds={sacred_value(args.seeds)}", f"timesteps={args.timesteps}",
                            f"test_episodes={args.test_episodes}", f"out_dir={out / 'transfer'}", "progress=False",
                            f"state_source={args.state_source}",
                            *agent_extra, *args.transfer_set),
                     f"{len(args.seeds)} seeds x {args.timesteps:,} steps per condition, "
                     f"{args.test_episodes} test episodes", lambda: (out / "transfer" / "results.json").is_file())
    # a fine-tuned model given: the agents are trained on it, without a scout's round of refinement
    return [first, gate, *([] if args.tuned_model else refinement), transfer]


def run_command(command: list[str], log_path: Path) -> int:
    """Run ``command`` from the repository root, its output both on the terminal and in ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "a", buffering=1) as log, subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True, env=env) as proc:
        log.write(f"$ {shlex.join(command)}\n")
        for line in proc.stdout:  # type: ignore[union-attr]
            sys.stdout.write(line)
            log.write(line)
        return proc.wait()


def write_record(out: Path, record: dict) -> None:
    tmp = out / "pipeline.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out / "pipeline.json")
    lines = [f"# Transfer pipeline: {record['env']}", "", "| stage | status | wall | budget | command |",
             "|---|---|---|---|---|"]
    for s in record["stages"].values():
        wall = f"{s['wall_s'] / 60:.1f} min" if s.get("wall_s") is not None else "—"
        lines.append(f"| {s['name']} | {s['status']} | {wall} | {s['budget']} | `{s['command']}` |")
    if record.get("gate"):
        lines += ["", record["gate"]]
    table = out / "transfer" / "table.md"
    if table.is_file():
        lines += ["", "## Transfer (agents/transfer.py's table)", "", table.read_text()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--env", required=True,
                   help="a Gymnasium id with a Dict observation of >= 2 sensors, module:Id, or an agents/config.py "
                        "alias (e.g. hyperhot_spectrum_hits: the agents get its reward, the model is its game's)")
    p.add_argument("--out", type=Path, required=True, help="the pipeline's folder (all stages write under it)")
    p.add_argument("--state-source", default="auto", help="the predictor's true state: auto | info:<key> | "
                                                          "sensor:<name> | none")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="default: pretrain/run.py's environment schedule")
    p.add_argument("--pretrain-set", action="append", default=[], metavar="KEY=VALUE",
                   help="another pretrain/run.py setting (repeatable), also used by the fine-tuning")
    p.add_argument("--gate", choices=GATE_CHOICES, default="warn")
    p.add_argument("--gate-threshold", type=float, default=0.5)
    p.add_argument("--timesteps", type=int, default=20_000, help="training steps per agent")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--test-episodes", type=int, default=100)
    p.add_argument("--random-action-p", type=float, default=0.3)
    p.add_argument("--onpolicy-train", type=int, default=None, help="on-policy dataset size (default: the env's)")
    p.add_argument("--onpolicy-test", type=int, default=None)
    p.add_argument("--finetune-epochs", type=int, default=10)
    p.add_argument("--agent-set", action="append", default=[], metavar="KEY=VALUE",
                   help="another agents/train.py + transfer.py setting (repeatable), e.g. latent_stack=1")
    p.add_argument("--transfer-set", action="append", default=[], metavar="KEY=VALUE",
                   help="another agents/transfer.py setting (repeatable), e.g. 'train_conditions=[\"image\",\"sound\"]'")
    p.add_argument("--model", default=None, help="a pretrained MHVAE (checkpoint or shipped name) instead of "
                                                 "pretraining one; it is evaluated for the gate")
    p.add_argument("--tuned-model", default=None, help="an MHVAE already fine-tuned on an agent's states (checkpoint "
                                                       "or shipped name): the agents are trained on it directly")
    p.add_argument("--stop-after", default=None, metavar="STAGE",
                   help="stop once this stage is done (e.g. pretrain: a session too short for the whole pipeline "
                        "commits or ships its product, and the next one goes on with the same command without it)")
    p.add_argument("--dry-run", action="store_true", help="print the stages and stop")
    args = p.parse_args(argv)
    args.out = args.out.resolve()  # the stages run from the repository root
    problems = [f"--{name} must be >= 1, got {value}" for name, value in
                (("timesteps", args.timesteps), ("test-episodes", args.test_episodes),
                 ("finetune-epochs", args.finetune_epochs), ("pretrain-epochs", args.pretrain_epochs or 1),
                 ("onpolicy-train", args.onpolicy_train or 1), ("onpolicy-test", args.onpolicy_test or 1))
                if value < 1]
    if not 0.0 <= args.random_action_p <= 1.0:
        problems.append(f"--random-action-p must be in [0, 1], got {args.random_action_p}")
    if bool(args.onpolicy_train) != bool(args.onpolicy_test):
        problems.append("--onpolicy-train and --onpolicy-test go together")
    problems += [f"{flag} {s!r} is not KEY=VALUE" for flag, values in (("--pretrain-set", args.pretrain_set),
                                                                       ("--agent-set", args.agent_set),
                                                                       ("--transfer-set", args.transfer_set))
                 for s in values if "=" not in s or s.startswith("=")]
    for flag, value in (("--model", args.model), ("--tuned-model", args.tuned_model)):
        if value is not None and not _model_exists(value):
            problems.append(f"{flag} {value!r} is neither a checkpoint file nor a shipped model name "
                            f"(python -m mhvae_perception.hub list)")
    if problems:
        p.error("; ".join(problems))
    return args


def _model_exists(name: str) -> bool:
    from mhvae_perception.hub import pretrained

    return Path(name).is_file() or name in pretrained.available()


def game_env_id(env: str) -> str:
    """The Gymnasium id whose MHVAE and dataset ``env`` uses: an alias of agents/config.py (a reward variant such
    as ``hyperhot_spectrum_hits``) observes its game's sensors, so it is pretrained and evaluated as the game; any
    other name is that id itself (``module:Id`` included)."""
    from agents.config import ALIASES

    return ALIASES[env]["env_id"] if env in ALIASES else env


def check_env(env: str, state_source: str) -> None:
    """The environment and the state source, checked before any stage runs (a clear error, nothing written)."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers this project's environments)
    from mhvae_perception.data import collect as collector
    from mhvae_perception.data.spaces import check_observation_space

    collector.check_state_source(state_source)
    env_id = collector.resolve_env_id(game_env_id(env))
    probe = gym.make(env_id)
    try:
        check_observation_space(probe.observation_space)
        if len(probe.observation_space.spaces) < 2:
            raise ValueError(f"{env_id} observes one sensor ({list(probe.observation_space.spaces)}); transfer needs "
                             f"a Dict of at least two")
        collector.resolve_state_source(state_source, probe)
    finally:
        probe.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        check_env(args.env, args.state_source)
    except ValueError as err:
        raise SystemExit(f"pipeline: {err}") from None
    stages = build_stages(args)
    names = [s.name for s in stages]
    if args.stop_after is not None and args.stop_after not in names:
        raise SystemExit(f"pipeline: --stop-after {args.stop_after!r} is not a stage of this pipeline; "
                         f"its stages: {', '.join(names)}")
    if args.dry_run:
        for i, s in enumerate(stages, 1):
            print(f"[{i}/{len(stages)}] {s.name}: {s.what} ({s.budget})" + (f"\n    {shlex.join(s.command)}" if s.command else ""))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    previous = json.loads((args.out / "pipeline.json").read_text()) if (args.out / "pipeline.json").is_file() else {}
    record = {"env": args.env, "argv": sys.argv[1:], "stages": json.loads(json.dumps(previous.get("stages", {}))),
              "gate": None}
    started = time.time()
    run = stages[:names.index(args.stop_after) + 1] if args.stop_after else stages
    for i, stage in enumerate(run, 1):
        entry = record["stages"].get(stage.name, {})
        entry.update(name=stage.name, what=stage.what, budget=stage.budget, command=shlex.join(stage.command))
        record["stages"][stage.name] = entry
        print(f"\n=== [{i}/{len(stages)}] {stage.name}: {stage.what} ({stage.budget}); "
              f"pipeline {(time.time() - started) / 60:.1f} min so far", flush=True)
        if stage.name == "gate":
            likely, message = gate_message(predictor_scores(args.out / "model"), args.gate_threshold)
            record["gate"] = message
            entry.update(status="passed" if likely else f"transfer unlikely ({args.gate})", wall_s=0.0)
            print(message, flush=True)
            write_record(args.out, record)
            if not likely and args.gate == "stop":
                raise SystemExit("pipeline: stopped at the gate (--gate stop); see the message above")
            continue
        recorded = previous.get("stages", {}).get(stage.name, {}).get("command")
        if stage.done() and recorded in (None, entry["command"]):  # same command (or made outside this record)
            if entry.get("status") != "done":
                entry.update(status="skipped: output exists", wall_s=None)
            print("skipped: its output exists", flush=True)
            write_record(args.out, record)
            continue
        t0 = time.time()
        entry["status"] = "running"
        write_record(args.out, record)
        code = run_command(stage.command, args.out / "logs" / f"{stage.name}.log")
        entry["wall_s"] = round(time.time() - t0, 1)
        entry["status"] = "done" if code == 0 and stage.done() else f"failed (exit {code})"
        write_record(args.out, record)
        if entry["status"] != "done":
            raise SystemExit(f"pipeline: stage {stage.name} failed (exit {code}); its log: "
                             f"{args.out / 'logs' / (stage.name + '.log')}. Fix the cause and re-run the same command: "
                             f"finished stages are skipped and this one resumes")
    if len(run) < len(stages):
        print(f"\npipeline stopped after {args.stop_after} (--stop-after) in {(time.time() - started) / 60:.1f} min; "
              f"the same command without --stop-after goes on from {stages[len(run)].name}")
        return
    print(f"\npipeline done in {(time.time() - started) / 60:.1f} min: {args.out / 'summary.md'}")


if __name__ == "__main__":
    main()
