"""Pretrain and evaluate a multimodal VAE (MHVAE, JMVAE or MVAE) with the paper's protocol (sacred experiment).

    python pretrain/run.py with dataset=mnist                 # the paper's MNIST protocol, end to end
    python pretrain/run.py with dataset=celeba model=jmvae
    python pretrain/run.py with quick dataset=fashionmnist    # a few minutes on a laptop CPU
    python pretrain/run.py print_config with dataset=celeba   # every setting and its default
    python pretrain/run.py evaluate with checkpoint=runs/mnist-mhvae-seed0/checkpoints/best.pt
    python -m pretrain.run with quick                         # the same, as a module
    torchrun --standalone --nproc_per_node=2 pretrain/run.py with dataset=celeba   # data-parallel, 2 processes

The file reads top to bottom: settings, data and model, training, evaluation, entry points. Outputs live in
``run_dir`` (default ``runs/<dataset>-<model>-seed<seed>[-<tag>]``), independent of sacred's observer folder.
Re-running the same command continues from ``run_dir/checkpoints/last.pt``; changed training settings are
refused (see docs/PRETRAIN.md).
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import math
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

from mhvae_perception.experiment import check_settings_first, prepare_experiment  # first: quiets sacred's warning

import numpy as np
import torch
from sacred import Experiment
from tqdm.auto import tqdm

from mhvae_perception import checkpoints, data, estimators, presets, pretrained, registry
from mhvae_perception.data.describe import transfer_recipe
from mhvae_perception.hub import shipped_or_path
from mhvae_perception.models.devices import resolve_device
from mhvae_perception.models.precision import compile_loss, training_context
from mhvae_perception.models.specs import ModelConfig
from mhvae_perception.progress import progress_bar
from pretrain import distributed, figures, results_table
from pretrain.paper import PROTOCOL
from pretrain.runfolder import RunFolderLock, RunPaths, epoch_seed, rng_state, seed_everything, set_rng_state
from pretrain.settings import (SettingsError, check_settings, compare_with_recorded, default_schedule,
                               recorded_data_settings, training_settings)

ex = prepare_experiment(Experiment("mhvae_pretrain", save_git_info=False))


# ------------------------------------------------------------------------------------------------ settings
@ex.config
def config():
    dataset = "mnist"  # mnist | fashionmnist | celeba | pendulum_sound | hyperhot
    model_overrides = {}  # changes to the model description: {"modalities": {name: {field: v}}, "core": {...}, field: v}
    env_id = None  # instead of dataset: any Gymnasium env with a Dict observation (e.g. PendulumSound-v0), collected when missing
    model = "mhvae"  # mhvae | jmvae | mvae (mhvae_perception.models.registry.MODEL_KINDS)
    seed = 0  # seeds parameters, data order, binarisation and sampling (fixed default so re-runs resume)
    # the schedule: the paper's for its datasets, a short one for environments (pretrain.settings.default_schedule)
    epochs = default_schedule(dataset, env_id)["epochs"]  # training epochs (raising it continues a finished run)
    lr = default_schedule(dataset, env_id)["lr"]  # Adam learning rate
    batch_size = default_schedule(dataset, env_id)["batch_size"]
    warmup_modality_epochs = default_schedule(dataset, env_id)["warmup_modality_epochs"]  # U_m: KL warm-up of the modality latents (MHVAE)
    warmup_core_epochs = default_schedule(dataset, env_id)["warmup_core_epochs"]  # U_c: KL warm-up of the core latent z_c (MHVAE)
    warmup_epochs = default_schedule(dataset, env_id)["warmup_epochs"]  # U_b: KL warm-up of the baselines (JMVAE, MVAE)
    eval_samples = default_schedule(dataset, env_id)["eval_samples"]  # K: importance samples per test point
    # the loss weights: paper (the paper's datasets) | transfer (environments: a rule on the sensors, beyond the paper)
    loss_recipe = default_schedule(dataset, env_id)["loss_recipe"]
    eval_points = default_schedule(dataset, env_id)["eval_points"]  # evaluate on N points of the test split (None: all)
    eval_first_point = 0  # the first test point evaluated: a shard [first, first + N) of a long evaluation
    eval_batch_size = 64  # test points per estimator call (memory is bounded by the estimator's chunking)
    eval_chunk_size = None  # importance samples drawn at once (None: the library's memory-bounded default)
    eval_checkpoint = "best"  # which checkpoint the final evaluation uses: best (validation ELBO) | last
    eval_seed = 12345  # seeds the importance samples and the figures
    evaluate_after = True  # evaluate on the test split after training
    figures = True  # write image grids and learning curves
    split_seed = 0  # seeds the train/valid/test split (keep fixed to compare runs)
    data_path = None  # CelebA folder or environment .npz (None: the defaults in mhvae_perception.data)
    state_source = "auto"  # env datasets: the probes' true state: auto | info:<key> | sensor:<name> | none
    max_train_batches = None  # cap on batches per epoch (quick looks, tests); None: whole epoch
    valid_points = None  # cap on validation points per epoch; None: whole validation split
    tag = ""  # appended to the default run_dir
    run_dir = f"runs/{str(env_id or dataset).replace('/', '_').replace(':', '_')}-{model}-seed{seed}" + (
        f"-{tag}" if tag else "")  # outputs + checkpoints
    resume = None  # checkpoint to continue from (default: run_dir/checkpoints/last.pt when it exists)
    init_weights = None  # fine-tune: start from this checkpoint or shipped model (its whole description is kept)
    checkpoint = None  # for the evaluate command: a checkpoint file or a shipped model name
    eval_dir = None  # for the evaluate command: output folder (default: beside the checkpoint's run folder)
    device = "auto"  # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N
    num_threads = None  # torch intra-op threads (None: torch's default)
    precision = "fp32"  # training: fp32 | bf16 (Linear products in bfloat16, compiled; weights, Adam, loss and evaluation float32)
    tensorboard = True  # TensorBoard scalars, sample grids and hyper-parameters in run_dir/tb
    progress = True  # tqdm progress bars: training (all epochs, with ETA), evaluation (test points)


@ex.named_config
def quick():
    # A quick look (a few minutes on a laptop CPU): 2 epochs of at most 150 batches, K = 50 on 500 test points.
    epochs = 2
    max_train_batches = 150
    valid_points = 1000
    eval_samples = 50
    eval_points = 500
    tag = "quick"


# ------------------------------------------------------------------------------------------------ data and model
def load_splits(cfg: dict, collect_if_missing: bool = True) -> data.DatasetSplits:
    """The train/valid/test splits the settings name: ``env_id``'s dataset (collected when missing, if allowed),
    else ``dataset``'s."""
    if cfg.get("env_id"):
        source = cfg.get("state_source", "auto")  # passed only when chosen: files collected before it existed load
        return data.load_env_splits(cfg["env_id"], path=cfg["data_path"], split_seed=cfg["split_seed"],
                                    collect_if_missing=collect_if_missing,
                                    **({} if source == "auto" else {"state_source": source}))
    return data.load_dataset(cfg["dataset"], split_seed=cfg["split_seed"], path=cfg["data_path"])


