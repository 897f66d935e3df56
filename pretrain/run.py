"""Pretrain and evaluate a multimodal VAE (MHVAE, JMVAE or MVAE) with the paper's protocol (sacred experiment).

    python pretrain/run.py with dataset=mnist                 # the paper's MNIST protocol, end to end
    python pretrain/run.py with dataset=celeba model=jmvae
    python pretrain/run.py with quick dataset=fashionmnist    # a few minutes on a laptop CPU
    python pretrain/run.py print_config with dataset=celeba   # every setting and its default
    python pretrain/run.py evaluate with checkpoint=runs/mnist-mhvae-seed0/checkpoints/best.pt

Outputs live in ``run_dir`` (default ``runs/<dataset>-<model>-seed<seed>[-<tag>]``), independent of sacred's
observer folder (``runs/sacred/<id>`` unless an observer is given with -m/-F/...). Re-running the same command
continues from ``run_dir/checkpoints/last.pt``; see docs/PRETRAIN.md.
"""
from __future__ import annotations

import json
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from mhvae_perception import checkpoints, data, estimators  # noqa: E402

ex = Experiment("mhvae_pretrain", save_git_info=False)

#: The paper's settings per dataset (Vasco, Melo & Paiva 2020, section 5). The environment datasets are not
#: part of the paper's evaluation and use the MNIST schedule unless overridden.
PAPER_SETTINGS = {
    "mnist": dict(epochs=500, lr=1e-3, batch_size=64, warmup_modality_epochs=100, warmup_core_epochs=200,
                  warmup_epochs=200, eval_samples=5000),
    "fashionmnist": dict(epochs=500, lr=1e-3, batch_size=64, warmup_modality_epochs=100, warmup_core_epochs=200,
                         warmup_epochs=200, eval_samples=5000),
    "celeba": dict(epochs=50, lr=1e-4, batch_size=128, warmup_modality_epochs=5, warmup_core_epochs=10,
                   warmup_epochs=10, eval_samples=500),
}
MODELS = ("mhvae", "jmvae", "mvae")
OBSERVER_FLAGS = ("--mongo_db", "--file_storage", "--sql", "--tiny_db", "--s3", "--gcs", "--queue", "--unobserved")


class NonFiniteLossError(FloatingPointError):
    """The training loss or one of its terms became NaN/inf; the last good checkpoint is kept."""


@ex.config
def config():
    dataset = "mnist"  # mnist | fashionmnist | celeba | pendulum_sound | hyperhot
    model = "mhvae"  # mhvae | jmvae | mvae
    seed = 0  # seeds parameters, data order, binarisation and sampling (fixed default so re-runs resume)
    epochs = 50 if dataset == "celeba" else 500  # training epochs
    lr = 1e-4 if dataset == "celeba" else 1e-3  # Adam learning rate
    batch_size = 128 if dataset == "celeba" else 64
    warmup_modality_epochs = 5 if dataset == "celeba" else 100  # U_m: KL warm-up of the modality latents (MHVAE)
    warmup_core_epochs = 10 if dataset == "celeba" else 200  # U_c: KL warm-up of the core latent z_c (MHVAE)
    warmup_epochs = 10 if dataset == "celeba" else 200  # U_b: KL warm-up of the baselines (JMVAE, MVAE)
    eval_samples = 500 if dataset == "celeba" else 5000  # K: importance samples per test point
    eval_points = None  # evaluate on the first N points of the test split (None: all)
    eval_batch_size = 64  # test points per estimator call (memory is bounded by the estimator's chunking)
    eval_chunk_size = None  # importance samples drawn at once (None: the library's memory-bounded default)
    eval_checkpoint = "best"  # which checkpoint the final evaluation uses: best (validation ELBO) | last
    eval_seed = 12345  # seeds the importance samples and the figures
    evaluate_after = True  # evaluate on the test split after training
    figures = True  # write image grids and learning curves
    split_seed = 0  # seeds the train/valid/test split (keep fixed to compare runs)
    data_path = None  # CelebA folder or environment .npz (None: the defaults in mhvae_perception.data)
    max_train_batches = None  # cap on batches per epoch (quick looks, tests); None: whole epoch
    valid_points = None  # cap on validation points per epoch; None: whole validation split
    tag = ""  # appended to the default run_dir
    run_dir = f"runs/{dataset}-{model}-seed{seed}" + (f"-{tag}" if tag else "")  # outputs + checkpoints
    resume = None  # checkpoint to continue from (default: run_dir/checkpoints/last.pt when it exists)
    checkpoint = None  # for the evaluate command: the checkpoint to evaluate
    eval_dir = None  # for the evaluate command: output folder (default: beside the checkpoint's run folder)
    device = "cpu"  # cpu | cuda | cuda:N
    num_threads = None  # torch intra-op threads (None: torch's default)
    tensorboard = True  # write TensorBoard scalars to run_dir/tb
    progress = True  # tqdm progress bars


