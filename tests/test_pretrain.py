"""Tests of pretrain/run.py: config handling, resume == uninterrupted, NaN stop, evaluation, real-MNIST smoke run."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from sacred.utils import ConfigAddedError  # noqa: E402

from mhvae_perception import checkpoints, data  # noqa: E402
from pretrain import run as run_mod  # noqa: E402

ex = run_mod.ex
FAST = {"progress": False, "tensorboard": False, "figures": False, "evaluate_after": False}


def synthetic_mnist(n_train=192, n_valid=64, n_test=32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def part(n, binary):
        images = (torch.rand(n, 1, 28, 28, generator=g) * 255).to(torch.uint8)
        labels = torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=g), 10).float()
        if binary:
            return data.DictTensorDataset({"image": data.binarise_once(images), "label": labels})
        return data.DictTensorDataset({"image": images, "label": labels}, dynamic_binarise=("image",))

    return data.DatasetSplits("mnist", part(n_train, False), part(n_valid, True), part(n_test, True), ("image", "label"))


@pytest.fixture
def fake_mnist(monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: synthetic_mnist())


def run(config_updates, command="main", named=()):
    return ex.run(command, config_updates=config_updates, named_configs=named, options={"--loglevel": "ERROR"})


def config_of(updates=None, named=()):
    return run(updates or {}, command="print_config", named=named).config


def test_paper_defaults_and_overrides():
    c = config_of({"dataset": "mnist"})
    assert (c["epochs"], c["lr"], c["batch_size"], c["warmup_modality_epochs"], c["warmup_core_epochs"],
            c["warmup_epochs"], c["eval_samples"]) == (500, 1e-3, 64, 100, 200, 200, 5000)
    c = config_of({"dataset": "celeba"})
    assert (c["epochs"], c["lr"], c["batch_size"], c["warmup_modality_epochs"], c["warmup_core_epochs"],
            c["warmup_epochs"], c["eval_samples"]) == (50, 1e-4, 128, 5, 10, 10, 500)
    c = config_of({"dataset": "fashionmnist", "epochs": 20, "eval_samples": 500, "seed": 3})
    assert (c["epochs"], c["eval_samples"], c["seed"], c["lr"]) == (20, 500, 3, 1e-3)
    assert c["run_dir"] == "runs/fashionmnist-mhvae-seed3"
    q = config_of({"dataset": "mnist"}, named=["quick"])
    assert q["epochs"] <= 3 and q["eval_samples"] <= 100 and q["run_dir"].endswith("-quick")


def test_config_typo_fails():
    with pytest.raises(ConfigAddedError):
        run({"epohcs": 3}, command="print_config")


def test_resume_after_interruption_equals_uninterrupted(tmp_path, fake_mnist, monkeypatch):
    base = dict(FAST, epochs=3, batch_size=32, warmup_modality_epochs=2, warmup_core_epochs=3, seed=7)
    run(dict(base, run_dir=str(tmp_path / "a")))

    class Crash(Exception):
        pass

    real_check = run_mod.check_finite

    def crashing_check(out, epoch, step, last_good):  # dies in the middle of the third epoch
        if epoch == 2 and step == 3:
            raise Crash()
        return real_check(out, epoch, step, last_good)

    monkeypatch.setattr(run_mod, "check_finite", crashing_check)
    with pytest.raises(Crash):
        run(dict(base, run_dir=str(tmp_path / "b")))
    assert checkpoints.load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt").training_state["epoch"] == 2
    monkeypatch.setattr(run_mod, "check_finite", real_check)
    run(dict(base, run_dir=str(tmp_path / "b")))  # the same command continues from last.pt

    a = checkpoints.load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = checkpoints.load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a.training_state["epoch"] == b.training_state["epoch"] == 3
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["valid/elbo"] for r in a.training_state["history"]] == [r["valid/elbo"] for r in b.training_state["history"]]

    # an explicit resume= entry continues another run's checkpoint in a new folder
    run(dict(base, epochs=4, run_dir=str(tmp_path / "c"), resume=str(tmp_path / "a" / "checkpoints" / "last.pt")))
    assert checkpoints.load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt").training_state["epoch"] == 4


def test_nonfinite_loss_stops_with_term_name(tmp_path, fake_mnist, monkeypatch):
    real_build = run_mod.build_model

    def build_poisoned(cfg, splits):
        model = real_build(cfg, splits)
        real_loss = model.loss

        def loss(batch, epoch=0.0):
            out = real_loss(batch, epoch=epoch)
            if epoch >= 1.5:
                out.terms["kl/core"] = torch.tensor(float("nan"))
                out.loss = out.loss * float("nan")
            return out

        model.loss = loss
        return model

    monkeypatch.setattr(run_mod, "build_model", build_poisoned)
    with pytest.raises(run_mod.NonFiniteLossError, match=r"kl/core.*last\.pt"):
        run(dict(FAST, epochs=3, batch_size=32, run_dir=str(tmp_path / "n")))
    assert checkpoints.load_checkpoint(tmp_path / "n" / "checkpoints" / "last.pt").training_state["epoch"] == 1


def _mnist_available() -> bool:
    return any((d / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()
               for d in (data.shared_data_root(), data.data_root()))


@pytest.mark.skipif(not _mnist_available(),
                    reason="real-data smoke test needs the MNIST archives in ../shared/data/MNIST/raw (absent here)")
def test_real_mnist_smoke_and_evaluate_command(tmp_path):
    rd = tmp_path / "smoke"
    r = run({"dataset": "mnist", "epochs": 2, "max_train_batches": 25, "valid_points": 512, "eval_samples": 8,
             "eval_points": 32, "progress": False, "run_dir": str(rd)})
    history = json.loads((rd / "history.json").read_text())
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    metrics = json.loads((rd / "metrics.json").read_text())
    assert [row["row"] for row in metrics["rows"]] == [k for k, _, _ in run_mod.estimators.PAPER_ROWS]
    assert all(math.isfinite(v) for v in metrics["values"].values())
    assert r.result == metrics["values"]
    for name in ("config.json", "history.json", "summary.json", "metrics.json", "results.md", "learning_curves.png",
                 "samples_given_label.png", "samples_prior.png", "reconstructions.png", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (rd / name).is_file(), name
    assert list((rd / "tb").glob("events.out.tfevents.*"))
    table = (rd / "results.md").read_text()
    assert "| metric | input | value |" in table and table.count("\n| log p(") == 5

    ev = run({"checkpoint": str(rd / "checkpoints" / "best.pt"), "eval_samples": 4, "eval_points": 16,
              "progress": False, "figures": False}, command="evaluate")
    out = rd / "eval-best-K4-n16" / "metrics.json"
    assert out.is_file() and json.loads(out.read_text())["num_samples"] == 4
    assert set(ev.result) == set(metrics["values"])


def synthetic_pendulum_sound(n_train=96, n_valid=32, n_test=40, seed=0):
    """PendulumSound-shaped splits (0/1 uint8 image frames, Gaussian sound features with normalisation)."""
    g = torch.Generator().manual_seed(seed)

    def part(n):
        image = (torch.rand(n, 2, 60, 60, generator=g) < 0.1).to(torch.uint8)
        sound = 440 + 50 * torch.randn(n, 2, 3, 2, generator=g)
        return data.DictTensorDataset({"image": image, "sound": sound}, uint8_scale={"image": 1.0})

    train, valid, test = part(n_train), part(n_valid), part(n_test)
    norm = {"sound": data.sound_statistics(train.tensors["sound"])}
    return data.DatasetSplits("pendulum_sound", train, valid, test, ("image", "sound"), normalisation=norm)


def test_env_dataset_run_stores_normalisation_and_writes_cross_modal_figures(tmp_path, monkeypatch):
    splits = synthetic_pendulum_sound()
    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: splits)
    rd = tmp_path / "env"
    run({"dataset": "pendulum_sound", "epochs": 1, "batch_size": 32, "warmup_modality_epochs": 1,
         "warmup_core_epochs": 1, "eval_samples": 3, "eval_points": 16, "eval_batch_size": 8, "progress": False,
         "tensorboard": False, "run_dir": str(rd)})
    ck = checkpoints.load_checkpoint(rd / "checkpoints" / "best.pt")
    norm = ck.config["modalities"][1]["normalisation"]
    assert torch.allclose(torch.tensor(norm["mean"]), torch.tensor(splits.normalisation["sound"]["mean"]))
    metrics = json.loads((rd / "metrics.json").read_text())
    for split in ("valid", "test"):
        terms = metrics["elbo_terms"][split]["terms"]
        assert {"rec/image", "rec/sound", "kl/image", "kl/sound", "kl/core"} <= set(terms)
        assert all(math.isfinite(v) for v in terms.values())
    assert metrics["elbo_terms"]["test"]["points"] == 16
    assert "kl/core" in (rd / "results.md").read_text()
    for name in ("cross_modal_image.png", "sound_from_image.png", "reconstructions_from_sound.png",
                 "learning_curves.png"):
        assert (rd / name).stat().st_size > 1000, name