def model_from_settings(cfg: dict, splits: data.DatasetSplits):
    """A fresh model of kind ``cfg['model']`` with the dataset's preset networks (for ``env_id``: its registered
    preset, else networks inferred from its observation space), the run's warm-ups and the training split's
    normalisation statistics. With ``init_weights`` (fine-tuning): that checkpoint's description (networks, loss
    weights and normalisation, which its weights were trained with) and weights, the run's warm-ups and
    ``model_overrides`` applied on top."""
    if cfg.get("init_weights"):
        return _initial_model(cfg)
    kwargs = _warmups(cfg)
    if cfg.get("env_id"):
        description = presets.config_for_env(cfg["env_id"], splits, kind=cfg["model"], **kwargs)
    else:
        if splits.normalisation:
            kwargs["normalisation"] = splits.normalisation
        description = presets.config(splits.name, model=cfg["model"], **kwargs)
    if cfg.get("loss_recipe", "paper") == "transfer":
        recipe = transfer_recipe(description.modalities, cfg["model"])
        print(f"loss_recipe=transfer (beyond the paper; override with model_overrides): {json.dumps(recipe)}")
        description = description.with_overrides(recipe)
    try:
        description = description.with_overrides(cfg.get("model_overrides") or {})
    except (ValueError, KeyError) as err:
        raise SettingsError(f"setting model_overrides={cfg.get('model_overrides')!r}: {err}") from None
    return registry.build_model(description)


def _warmups(cfg: dict) -> dict:
    if cfg["model"] == "mhvae":
        return dict(warmup_modality_epochs=cfg["warmup_modality_epochs"], warmup_core_epochs=cfg["warmup_core_epochs"])
    return dict(warmup_core_epochs=cfg["warmup_epochs"])  # U_b: the baselines' single KL warm-up