@ex.named_config
def quick():
    # A quick look (a few minutes on a laptop CPU): 2 epochs of at most 150 batches, K = 50 on 500 test points.
    epochs = 2
    max_train_batches = 150
    valid_points = 1000
    eval_samples = 50
    eval_points = 500
    tag = "quick"


# ------------------------------------------------------------------------------------------------ helpers
def add_default_observer(options):
    """Option hook (command line only): FileStorageObserver under runs/sacred unless one was asked for."""
    if not any(options.get(flag) for flag in OBSERVER_FLAGS):
        ex.observers.append(FileStorageObserver(str(Path("runs") / "sacred")))


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the generator that fixes epoch ``epoch``'s data order and dynamic binarisation."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 17) % (2 ** 63 - 1)


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "numpy": {"name": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": int(py_state[0]), "state": torch.tensor(py_state[1], dtype=torch.int64),
                   "gauss_next": "none" if py_state[2] is None else float(py_state[2])},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()),
                     None if p["gauss_next"] == "none" else p["gauss_next"]))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def build_model(cfg: dict, splits: data.DatasetSplits):
    from mhvae_perception import presets

    if cfg["model"] not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {cfg['model']!r}")
    kwargs = {}
    if cfg["model"] == "mhvae":
        kwargs.update(warmup_modality_epochs=cfg["warmup_modality_epochs"], warmup_core_epochs=cfg["warmup_core_epochs"])
    else:  # U_b: the baselines' single KL warm-up is the library's warmup_core_epochs
        kwargs["warmup_core_epochs"] = cfg["warmup_epochs"]
    if splits.normalisation:
        kwargs["normalisation"] = splits.normalisation
    return presets.build_model(cfg["dataset"], model=cfg["model"], **kwargs)


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _scalar(v) -> float:
    return float(v.detach().float().mean()) if torch.is_tensor(v) else float(v)


def check_finite(out, epoch: int, step: int, last_good) -> None:
    bad = [k for k, v in out.terms.items() if not math.isfinite(_scalar(v))]
    loss = _scalar(out.loss)
    if bad or not math.isfinite(loss):
        where = f"epoch {epoch + 1}, batch {step + 1}"
        terms = ", ".join(f"{k} = {_scalar(out.terms[k])}" for k in bad) or "none of the terms (only the total)"
        keep = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
        raise NonFiniteLossError(f"non-finite training loss ({loss}) at {where}; non-finite: {terms}. "
                                 f"Training stopped; {keep} (not overwritten). Lower lr or check the data.")


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


def run_paths(run_dir) -> dict:
    run_dir = Path(run_dir)
    return {"dir": run_dir, "ckpt": run_dir / "checkpoints", "last": run_dir / "checkpoints" / "last.pt",
            "best": run_dir / "checkpoints" / "best.pt", "tb": run_dir / "tb"}


RUN_KEYS = ("dataset", "model", "seed", "split_seed", "lr", "batch_size", "warmup_modality_epochs",
            "warmup_core_epochs", "warmup_epochs", "max_train_batches", "data_path")


