"""Data-parallel pretraining (pretrain/distributed.py): two CPU ranks with gloo train like one process, only rank 0
writes, a 2-rank checkpoint resumes in one process, and settings that differ across ranks are refused.

The ranks are started with torch.multiprocessing and torchrun's environment variables (WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), so run.py takes the same path as under torchrun.

Why the comparison with one process can be exact (to float rounding): the ranks draw their own MRD masks and
reparameterisation noise (distributed.rank_seed), and BatchNorm normalises with each rank's share, so the
comparison turns those off: MRD dropout 0, no BatchNorm, and the reparameterisation returns the mean (in both
runs). What is left, the batches, their sharding, the gradient average (with an uneven last batch) and the
optimiser steps, must then match one process.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mhvae_perception import checkpoints, data
from mhvae_perception.models import mhvae
from pretrain import distributed
from pretrain.settings import SettingsError
from test_pretrain import FAST, run, synthetic_mnist

NET = {"activation": "leaky_relu", "batchnorm": False}
SMALL = {"modalities": {"image": {"network_kwargs": {"hidden": [32], **NET}, "dropout": 0.0},
                        "label": {"network_kwargs": {"hidden": [16], **NET}, "dropout": 0.0}},
         "core": {"hidden": [16], "batchnorm": False}}
# 181 training items in batches of 32: 5 full batches, then 21 items split 11 / 10 between two ranks
BASE = dict(FAST, epochs=2, batch_size=32, lr=3e-3, warmup_modality_epochs=1, warmup_core_epochs=2, seed=3,
            model_overrides=SMALL)


def tiny_splits(*args, **kwargs):
    return synthetic_mnist(n_train=181, n_valid=40, n_test=8)


def mean_only(mu, logvar, num_samples=None):
    """A noise-free reparameterisation: the loss is then a function of the data and the weights alone."""
    return mu if num_samples is None else mu.expand(num_samples, *mu.shape)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, size: int, port: int, root: str, updates: list) -> None:
    """One rank: torchrun's variables, its own working folder (so that a file it wrote would show), the run."""
    os.environ.update(WORLD_SIZE=str(size), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    folder = Path(root) / f"rank{rank}"
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)
    data.load_dataset = tiny_splits
    mhvae.reparameterise = mean_only
    try:
        run(updates[rank])
        outcome = "ok"
    except SettingsError as err:
        outcome = f"SettingsError: {err}"
    (Path(root) / f"outcome{rank}.txt").write_text(outcome)


def spawn(root: Path, updates: list) -> list[str]:
    """Run the experiment on ``len(updates)`` ranks (rank r with ``updates[r]``); each rank's outcome."""
    mp.spawn(_rank, args=(len(updates), _free_port(), str(root), updates), nprocs=len(updates), join=True)
    return [(root / f"outcome{r}.txt").read_text() for r in range(len(updates))]


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def deterministic(monkeypatch):
    monkeypatch.setattr(data, "load_dataset", tiny_splits)
    monkeypatch.setattr(mhvae, "reparameterise", mean_only)


def test_two_ranks_train_like_one_process_and_resume_in_one(tmp_path, deterministic):
    one = tmp_path / "one"
    run(dict(BASE, run_dir=str(one)))
    outcomes = spawn(tmp_path / "ranks", [dict(BASE, run_dir="r")] * 2)  # run_dir relative to each rank's folder
    assert outcomes == ["ok", "ok"]
    assert files_under(tmp_path / "ranks" / "rank1") == []  # rank 1 wrote nothing
    two = tmp_path / "ranks" / "rank0" / "r"
    assert {"config.json", "history.json", "summary.json", "checkpoints/last.pt"} <= set(files_under(two))

    def compare(a: Path, b: Path) -> None:
        ca, cb = (checkpoints.load_checkpoint(p / "checkpoints" / "last.pt") for p in (a, b))
        sa, sb = ca.model.state_dict(), cb.model.state_dict()
        assert sa.keys() == sb.keys()  # the plain model's names (no DDP "module." prefix)
        for k in sa:  # float rounding only: the gradient of 2 half-batch means vs of one batch mean
            torch.testing.assert_close(sb[k], sa[k], rtol=1e-4, atol=1e-5, msg=k)
        ha, hb = ca.training_state["history"], cb.training_state["history"]
        for key in ("train/loss", "train/elbo", "train/kl/core", "valid/elbo"):  # logged over every rank's items
            assert [r[key] for r in hb] == pytest.approx([r[key] for r in ha], rel=1e-5), key

    compare(one, two)
    run(dict(BASE, epochs=3, run_dir=str(one)))  # one process continues: epoch 3
    run(dict(BASE, epochs=3, run_dir=str(two)))  # the 2-rank checkpoint continues in one process
    compare(one, two)


def test_settings_that_differ_across_ranks_are_refused(tmp_path):
    outcomes = spawn(tmp_path, [dict(BASE, run_dir="r"), dict(BASE, run_dir="r", lr=1e-2)])
    for outcome in outcomes:
        assert outcome.startswith("SettingsError: the settings differ across the 2 ranks")
        assert "lr: rank 0 has 0.003, rank 1 has 0.01" in outcome
    assert files_under(tmp_path / "rank0") == files_under(tmp_path / "rank1") == []  # refused before any file


def test_a_batch_the_ranks_cannot_share_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SettingsError, match=r"batch_size=32 is not divisible by the 3 ranks"):
        run(dict(BASE, run_dir=str(tmp_path / "r")))  # no process group is started (it would wait for 2 more)
    with pytest.raises(SettingsError, match="the evaluate command runs in one process"):
        run({"checkpoint": "x.pt", "progress": False}, command="evaluate")
    assert not (tmp_path / "r").exists()


def test_shards_make_the_global_batch():
    batch = {"x": torch.arange(21.0)[:, None], "y": torch.arange(21)}
    parts = [distributed.shard(batch, distributed.World(r, r, 2)) for r in range(2)]
    assert torch.equal(torch.cat([p["x"] for p, _ in parts]), batch["x"])  # the union is the batch, in order
    assert [s for _, s in parts] == [2 * 11 / 21, 2 * 10 / 21]  # DDP's mean of the scaled losses = global mean
    assert distributed.shard(batch, distributed.SINGLE) == (batch, 1.0)
    with pytest.raises(SettingsError, match="fewer than 2 per rank.*max_train_batches=5"):
        distributed.check_last_batch(163, 32, distributed.World(0, 0, 2))  # a last batch of 3 items
    seeds = {distributed.rank_seed(0, e, r) for e in range(3) for r in range(4)}
    assert len(seeds) == 12  # every rank and epoch its own noise