def _initial_model(cfg: dict):
    """The model of ``cfg['init_weights']`` to fine-tune (see :func:`model_from_settings`)."""
    src = checkpoints.load_checkpoint(shipped_or_path(cfg["init_weights"]))  # kind checked by check_settings
    try:
        description = ModelConfig.from_dict(src.config).with_overrides({**_warmups(cfg),
                                                                        **(cfg.get("model_overrides") or {})})
    except (ValueError, KeyError) as err:
        raise SettingsError(f"setting model_overrides={cfg.get('model_overrides')!r}: {err}") from None
    model = registry.build_model(description)
    checkpoints.load_weights(model, src.model.state_dict(), source=str(cfg["init_weights"]))
    return model


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _same_description(a: dict, b: dict) -> bool:
    """Model descriptions compared after a round trip through ModelConfig (fields added later get defaults)."""
    norm = lambda d: json.loads(json.dumps(ModelConfig.from_dict(d).to_dict()))  # noqa: E731
    return norm(a) == norm(b)


# ------------------------------------------------------------------------------------------------ training
class NonFiniteLossError(FloatingPointError):
    """The training loss or one of its terms became NaN/inf; the last good checkpoint is kept."""


def check_finite(scalars: dict, epoch: int, step: int, last_good) -> None:
    """Stop training when ``scalars`` (``LossOutput.scalars()``) holds NaN/inf, naming the terms."""
    bad = [k for k, v in scalars.items() if not math.isfinite(v)]
    if bad:
        keep = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"non-finite training loss at epoch {epoch + 1}, batch {step + 1}: "
            + ", ".join(f"{k} = {scalars[k]}" for k in bad)
            + f". Training stopped; {keep} (not overwritten). Lower lr or check the data.")


@torch.no_grad()
def mean_elbo(model, dataset: data.DictTensorDataset, batch_size: int, device, limit=None) -> float:
    was = model.training
    model.eval()
    total, count = 0.0, 0
    for batch in dataset.iter_batches(batch_size, limit=limit):
        elbo = model.elbo(to_device(batch, device))
        total += float(elbo.double().sum())
        count += int(elbo.shape[0])
    model.train(was)
    return total / max(count, 1)


def epoch_limit(cfg: dict) -> Optional[int]:
    """Training points per epoch (``max_train_batches`` batches), None for the whole split."""
    return None if cfg["max_train_batches"] is None else int(cfg["max_train_batches"]) * int(cfg["batch_size"])


#: steps between the checks of the loss for NaN/inf (each a host synchronisation on a GPU); the epoch's sums are
#: checked at its end as well, so a non-finite loss between two checks still stops the run before it is saved
SYNC_EVERY = {"cpu": 1, "other": 50}


def train_one_epoch(model, optimizer, splits, cfg: dict, epoch: int, device, last_good, bar=None,
                    world: distributed.World = distributed.SINGLE, loss_fn=None) -> dict:
    """One epoch in a seeded order; returns ``{"train/<k>": ...}``: epoch means of the loss and its terms,
    and the warm-up weights (``schedule/...``) reached at the end of the epoch. ``bar``: the run's progress bar
    (one bar over all batches of all epochs, so its ETA covers the whole run). With several ranks (``world``),
    each trains on its share of every batch through ``loss_fn`` (DDP) and the means are the global batch's."""
    model.train()
    loss_fn = loss_fn or model.loss
    bs, limit = int(cfg["batch_size"]), epoch_limit(cfg)
    n_batches = splits.train.num_batches(bs, limit=limit)
    gen = torch.Generator().manual_seed(epoch_seed(cfg["seed"], epoch))
    if world.active:  # each rank its own MRD masks and noise, the same for any resume (distributed.rank_seed)
        torch.manual_seed(distributed.rank_seed(cfg["seed"], epoch, world.rank))
    sums: dict[str, torch.Tensor] = {}  # on the model's device: no host synchronisation per step on a GPU
    last, count = {}, 0
    sync_every = SYNC_EVERY["cpu" if device.type == "cpu" else "other"]
    if bar is not None:
        bar.set_description(f"epoch {epoch + 1}/{cfg['epochs']}", refresh=False)
    for step, batch in enumerate(splits.train.iter_batches(bs, shuffle=True, generator=gen, limit=limit)):
        batch, scale = distributed.shard(batch, world)  # this rank's share (the whole batch for one process)
        n = int(next(iter(batch.values())).shape[0])
        out = loss_fn(to_device(batch, device), epoch=epoch + step / n_batches)
        terms = {"loss": out.loss.detach(), **out.terms}
        if step % sync_every == 0 or step == n_batches - 1:  # every step on the CPU, where it costs nothing
            check_finite(distributed.batch_means(terms, n, world), epoch, step, last_good)  # all ranks alike
        optimizer.zero_grad(set_to_none=True)
        (out.loss if scale == 1.0 else out.loss * scale).backward()
        optimizer.step()
        count += n
        for k, v in terms.items():
            v = v.detach().to(torch.float32 if v.device.type == "mps" else torch.float64)  # MPS has no float64
            sums[k] = sums[k] + v * n if k in sums else v * n
        last = {f"schedule/{k}": float(v) for k, v in out.schedule.items()}
        if bar is not None:
            if step % (10 * sync_every) == 0 or step == n_batches - 1:
                bar.set_postfix({k: f"{float(v) / count:.4g}" for k, v in sums.items()}, refresh=False)  # every term
            bar.update(1)
    if world.active:  # the epoch's means over every rank's items, as one process would log them
        sums = distributed.sum_over_ranks({**sums, "": torch.tensor(float(count), device=device)}, world)
        count = int(sums.pop(""))
    record = {f"train/{k}": float(v) / max(count, 1) for k, v in sums.items()}
    if any(not math.isfinite(v) for v in record.values()):  # between two checks (a GPU run): caught here
        check_finite({k[len("train/"):]: v for k, v in record.items()}, epoch, n_batches - 1, last_good)
    record.update({f"train/{k}": v for k, v in last.items()})
    return record