# ------------------------------------------------------------------------------------------------ training
def train(cfg: dict, _run=None, log=print) -> dict:
    """Train (or continue) the run in ``cfg['run_dir']``; returns the summary dict (also run_dir/summary.json)."""
    paths = run_paths(cfg["run_dir"])
    paths["ckpt"].mkdir(parents=True, exist_ok=True)
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg["num_threads"]))
    device = torch.device(cfg["device"])
    splits = data.load_dataset(cfg["dataset"], split_seed=cfg["split_seed"], path=cfg["data_path"])
    log(splits.summary())
    seed_everything(cfg["seed"])  # before building: identical initial weights per seed
    model = build_model(cfg, splits).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], fused=True)  # one kernel for all parameters
    run_config = {k: cfg.get(k) for k in RUN_KEYS}

    start_epoch, best, history = 0, -math.inf, []
    resume = cfg.get("resume") or (paths["last"] if paths["last"].is_file() else None)
    if resume:
        state = checkpoints.restore_into(model, resume)
        if not state or "epoch" not in state:
            raise checkpoints.CheckpointError(f"{resume} has no training state to resume from (was it a 'best' "
                                              f"checkpoint saved by another tool?)")
        old = state.get("run_config", {})
        for key in ("dataset", "model"):
            if old.get(key) is not None and old.get(key) != cfg[key]:
                raise ValueError(f"cannot resume {resume}: it was trained with {key}={old[key]!r}, this run has "
                                 f"{key}={cfg[key]!r}; use another run_dir")
        changed = {k: (old.get(k), cfg.get(k)) for k in RUN_KEYS if k in old and old.get(k) != cfg.get(k)}
        if changed:
            log(f"warning: resuming with changed settings {changed}; the result will differ from an uninterrupted run")
        optimizer.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start_epoch, best, history = int(state["epoch"]), float(state["best_valid_elbo"]), list(state["history"])
        log(f"resuming from {resume} after epoch {start_epoch}")
    (paths["dir"] / "config.json").write_text(json.dumps(cfg, indent=2, default=str))

    writer = None
    if cfg.get("tensorboard", True):
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(paths["tb"]), purge_step=start_epoch + 1)

    bs = int(cfg["batch_size"])
    limit = None if cfg.get("max_train_batches") is None else int(cfg["max_train_batches"]) * bs
    n_batches = splits.train.num_batches(bs, limit=limit)
    last_good = paths["last"] if paths["last"].is_file() else None
    t0 = time.time()
    for epoch in range(start_epoch, int(cfg["epochs"])):
        model.train()
        gen = torch.Generator().manual_seed(epoch_seed(cfg["seed"], epoch))
        sums, count = defaultdict(float), 0
        bar = tqdm(splits.train.iter_batches(bs, shuffle=True, generator=gen, limit=limit), total=n_batches,
                   desc=f"epoch {epoch + 1}/{cfg['epochs']}", disable=not cfg.get("progress", True),
                   dynamic_ncols=True, leave=False)
        for step, batch in enumerate(bar):
            out = model.loss(to_device(batch, device), epoch=epoch + step / n_batches)
            check_finite(out, epoch, step, last_good)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
            n = int(next(iter(batch.values())).shape[0])
            count += n
            sums["loss"] += _scalar(out.loss) * n
            for k, v in out.terms.items():
                sums[k] += _scalar(v) * n
            if step % 10 == 0 or step == n_batches - 1:
                bar.set_postfix({k: f"{sums[k] / count:.4g}" for k in list(sums)[:6]}, refresh=False)
        bar.close()
        record = {"epoch": epoch + 1}
        record.update({f"train/{k}": v / max(count, 1) for k, v in sums.items()})
        # warm-up weights: the value reached at the end of the epoch (not the epoch mean)
        record.update({f"train/{k}": _scalar(v) for k, v in out.terms.items() if "scale" in k or "beta" in k})
        record["valid/elbo"] = mean_elbo(model, splits.valid, max(bs, 256), device, cfg.get("valid_points"))
        record["time/elapsed_s"] = time.time() - t0
        history.append(record)
        for k, v in record.items():
            if k == "epoch":
                continue
            if _run is not None:
                _run.log_scalar(k, v, epoch + 1)
            if writer is not None:
                writer.add_scalar(k, v, epoch + 1)
        log(f"epoch {epoch + 1}/{cfg['epochs']}: loss {record['train/loss']:.4f}, valid ELBO {record['valid/elbo']:.4f}")
        improved = math.isfinite(record["valid/elbo"]) and record["valid/elbo"] > best
        if improved:
            best = record["valid/elbo"]
        state = {"epoch": epoch + 1, "optimizer": optimizer.state_dict(), "rng": rng_state(),
                 "best_valid_elbo": best, "best_epoch": epoch + 1 if improved else _best_epoch(history, best),
                 "history": history, "run_config": run_config}
        # best first, then last: a kill between the two only repeats this epoch on resume
        if improved:
            checkpoints.save_checkpoint(paths["best"], model, state)
        checkpoints.save_checkpoint(paths["last"], model, state)
        last_good = paths["last"]
        if writer is not None:
            writer.flush()
    if writer is not None:
        writer.close()
    (paths["dir"] / "history.json").write_text(json.dumps(history, indent=2))
    if cfg.get("figures", True) and history:
        plot_learning_curves(history, paths["dir"] / "learning_curves.png")
    summary = {"run_dir": str(paths["dir"]), "epochs": len(history), "best_valid_elbo": best,
               "train_wall_s_this_session": time.time() - t0}
    if cfg.get("evaluate_after", True):
        ck_path = paths["best"] if cfg.get("eval_checkpoint", "best") == "best" and paths["best"].is_file() else paths["last"]
        ck = checkpoints.load_checkpoint(ck_path, device=device)
        summary["metrics"] = evaluate_model(ck.model, splits, cfg, paths["dir"], checkpoint=ck_path, _run=_run, log=log)
    (paths["dir"] / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _best_epoch(history, best):
    for r in history:
        if r["valid/elbo"] == best:
            return r["epoch"]
    return 0


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_model(model, splits: data.DatasetSplits, cfg: dict, out_dir, checkpoint=None, _run=None, log=print) -> dict:
    """The paper's rows on the test split (K importance samples), the mean ELBO terms on the validation split and
    the evaluated test points (metrics.json "elbo_terms"), metrics.json, results.md and figures."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    model.eval()
    torch.manual_seed(int(cfg.get("eval_seed", 12345)))
    K = int(cfg["eval_samples"])
    n_points = len(splits.test) if cfg.get("eval_points") is None else min(len(splits.test), int(cfg["eval_points"]))
    t0 = time.time()
    batches = (to_device(b, device) for b in splits.test.iter_batches(int(cfg["eval_batch_size"]), limit=n_points))
    values = estimators.paper_table(model, batches, num_samples=K, chunk_size=cfg.get("eval_chunk_size"),
                                    progress=cfg.get("progress", True))
    wall = time.time() - t0
    torch.manual_seed(int(cfg.get("eval_seed", 12345)))
    elbo_terms = {"test": mean_terms(model, splits.test, int(cfg["eval_batch_size"]), device, n_points),
                  "valid": mean_terms(model, splits.valid, int(cfg["eval_batch_size"]), device, cfg.get("valid_points"))}
    rows = [{"row": key, "metric": metric, "input": inp, "value": values[key]} for key, metric, inp in estimators.PAPER_ROWS]
    metrics = {"dataset": splits.name, "model": cfg.get("model"), "checkpoint": str(checkpoint) if checkpoint else None,
               "num_samples": K, "test_points": n_points, "test_split_size": len(splits.test),
               "modalities": {"x1": model.modality_names[0], "x2": model.modality_names[1]},
               "rows": rows, "values": {r["row"]: r["value"] for r in rows}, "eval_wall_s": wall,
               "elbo_terms": elbo_terms}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    lines = [f"# {splits.name} / {cfg.get('model')}: test log-likelihoods",
             "",
             f"Held-out test split, {n_points} of {len(splits.test)} points, K = {K} importance samples; "
             f"x1 = {model.modality_names[0]}, x2 = {model.modality_names[1]}; checkpoint `{checkpoint}`.",
             "",
             "| metric | input | value |",
             "|---|---|---|"]
    lines += [f"| {_md(r['metric'])} | {_md(r['input'])} | {r['value']:.2f} |" for r in rows]
    n_table = len(lines)
    names = list(elbo_terms["test"]["terms"])
    lines += ["",
              f"Single-sample ELBO terms (unweighted, every modality given; means per data point, nats) on "
              f"{elbo_terms['valid']['points']} validation and {elbo_terms['test']['points']} test points:",
              "",
              "| split | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    lines += [f"| {split} | " + " | ".join(f"{elbo_terms[split]['terms'][k]:.2f}" for k in names) + " |"
              for split in ("valid", "test")]
    (out_dir / "results.md").write_text("\n".join(lines) + "\n")
    for r in rows:
        if _run is not None:
            _run.log_scalar(f"test/{r['row']}", r["value"])
    log("\n".join(lines[4:n_table] + lines[n_table + 3:]))
    if cfg.get("figures", True):
        save_figures(model, splits, out_dir, seed=int(cfg.get("eval_seed", 12345)))
    return metrics


@torch.no_grad()
def mean_terms(model, dataset: data.DictTensorDataset, batch_size: int, device, limit=None) -> dict:
    """Means of the model's ELBO terms (rec/<modality>, kl/<modality>, kl/core, elbo; no warm-up weights) in
    evaluation mode (every modality given, one reparameterised sample per point) over the first ``limit`` points."""
    was = model.training
    model.eval()
    sums, count = defaultdict(float), 0
    for batch in dataset.iter_batches(batch_size, limit=limit):
        out = model.loss(to_device(batch, device))
        n = int(next(iter(batch.values())).shape[0])
        count += n
        for k, v in out.terms.items():
            if "scale" not in k and "beta" not in k:
                sums[k] += _scalar(v) * n
    model.train(was)
    return {"points": count, "terms": {k: v / max(count, 1) for k, v in sums.items()}}


def _md(text: str) -> str:
    """Escape a table cell for Markdown (the conditional rows contain '|')."""
    return str(text).replace("|", "\\|")


def _grid_images(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> images save_image can show: C not in (1, 3) is shown as C grey frames side by side."""
    x = x.detach().float().cpu().clamp(0, 1)
    if x.dim() == 4 and x.shape[1] not in (1, 3):
        b, c, h, w = x.shape
        x = x.reshape(b * c, 1, h, w)
    return x


@torch.no_grad()
def save_figures(model, splits: data.DatasetSplits, out_dir, seed: int = 0, per_row: int = 8) -> None:
    """Figure-4 style grids: samples conditioned on each label (z_c ~ q(z_c | label)), prior samples and
    reconstructions (odd rows: test images, even rows: their reconstructions from both modalities)."""
    from torchvision.utils import save_image

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model.eval()
    device = next(model.parameters()).device
    x1, x2 = model.modality_names[0], model.modality_names[1]
    frames = 1
    shape = splits.test.shapes[x1]
    if len(shape) == 3 and shape[0] not in (1, 3):
        frames = shape[0]
    test = splits.test.batch(torch.arange(min(len(splits.test), 32)))
    if x2 == "label":
        cond = torch.eye(10).repeat_interleave(per_row, dim=0)
    else:
        cond = test[x2][:min(8, len(splits.test))].repeat_interleave(per_row, dim=0)
    gen = model.generate({x2: cond.to(device)}, n_per_input=1)[x1]
    save_image(_grid_images(gen), out_dir / f"samples_given_{x2}.png", nrow=per_row * frames, padding=1)
    save_image(_grid_images(model.sample(64)[x1]), out_dir / "samples_prior.png", nrow=per_row * frames, padding=1)
    rec = model.reconstruct(to_device(test, device))[x1].cpu()
    orig = test[x1]
    rows = []
    for i in range(0, len(orig), per_row):
        rows += [orig[i:i + per_row], rec[i:i + per_row]]
    save_image(_grid_images(torch.cat(rows)), out_dir / "reconstructions.png", nrow=per_row * frames, padding=1)
    xrec = model.reconstruct({x2: test[x2].to(device)})[x1].cpu()  # cross-modal: x1 from x2 only
    rows = []
    for i in range(0, len(orig), per_row):
        rows += [orig[i:i + per_row], xrec[i:i + per_row]]
    save_image(_grid_images(torch.cat(rows)), out_dir / f"reconstructions_from_{x2}.png", nrow=per_row * frames, padding=1)
    if splits.normalisation:  # environment datasets (image + sound): labelled cross-modal pictures
        save_cross_modal_figures(model, splits, out_dir, seed=seed)


#: Names of the last axis of small vector modalities, for figure titles.
FEATURE_NAMES = {"pendulum_sound": ("Doppler frequency (Hz)", "amplitude 1/d²")}


def _spread_indices(n_total: int, n: int) -> torch.Tensor:
    """``n`` test indices spread evenly over the split (consecutive points are near-identical env steps)."""
    return torch.linspace(0, n_total - 1, min(n, n_total)).round().long()


@torch.no_grad()
def save_cross_modal_figures(model, splits: data.DatasetSplits, out_dir, seed: int = 0, n_images: int = 8,
                             n_sound_points: int = 500) -> None:
    """Labelled cross-modal figures for image + vector datasets (the environments).

    ``cross_modal_<x1>.png``: columns are spread-out test points; rows: the true stacked frames (side by side),
    then x1 generated with one sample z_c ~ q(z_c | given) (and the modality latent from p(z | z_c)), decoded
    to its mean, given x2 only, x1 only and both. ``<x2>_from_<x1>.png``: the true x2 against x2 generated from
    x1 only (z_c ~ q(z_c | x1)) and from both: one scatter panel per feature over test points for small
    vectors (e.g. PendulumSound's Doppler frequency / amplitude per microphone), or per-channel traces of the
    last frame for a few test points for long signals (e.g. Hyperhot's waveforms).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    model.eval()
    device = next(model.parameters()).device
    x1, x2 = model.modality_names[0], model.modality_names[1]
    torch.manual_seed(seed)

    idx = _spread_indices(len(splits.test), n_images)
    test = to_device(splits.test.batch(idx), device)
    given = {f"{x2} only": {x2: test[x2]}, f"{x1} only": {x1: test[x1]}, "both": test}
    rows = [(f"true {x1}", test[x1].cpu())]
    rows += [(f"from {name}", model.generate(b)[x1].cpu()) for name, b in given.items()]

    def tile(img: torch.Tensor) -> np.ndarray:  # (C, H, W) -> C frames side by side (grey) or RGB
        img = img.float().clamp(0, 1)
        if img.shape[0] == 3:
            return img.permute(1, 2, 0).numpy()
        sep = torch.ones(img.shape[1], 2)
        parts = []
        for c in range(img.shape[0]):
            parts += [img[c], sep] if c < img.shape[0] - 1 else [img[c]]
        return torch.cat(parts, dim=1).numpy()

    n = len(idx)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.9 * n, 1.15 * len(rows) + 0.6), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r][c]
            ax.imshow(tile(imgs[c]), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0:
                ax.set_title(f"test #{int(idx[c])}", fontsize=8)
    fig.suptitle(f"{splits.name}: {x1} (frames side by side) generated with z_c ~ q(z_c | given), decoded mean",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / f"cross_modal_{x1}.png", dpi=80)
    plt.close(fig)

    # x2 from x1
    torch.manual_seed(seed)
    m = min(len(splits.test), n_sound_points)
    spread = _spread_indices(len(splits.test), m)
    pts = to_device(splits.test.batch(spread), device)
    true2 = pts[x2].cpu()
    from_x1 = model.generate({x1: pts[x1]})[x2].cpu()
    from_both = model.generate(pts)[x2].cpu()
    shape = tuple(true2.shape[1:])
    n_feat = int(np.prod(shape))
    if n_feat <= 24:
        cols = shape[-1] * (shape[-2] if len(shape) >= 2 else 1)
        cols = cols if cols <= 8 else 6
        nrows = math.ceil(n_feat / cols)
        fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.5 * nrows), squeeze=False)
        t, a, b = true2.reshape(m, -1), from_x1.reshape(m, -1), from_both.reshape(m, -1)
        for f in range(nrows * cols):
            ax = axes[f // cols][f % cols]
            if f >= n_feat:
                ax.axis("off")
                continue
            ax.scatter(t[:, f], b[:, f], s=3, alpha=0.4, color="tab:green", label="from both")
            ax.scatter(t[:, f], a[:, f], s=3, alpha=0.5, color="tab:blue", label=f"from {x1} only")
            lo, hi = float(t[:, f].min()), float(t[:, f].max())
            ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
            r2 = 1 - float(((a[:, f] - t[:, f]) ** 2).mean()) / max(float(t[:, f].var(unbiased=False)), 1e-12)
            pos = [int(i) for i in np.unravel_index(f, shape)]
            names = FEATURE_NAMES.get(splits.name)
            if names and len(pos) == 3:
                label = f"frame {pos[0]}, mic {pos[1]}: {names[pos[2]]}"
            else:
                label = f"{x2}{pos}"
            ax.set_title(f"{label}\nR² ({x1} only) = {r2:.2f}", fontsize=8)
            ax.tick_params(labelsize=6)
            if f % cols == 0:
                ax.set_ylabel("generated", fontsize=8)
            if f // cols == nrows - 1:
                ax.set_xlabel("true", fontsize=8)
        axes[0][0].legend(fontsize=6, markerscale=3)
        fig.suptitle(f"{splits.name}: true {x2} features vs {x2} generated from {x1} (z_c ~ q(z_c | {x1})), "
                     f"{m} test points", fontsize=9)
    else:
        ex_idx = [0, m // 2, m - 1][:m]
        chans = shape[-2] if len(shape) >= 2 else 1
        fig, axes = plt.subplots(len(ex_idx), chans, figsize=(3.2 * chans, 2.0 * len(ex_idx)), squeeze=False)
        for r, i in enumerate(ex_idx):
            last = (lambda v: v[i].reshape(-1, chans, shape[-1])[-1])
            for c in range(chans):
                ax = axes[r][c]
                ax.plot(last(true2)[c].numpy(), color="k", lw=0.6, label="true")
                ax.plot(last(from_x1)[c].numpy(), color="tab:blue", lw=0.6, alpha=0.8, label=f"from {x1} only")
                ax.plot(last(from_both)[c].numpy(), color="tab:green", lw=0.6, alpha=0.6, label="from both")
                ax.tick_params(labelsize=6)
                if r == 0:
                    ax.set_title(f"channel {c}", fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"test #{int(spread[i])}", fontsize=8)
        axes[0][0].legend(fontsize=6)
        fig.suptitle(f"{splits.name}: {x2} (last frame per channel), true vs generated from {x1} "
                     f"(z_c ~ q(z_c | {x1})) and from both", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / f"{x2}_from_{x1}.png", dpi=80)
    plt.close(fig)


def plot_learning_curves(history, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    keys = sorted({k for r in history for k in r if k.startswith("train/")})
    panels = [
        ("objective", [k for k in ("train/loss", "train/elbo", "valid/elbo") if any(k in r for r in history)]),
        ("reconstruction log-likelihood", [k for k in keys if "rec" in k]),
        ("KL", [k for k in keys if "kl" in k]),
        ("warm-up weights", [k for k in keys if "scale" in k or "beta" in k or "weight" in k]),
    ]
    panels = [(t, ks) for t, ks in panels if ks]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.5), squeeze=False)
    for ax, (title, ks) in zip(axes[0], panels):
        for k in ks:
            ax.plot(epochs, [r.get(k, float("nan")) for r in history], marker="." if len(epochs) < 30 else None, label=k)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ sacred entry points
@ex.main
def main(_run, _config):
    """Train with the paper's protocol (continuing run_dir if it has a last checkpoint), then evaluate."""
    cfg = dict(_config)
    summary = train(cfg, _run)
    return summary.get("metrics", {}).get("values", summary.get("best_valid_elbo"))


@ex.command
def evaluate(_run, _config):
    """Evaluate any saved checkpoint: ``evaluate with checkpoint=PATH [eval_samples=K eval_points=N eval_dir=DIR]``."""
    cfg = dict(_config)
    if not cfg.get("checkpoint"):
        raise ValueError("evaluate needs a checkpoint: python pretrain/run.py evaluate with checkpoint=PATH")
    path = Path(cfg["checkpoint"])
    ck = checkpoints.load_checkpoint(path, device=cfg["device"])
    old = (ck.training_state or {}).get("run_config", {})
    modified = set()
    try:
        mods = _run.config_modifications
        modified = set(mods.modified) | set(mods.added)
    except AttributeError:
        pass
    for key in ("dataset", "model", "split_seed", "data_path"):
        if key in old and key not in modified:
            cfg[key] = old[key]
    if "eval_samples" not in modified and cfg["dataset"] in PAPER_SETTINGS:
        cfg["eval_samples"] = PAPER_SETTINGS[cfg["dataset"]]["eval_samples"]
    splits = data.load_dataset(cfg["dataset"], split_seed=cfg["split_seed"], path=cfg["data_path"])
    run_folder = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    n = "all" if cfg.get("eval_points") is None else cfg["eval_points"]
    out_dir = Path(cfg["eval_dir"]) if cfg.get("eval_dir") else run_folder / f"eval-{path.stem}-K{cfg['eval_samples']}-n{n}"
    metrics = evaluate_model(ck.model, splits, cfg, out_dir, checkpoint=path, _run=_run)
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'results.md'}")
    return metrics["values"]


if __name__ == "__main__":
    ex.option_hook(add_default_observer)
    ex.run_commandline()