def resumable_checkpoint(path: Path) -> checkpoints.Checkpoint:
    """Checkpoint ``path`` with its training state (refusing checkpoints without one)."""
    ck = checkpoints.load_checkpoint(path)
    if not ck.training_state or "epoch" not in ck.training_state:
        raise checkpoints.CheckpointError(f"{path} has no training state to resume from (a weights-only or 'best' "
                                          f"checkpoint saved by another tool?); start a new run_dir instead")
    return ck


def train(cfg: dict, _run=None, log: Callable[[str], None] = print,
          world: distributed.World = distributed.SINGLE) -> dict:
    """Train (or continue) the run in ``cfg['run_dir']``, then evaluate it; returns the summary (summary.json).
    With several ranks (``world``, inside :func:`distributed.process_group`) rank 0 alone holds the lock, writes
    and evaluates; every rank must have the same settings and see the same checkpoint."""
    check_settings(cfg)
    distributed.check_batch_size(cfg["batch_size"], world)
    if world.active and cfg["precision"] != "fp32":
        raise SettingsError(f"precision={cfg['precision']!r} is not supported with several ranks yet (untested under "
                            f"DistributedDataParallel); train with precision=fp32 or in one process")
    distributed.check_same({k: cfg[k] for k in (*training_settings(cfg), "epochs", "run_dir", "resume", "device")},
                           world)
    paths = RunPaths(Path(cfg["run_dir"]))
    with RunFolderLock(paths.dir) if world.is_main else contextlib.nullcontext():
        resume = Path(cfg["resume"]) if cfg["resume"] else (paths.last if paths.last.is_file() else None)
        ck = resumable_checkpoint(resume) if resume else None
        done = int(ck.training_state["epoch"]) if ck is not None else 0
        distributed.check_same({"checkpoint": str(resume) if resume else None, "epochs done": done}, world,
                               what="checkpoints the ranks resume from")
        if ck is not None:
            log(compare_with_recorded(ck.training_state.get("run_config", {}), cfg, done, str(resume)))
            if done >= int(cfg["epochs"]) and not cfg["evaluate_after"]:
                return {"run_dir": str(paths.dir), "epochs": done, "trained_this_session": 0}
        return _train_locked(cfg, paths, resume, ck, _run, log, world)


def _train_locked(cfg: dict, paths: RunPaths, resume: Optional[Path], ck: Optional[checkpoints.Checkpoint], _run,
                  log, world: distributed.World = distributed.SINGLE) -> dict:
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    device = distributed.rank_device(resolve_device(cfg["device"]), world)
    if not world.is_main:
        world.barrier()  # rank 0 first: it alone collects a missing dataset or writes a data cache
    splits = load_splits(cfg, collect_if_missing=world.is_main)
    if world.is_main:
        world.barrier()
    distributed.check_last_batch(min(len(splits.train), epoch_limit(cfg) or len(splits.train)),
                                 int(cfg["batch_size"]), world)
    log(splits.summary())
    seed_everything(cfg["seed"])  # before building: identical initial weights per seed
    model = model_from_settings(cfg, splits)
    optimizer_state, start_epoch, best, history = None, 0, -math.inf, []
    if ck is not None:
        state = ck.training_state
        if not _same_description(ck.config, model.config.to_dict()):
            raise SettingsError(f"{resume} holds another model description than these settings build (the library "
                                f"or the dataset changed?); evaluate it, or start a new run with another tag=...")
        checkpoints.load_weights(model, ck.model.state_dict(), source=str(resume))
        optimizer_state, start_epoch = state["optimizer"], int(state["epoch"])
        best, history = float(state["best_valid_elbo"]), list(state["history"])
        set_rng_state(state["rng"])
    model.to(device)
    loss_fn = distributed.loss_function(model, world, device)  # model.loss, or through DDP for several ranks
    if cfg["precision"] == "bf16":  # the casts around each product fuse into the compiled kernels
        loss_fn = compile_loss(loss_fn)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], fused=True)  # one kernel for all parameters
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    recorded = training_settings(cfg)
    if world.is_main:
        (paths.dir / "config.json").write_text(json.dumps({**cfg, "training_settings": recorded}, indent=2,
                                                          default=str))
    writer = None
    if cfg["tensorboard"] and world.is_main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(paths.tensorboard), purge_step=start_epoch + 1)

    prior_s = float(history[-1].get("time/elapsed_s", 0.0)) if history else 0.0  # cumulative over sessions
    t0 = time.time()
    last_good = paths.last if paths.last.is_file() else None
    per_epoch = splits.train.num_batches(int(cfg["batch_size"]), limit=epoch_limit(cfg))
    bar = tqdm(total=int(cfg["epochs"]) * per_epoch, initial=start_epoch * per_epoch, desc="training", unit="batch",
               disable=not cfg["progress"] or not world.is_main, dynamic_ncols=True)
    for epoch in range(start_epoch, int(cfg["epochs"])):
        t_epoch = time.time()
        with training_context(model, cfg["precision"]):  # validation and evaluation stay float32
            record = {"epoch": epoch + 1, **train_one_epoch(model, optimizer, splits, cfg, epoch, device, last_good,
                                                            bar, world, loss_fn)}
        if not world.is_main:  # rank 0 validates and saves; the others wait for the next epoch
            world.barrier()
            continue
        record["valid/elbo"] = mean_elbo(model, splits.valid, max(int(cfg["batch_size"]), 256), device,
                                         cfg["valid_points"])
        record["time/epoch_s"] = time.time() - t_epoch
        record["time/elapsed_s"] = prior_s + time.time() - t0
        history.append(record)
        for k, v in record.items():
            if k != "epoch":
                if _run is not None:
                    _run.log_scalar(k, v, epoch + 1)
                if writer is not None:
                    writer.add_scalar(k, v, epoch + 1)
        improved = math.isfinite(record["valid/elbo"]) and record["valid/elbo"] > best
        best = record["valid/elbo"] if improved else best
        state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "rng": rng_state(),
                 "best_valid_elbo": best, "best_epoch": epoch + 1 if improved else _best_epoch(history, best),
                 "history": history, "run_config": recorded, "run_epochs": int(cfg["epochs"])}
        if improved:  # best first, then last: a kill between the two only repeats this epoch on resume
            checkpoints.save_checkpoint(paths.best, model, state)
        checkpoints.save_checkpoint(paths.last, model, state)
        last_good = paths.last
        if writer is not None:
            writer.flush()
        done, left = epoch + 1 - start_epoch, int(cfg["epochs"]) - epoch - 1
        eta = (time.time() - t0) / done * left
        log(f"epoch {epoch + 1}/{cfg['epochs']}: loss {record['train/loss']:.4f}, "
            f"valid ELBO {record['valid/elbo']:.4f} ({time.time() - t_epoch:.0f} s; ETA {eta / 60:.1f} min)")
        world.barrier()
    bar.close()
    if not world.is_main:  # rank 0 alone writes the history and evaluates
        return {"run_dir": str(paths.dir), "epochs": int(cfg["epochs"]), "rank": world.rank}
    (paths.dir / "history.json").write_text(json.dumps(history, indent=2))
    if cfg["figures"] and history:
        figures.plot_learning_curves(history, paths.dir / "learning_curves.png")
    summary = {"run_dir": str(paths.dir), "epochs": len(history), "trained_this_session": len(history) - start_epoch,
               "best_valid_elbo": best, "train_wall_s": history[-1]["time/elapsed_s"] if history else 0.0}
    if cfg["evaluate_after"] and paths.last.is_file():
        ck_path = paths.best if cfg["eval_checkpoint"] == "best" and paths.best.is_file() else paths.last
        ck = checkpoints.load_checkpoint(ck_path, device=device)
        summary["metrics"] = evaluate_model(ck.model, splits, cfg, paths.dir, checkpoint=ck_path, _run=_run, log=log,
                                            writer=writer, training_state=ck.training_state)
    elif cfg["evaluate_after"]:  # epochs=0 in a new folder: the untrained model (a baseline for the numbers)
        summary["metrics"] = evaluate_model(model, splits, cfg, paths.dir, _run=_run, log=log, writer=writer,
                                            training_state={"epoch": 0, "history": []})
    if writer is not None:
        writer.close()
    (paths.dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _best_epoch(history, best) -> int:
    return next((r["epoch"] for r in history if r["valid/elbo"] == best), 0)


# ------------------------------------------------------------------------------------------------ evaluation
def row_descriptions() -> dict[str, tuple[str, str]]:
    """``{row key: (metric, input)}`` of every row the estimators return (the paper's, then any extra)."""
    rows = getattr(estimators, "ALL_ROWS", estimators.PAPER_ROWS)
    return {key: (metric, inp) for key, metric, inp in rows}



def log_likelihood_rows(model, splits, cfg: dict, device, n_points: int,
                        first: int = 0) -> tuple[list[dict], dict[str, torch.Tensor]]:
    """Each row of ``estimators.paper_rows`` on ``n_points`` test points from point ``first``: mean, std and standard
    error (std / sqrt(n)) of the per-point estimates, and the per-point estimates themselves (for paired
    comparisons of two models on the same points)."""
    K = int(cfg["eval_samples"])
    per_point: dict[str, list[torch.Tensor]] = defaultdict(list)
    desc = f"log-likelihoods (K={K})"
    bar = progress_bar(n_points, desc, "points", bar=cfg["progress"])
    for batch in splits.test.iter_batches(int(cfg["eval_batch_size"]), limit=n_points, start=first):
        rows = estimators.paper_rows(model, to_device(batch, device), num_samples=K, chunk_size=cfg["eval_chunk_size"])
        for key, value in rows.items():
            per_point[key].append(value.detach().double().cpu())
        bar.update(int(next(iter(batch.values())).shape[0]))
    bar.close()
    described = row_descriptions()
    out = []
    for key in [k for k in described if k in per_point] + [k for k in per_point if k not in described]:
        v = torch.cat(per_point[key])
        std = float(v.std(unbiased=True)) if len(v) > 1 else float("nan")
        metric, inp = described.get(key, (key, ""))
        out.append({"row": key, "metric": metric, "input": inp, "value": float(v.mean()), "std": std,
                    "se": std / math.sqrt(len(v)), "n": int(len(v))})
    return out, {key: torch.cat(values) for key, values in per_point.items()}


def evaluated_points(cfg: dict, split_size: int) -> tuple[int, int]:
    """(first point, number of points) of the test split that ``eval_first_point`` and ``eval_points`` select."""
    first = int(cfg.get("eval_first_point") or 0)
    if first >= split_size:
        raise SettingsError(f"eval_first_point={first} is past the test split's last point ({split_size - 1}); "
                            f"give a first point below {split_size}")
    left = split_size - first
    return first, left if cfg["eval_points"] is None else min(left, int(cfg["eval_points"]))


def save_per_point(path: Path, per_point: dict[str, torch.Tensor]) -> None:
    """``per_point.npz``: ``rows`` (the row keys) and ``values`` (rows x test points, float64), in test-split order;
    plain arrays (read back with ``allow_pickle=False``)."""
    keys = list(per_point)
    np.savez(path, rows=np.array(keys), values=np.stack([per_point[k].numpy() for k in keys]))


@torch.no_grad()
def mean_terms(model, dataset: data.DictTensorDataset, batch_size: int, device, limit=None, start: int = 0) -> dict:
    """Means of the model's unweighted ELBO terms (rec/<modality>, kl/<modality>, kl/core, elbo) in evaluation
    mode (every modality given, one reparameterised sample per point) over ``limit`` points from point ``start``."""
    was = model.training
    model.eval()
    sums, count = defaultdict(float), 0
    for batch in dataset.iter_batches(batch_size, limit=limit, start=start):
        out = model.loss(to_device(batch, device))
        n = int(next(iter(batch.values())).shape[0])
        count += n
        for k, v in out.terms.items():
            sums[k] += float(v) * n
    model.train(was)
    return {"points": count, "terms": {k: v / max(count, 1) for k, v in sums.items()}}


def evaluate_model(model, splits: data.DatasetSplits, cfg: dict, out_dir, checkpoint=None, _run=None, log=print,
                   writer=None, training_state: Optional[dict] = None) -> dict:
    """The test log-likelihoods (K importance samples), the mean ELBO terms (validation split and the evaluated
    test points), state probes when the dataset has a true state; metrics.json, results.md and figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
    first, n_points = evaluated_points(cfg, len(splits.test))
    # a shard's importance samples are seeded from its first point, so that shards of one evaluation differ
    torch.manual_seed(int(cfg["eval_seed"]) + first)
    t0 = time.time()
    rows, per_point = log_likelihood_rows(model, splits, cfg, device, n_points, first)
    wall = time.time() - t0
    save_per_point(out_dir / "per_point.npz", per_point)
    torch.manual_seed(int(cfg["eval_seed"]))
    bs = int(cfg["eval_batch_size"])
    elbo_terms = {"test": mean_terms(model, splits.test, bs, device, n_points, first),
                  "valid": mean_terms(model, splits.valid, bs, device, cfg["valid_points"])}
    history = (training_state or {}).get("history") or []
    metrics = {"dataset": splits.name, "model": model.config.kind, "checkpoint": str(checkpoint) if checkpoint else None,
               "num_samples": int(cfg["eval_samples"]), "test_points": n_points, "first_test_point": first,
               "test_split_size": len(splits.test),
               "modalities": {"x1": model.modality_names[0], "x2": model.modality_names[1]},
               "rows": rows, "values": {r["row"]: r["value"] for r in rows},
               "standard_errors": {r["row"]: r["se"] for r in rows}, "eval_wall_s": wall,
               "train_epochs": int(training_state["epoch"]) if training_state else None,
               "train_wall_s": history[-1].get("time/elapsed_s") if history else None,
               "max_train_batches": ((training_state or {}).get("run_config") or {}).get("max_train_batches"),
               "device": str(device), "elbo_terms": elbo_terms}
    if getattr(splits, "state", None) and importlib.util.find_spec("mhvae_perception.evaluation.probes"):
        probes = importlib.import_module("mhvae_perception.evaluation.probes")
        metrics["probes"] = probes.transfer_probes(model, splits, out_dir, seed=int(cfg["eval_seed"]), writer=writer)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    lines = results_table.run_results_markdown(metrics)
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))
    for r in rows:
        if _run is not None:
            _run.log_scalar(f"test/{r['row']}", r["value"])
    grids = figures.save_figures(model, splits, out_dir, seed=int(cfg["eval_seed"])) if cfg["figures"] else {}
    if writer is not None:
        for name, grid in grids.items():
            writer.add_image(f"samples/{name}", grid, metrics["train_epochs"] or 0)
        hparams = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in
                   {**training_settings(cfg), "eval_samples": cfg["eval_samples"], "eval_points": n_points}.items()}
        writer.add_hparams(hparams, {f"hparam/test/{r['row']}": r["value"] for r in rows}, run_name="hparams")
        writer.flush()
    return metrics


# ------------------------------------------------------------------------------------------------ entry points
def _check_settings(config: dict, command: str) -> None:
    """The settings, and what the ranks of a torchrun need, before any data, process group or folder."""
    check_settings(config, command=command)
    world = distributed.from_env()
    if command == "evaluate" and world.active:
        raise SettingsError("the evaluate command runs in one process: python pretrain/run.py evaluate with ... "
                            "(not under torchrun)")
    distributed.check_batch_size(config["batch_size"], world)


check_settings_first(ex, _check_settings, ("main", "evaluate"))


@ex.main
def main(_run, _config, model_overrides):
    """Train with the paper's protocol (continuing run_dir if it has a last checkpoint), then evaluate."""
    # model_overrides is a parameter so that sacred accepts entries added inside it (model_overrides.core.kl_weight);
    # sacred refuses other added entries (typos) as usual.
    cfg = dict(_config)
    world = distributed.from_env()  # several ranks under torchrun (pretrain/distributed.py), else one process
    # progress bars on a terminal only: piped into a file their frames would glue to the epoch lines, which carry
    # the ETA themselves
    cfg["progress"] = cfg["progress"] and sys.stderr.isatty()
    log = tqdm.write if cfg["progress"] else print  # tqdm.write keeps the bar intact
    try:
        with distributed.process_group(world, resolve_device(cfg["device"])):
            summary = train(cfg, _run if world.is_main else None, log=log if world.is_main else _silent, world=world)
    except KeyboardInterrupt as err:
        err.resume_hint = interrupted_message(cfg)  # printed by the command line instead of a traceback
        raise
    return summary.get("metrics", {}).get("values", summary.get("best_valid_elbo"))


def _silent(line: str) -> None:
    """The log of ranks other than 0 (rank 0 speaks for the run)."""


def _observed_on_rank_zero(options) -> None:  # sacred reads the parameter's name
    """Under torchrun only rank 0 has sacred observers (runs/sacred/<id>, cout.txt)."""
    if not distributed.from_env().is_main:
        options["--unobserved"] = True


ex.option_hook(_observed_on_rank_zero)


def interrupted_message(cfg: dict) -> str:
    """What Ctrl-C leaves behind and the command that continues, in one line."""
    last = RunPaths(Path(cfg["run_dir"])).last
    saved = "no checkpoint was saved yet"
    if last.is_file():
        try:
            saved = f"{last} holds epoch {checkpoints.load_checkpoint(last).training_state['epoch']}"
        except (checkpoints.CheckpointError, KeyError, TypeError):
            saved = f"{last} is the last checkpoint"
    command = "python pretrain/run.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"interrupted: {saved}; the same command continues from it: {command}"


def locate_checkpoint(name: str) -> tuple[Path, Optional[dict]]:
    """A checkpoint file, or a shipped model's file (``mhvae_perception.hub.pretrained``) and its manifest entry."""
    path = shipped_or_path(name)
    if not path.is_file():
        raise checkpoints.CheckpointError(f"checkpoint={name!r} is neither a checkpoint file nor a shipped model name; "
                                          f"give the path of a .pt file (e.g. runs/<run>/checkpoints/best.pt) or a "
                                          f"shipped model: {pretrained.did_you_mean(name)}")
    return path, (pretrained.available()[name] if path != Path(name) else None)


@ex.command
def evaluate(_run, _config):
    """Evaluate any saved checkpoint: ``evaluate with checkpoint=PATH [eval_samples=K eval_points=N eval_dir=DIR]``."""
    cfg = dict(_config)
    check_settings(cfg, command="evaluate")
    cfg["progress"] = cfg["progress"] and sys.stderr.isatty()  # bars on a terminal only (see main)
    path, shipped = locate_checkpoint(cfg["checkpoint"])
    ck = checkpoints.load_checkpoint(path, device=resolve_device(cfg["device"]))
    recorded = (ck.training_state or {}).get("run_config", {})
    if shipped:  # a shipped file has no training state: its manifest entry names the data
        recorded = {**{k: shipped[k] for k in ("dataset", "env_id") if shipped.get(k)}, **recorded}
    modified = set()
    if hasattr(_run, "config_modifications"):
        modified = set(_run.config_modifications.modified) | set(_run.config_modifications.added)
    # the data the checkpoint was trained on, unless given; what the file says is data, never a module or a path
    used, refused = recorded_data_settings(recorded, modified)
    cfg.update(used)
    if refused:
        print("not taken from the checkpoint (pass them yourself to use them): "
              + "; ".join(f"{k}={v!r} ({why})" for k, (v, why) in refused.items()))
        if "env_id" in refused and not ({"env_id", "dataset"} & modified):
            raise SettingsError(f"{path} was trained on env_id={refused['env_id'][0]!r}, which evaluation does not "
                                f"import on a file's word; pass env_id=... (and data_path=...) to evaluate on it")
    cfg["model"] = ck.model.config.kind
    if "eval_samples" not in modified and not cfg.get("env_id") and cfg["dataset"] in PROTOCOL:
        cfg["eval_samples"] = PROTOCOL[cfg["dataset"]]["eval_samples"]
    if cfg["num_threads"]:
        torch.set_num_threads(int(cfg["num_threads"]))
    if shipped:
        run_folder = Path("runs") / f"pretrained-{cfg['checkpoint']}"
    else:
        run_folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    n = "all" if cfg["eval_points"] is None else cfg["eval_points"]
    shard = f"-from{cfg['eval_first_point']}" if cfg["eval_first_point"] else ""
    out_dir = Path(cfg["eval_dir"]) if cfg["eval_dir"] else \
        run_folder / f"eval-{path.stem}-K{cfg['eval_samples']}-n{n}{shard}"
    with RunFolderLock(out_dir, what="evaluation folder"):
        splits = load_splits(cfg, collect_if_missing="env_id" in modified)  # collected only on the user's word
        writer = None
        if cfg["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(out_dir / "tb"))
        state = ck.training_state
        if state is None and shipped and shipped.get("trained_epochs") is not None:
            state = {"epoch": shipped["trained_epochs"]}  # a shipped file has no training state: the manifest's
        # a shipped file is named by where it lies in the package, not by this machine's absolute path
        recorded_path = Path(pretrained.WEIGHTS_DIR.parent.name, pretrained.WEIGHTS_DIR.name, path.name) if shipped \
            else path
        metrics = evaluate_model(ck.model, splits, cfg, out_dir, checkpoint=recorded_path, _run=_run, writer=writer,
                                 training_state=state)
        if writer is not None:
            writer.close()
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'results.md'}")
    return metrics["values"]


if __name__ == "__main__":
    try:
        ex.run_commandline()
    except KeyboardInterrupt as interrupt:  # Ctrl-C: one line saying what was saved and how to continue
        print(getattr(interrupt, "resume_hint", "interrupted"), file=sys.stderr, flush=True)
        raise SystemExit(130) from None
