"""Tests of pretrain/run.py: settings, resume == uninterrupted, refusals, locks, NaN stop, evaluation, figures,
the command line (observer, cout.txt) and a real-MNIST smoke run."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sacred.utils import ConfigAddedError

from mhvae_perception import checkpoints, data, estimators
from pretrain import figures
from pretrain import run as run_mod
from pretrain.runfolder import RunFolderBusy, RunFolderLock
from pretrain.settings import SettingsError

REPO = Path(__file__).resolve().parent.parent
ex = run_mod.ex
FAST = {"progress": False, "tensorboard": False, "figures": False, "evaluate_after": False, "device": "cpu"}


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


@pytest.fixture
def no_data(monkeypatch):
    """Loading any data fails the test: the code under test must stop before."""
    def refuse(*args, **kwargs):
        raise AssertionError("data was loaded")

    monkeypatch.setattr(data, "load_dataset", refuse)


def run(config_updates, command="main", named=()):
    return ex.run(command, config_updates=config_updates, named_configs=named, options={"--loglevel": "ERROR"})


def config_of(updates=None, named=()):
    return run(updates or {}, command="print_config", named=named).config


def last_state(run_dir) -> dict:
    return checkpoints.load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt").training_state


# ------------------------------------------------------------------------------------------------ settings
def test_paper_defaults_and_overrides():
    c = config_of({"dataset": "mnist"})
    assert (c["epochs"], c["lr"], c["batch_size"], c["warmup_modality_epochs"], c["warmup_core_epochs"],
            c["warmup_epochs"], c["eval_samples"], c["device"]) == (500, 1e-3, 64, 100, 200, 200, 5000, "auto")
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


@pytest.mark.parametrize("key, value, allowed", [
    ("max_train_batches", 0, "None or an integer >= 1"), ("eval_points", 0, "None or an integer >= 1"),
    ("eval_points", 2.5, "None or an integer >= 1"), ("eval_checkpoint", "worst", "one of"),
    ("batch_size", 0, "an integer >= 1"), ("lr", 0, "> 0"), ("lr", -1e-3, "> 0"), ("lr", float("nan"), "> 0"),
    ("epochs", -1, "an integer >= 0"), ("epochs", 2.5, "an integer >= 0"), ("eval_samples", 0, "an integer >= 1"),
    ("dataset", "mnits", "one of"), ("model", "vae", "one of"), ("device", "tpu", "unknown device"),
    ("progress", "yes", "True or False"), ("warmup_core_epochs", -1, ">= 0"), ("num_threads", 0, ">= 1"),
    ("seed", True, "an integer >= 0"),
])
def test_bad_setting_is_refused_before_any_data_is_loaded(tmp_path, no_data, key, value, allowed):
    with pytest.raises(SettingsError, match=rf"{key}=.*{allowed}" if key != "device" else "device=.*unknown device"):
        run(dict(FAST, run_dir=str(tmp_path / "r"), **{"epochs": 1, key: value}))
    assert not (tmp_path / "r").exists()  # nothing written either


def test_evaluate_needs_a_checkpoint(no_data):
    with pytest.raises(SettingsError, match="needs a checkpoint"):
        run({"progress": False}, command="evaluate")


# ------------------------------------------------------------------------------------------------ resume
def test_resume_after_interruption_equals_uninterrupted(tmp_path, fake_mnist, monkeypatch):
    base = dict(FAST, epochs=3, batch_size=32, warmup_modality_epochs=2, warmup_core_epochs=3, seed=7)
    run(dict(base, run_dir=str(tmp_path / "a")))

    class Crash(Exception):
        pass

    real_check = run_mod.check_finite

    def crashing_check(scalars, epoch, step, last_good):  # dies in the middle of the third epoch
        if epoch == 2 and step == 3:
            raise Crash()
        return real_check(scalars, epoch, step, last_good)

    monkeypatch.setattr(run_mod, "check_finite", crashing_check)
    with pytest.raises(Crash):
        run(dict(base, run_dir=str(tmp_path / "b")))
    assert last_state(tmp_path / "b")["epoch"] == 2
    monkeypatch.setattr(run_mod, "check_finite", real_check)
    run(dict(base, run_dir=str(tmp_path / "b")))  # the same command continues from last.pt

    a = checkpoints.load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = checkpoints.load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert a.training_state["epoch"] == b.training_state["epoch"] == 3
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [r["valid/elbo"] for r in a.training_state["history"]] == [r["valid/elbo"] for r in b.training_state["history"]]
    elapsed = [r["time/elapsed_s"] for r in b.training_state["history"]]
    assert elapsed == sorted(elapsed)  # training wall time adds up over the two sessions

    # an explicit resume= entry continues another run's checkpoint in a new folder
    run(dict(base, epochs=4, run_dir=str(tmp_path / "c"), resume=str(tmp_path / "a" / "checkpoints" / "last.pt")))
    assert last_state(tmp_path / "c")["epoch"] == 4


def test_changed_settings_are_refused_raising_epochs_continues(tmp_path, fake_mnist, monkeypatch):
    base = dict(FAST, epochs=1, batch_size=32, max_train_batches=2, run_dir=str(tmp_path / "r"))
    run(base)
    recorded = json.loads((tmp_path / "r" / "config.json").read_text())["training_settings"]
    assert recorded["lr"] == 1e-3 and recorded["max_train_batches"] == 2 and "warmup_core_epochs" in recorded
    fake = data.load_dataset
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    for key, value in (("lr", 1e-2), ("batch_size", 16), ("seed", 1), ("split_seed", 1), ("max_train_batches", 3),
                       ("warmup_core_epochs", 5), ("model", "jmvae"), ("data_path", "elsewhere")):
        with pytest.raises(SettingsError, match=rf"{key}: .* -> .*another tag=\.\.\. or run_dir=\.\.\."):
            run(dict(base, epochs=2, **{key: value}))
    assert last_state(tmp_path / "r")["epoch"] == 1
    monkeypatch.setattr(data, "load_dataset", fake)
    run(dict(base, epochs=2))  # raising epochs continues
    assert last_state(tmp_path / "r")["epoch"] == 2
    with pytest.raises(SettingsError, match="already trained 2 epochs and epochs=1 asks for fewer"):
        run(dict(base, epochs=1))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: (_ for _ in ()).throw(AssertionError("data loaded")))
    r = run(dict(base, epochs=2))  # finished, nothing to evaluate: stops before loading data
    assert r.result is None and last_state(tmp_path / "r")["epoch"] == 2


def test_finished_run_is_only_evaluated_again(tmp_path, fake_mnist, monkeypatch):
    base = dict(FAST, epochs=1, batch_size=32, max_train_batches=2, eval_samples=2, eval_points=4,
                run_dir=str(tmp_path / "r"))
    run(base)
    before = (tmp_path / "r" / "checkpoints" / "last.pt").stat().st_mtime_ns
    monkeypatch.setattr(run_mod, "train_one_epoch", lambda *a, **k: pytest.fail("trained again"))
    r = run(dict(base, evaluate_after=True))
    assert set(r.result) >= {k for k, _, _ in estimators.PAPER_ROWS}
    assert (tmp_path / "r" / "metrics.json").is_file()
    assert (tmp_path / "r" / "checkpoints" / "last.pt").stat().st_mtime_ns == before


def test_zero_epochs_evaluates_the_untrained_model(tmp_path, fake_mnist):
    rd = tmp_path / "z"
    r = run(dict(FAST, epochs=0, eval_samples=2, eval_points=4, evaluate_after=True, run_dir=str(rd)))
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["checkpoint"] is None and metrics["train_epochs"] == 0 and r.result == metrics["values"]
    assert "ours MHVAE (0 ep, K = 2, n = 4)" in (rd / "results.md").read_text()
    assert not (rd / "checkpoints" / "last.pt").exists()
    per_point = np.load(rd / "per_point.npz", allow_pickle=False)  # the estimates behind each row's mean
    for key, values in zip(per_point["rows"], per_point["values"]):
        assert values.shape == (4,) and values.mean() == pytest.approx(metrics["values"][str(key)])


def legacy_state(state: dict) -> dict:
    """A training state in the layout of the runs trained before this version: run_config without valid_points
    / env_id, warm-up weights logged as train/beta_m_scale, train/beta_c_scale, no time/epoch_s."""
    old = dict(state)
    old["run_config"] = {k: v for k, v in state["run_config"].items() if k not in ("valid_points", "env_id")}
    old["run_config"]["warmup_epochs"] = 200  # old records held every warm-up, used or not
    renames = {"train/schedule/beta_m": "train/beta_m_scale", "train/schedule/beta_c": "train/beta_c_scale"}
    old["history"] = [{renames.get(k, k): v for k, v in r.items() if k != "time/epoch_s"} for r in state["history"]]
    return old


def test_resume_from_a_checkpoint_in_the_previous_layout(tmp_path, fake_mnist):
    rd = tmp_path / "old"
    base = dict(FAST, epochs=1, batch_size=32, max_train_batches=2, run_dir=str(rd))
    run(base)
    ck = checkpoints.load_checkpoint(rd / "checkpoints" / "last.pt")
    checkpoints.save_checkpoint(rd / "checkpoints" / "last.pt", ck.model, legacy_state(ck.training_state))
    (rd / "config.json").write_text(json.dumps({k: v for k, v in base.items()}))  # flat, as before
    assert "train/beta_m_scale" in last_state(rd)["history"][0]
    run(dict(base, epochs=2, figures=True))
    history = last_state(rd)["history"]
    assert [r["epoch"] for r in history] == [1, 2]
    assert "train/beta_m_scale" in history[0] and "train/schedule/beta_m" in history[1]
    panels = dict(figures.learning_curve_panels(history))
    assert set(panels["warm-up weights"]) == {"train/beta_m_scale", "train/beta_c_scale", "train/schedule/beta_m",
                                              "train/schedule/beta_c"}
    assert not any("scale" in k for k in panels["KL"])
    assert (rd / "learning_curves.png").stat().st_size > 1000


def test_real_mnist_runs_resume_with_tomorrows_command():
    """The MNIST runs trained today resume with their own command (read-only check of their last.pt)."""
    from pretrain.settings import compare_with_recorded

    found = False
    for model in ("mhvae", "jmvae"):
        path = REPO / "runs" / f"mnist-{model}-seed0" / "checkpoints" / "last.pt"
        if not path.is_file():
            continue
        found = True
        ck = checkpoints.load_checkpoint(path)
        cfg = dict(config_of({"dataset": "mnist", "model": model, "num_threads": 1, "progress": False,
                              "evaluate_after": False}))
        state = ck.training_state
        assert "continuing" in compare_with_recorded(state["run_config"], cfg, int(state["epoch"]), str(path))
        fresh = run_mod.model_from_settings(cfg, synthetic_mnist())  # MNIST: no normalisation statistics
        assert run_mod._same_description(ck.config, fresh.config.to_dict())
    if not found:
        pytest.skip("runs/mnist-*-seed0 are not in this checkout")


# ------------------------------------------------------------------------------------------------ locks
def test_second_process_in_a_run_folder_is_refused(tmp_path, fake_mnist):
    rd = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pretrain.runfolder import RunFolderLock
        RunFolderLock({str(rd)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=rf"in use by another process \(pid {holder.pid}\)"):
            run(dict(FAST, epochs=1, batch_size=32, max_train_batches=1, run_dir=str(rd)))
        with pytest.raises(RunFolderBusy):
            RunFolderLock(rd).acquire()
    finally:
        holder.kill()
        holder.wait()
    run(dict(FAST, epochs=1, batch_size=32, max_train_batches=1, run_dir=str(rd)))  # no stale lock after a kill
    assert last_state(rd)["epoch"] == 1
    with RunFolderLock(rd):  # released when the run ended
        pass


# ------------------------------------------------------------------------------------------------ NaN stop
def poisoned_builder(when, nan_loss: bool = True):
    """model_from_settings whose model's loss term kl/core (and, with ``nan_loss``, the loss) is NaN when
    ``when(epoch)`` holds (epoch: the fractional epoch the loss is called with)."""
    real_build = run_mod.model_from_settings

    def build_poisoned(cfg, splits):
        model = real_build(cfg, splits)
        real_loss = model.loss

        def loss(batch, epoch=0.0):
            out = real_loss(batch, epoch=epoch)
            if when(epoch):
                out.terms["kl/core"] = torch.tensor(float("nan"))
                if nan_loss:
                    out.loss = out.loss * float("nan")
            return out

        model.loss = loss
        return model

    return build_poisoned


def test_nonfinite_loss_stops_with_term_name(tmp_path, fake_mnist, monkeypatch):
    monkeypatch.setattr(run_mod, "model_from_settings", poisoned_builder(lambda epoch: epoch >= 1.5))
    with pytest.raises(run_mod.NonFiniteLossError, match=r"kl/core = nan.*last\.pt"):
        run(dict(FAST, epochs=3, batch_size=32, run_dir=str(tmp_path / "n")))
    assert last_state(tmp_path / "n")["epoch"] == 1


def test_checking_the_loss_every_few_steps_gives_the_same_run_and_still_stops_on_nan(tmp_path, fake_mnist,
                                                                                      monkeypatch):
    """The GPU path (a NaN check every SYNC_EVERY steps, sums kept on the device) on the CPU: the same history and
    weights as checking every step, and a NaN between two checks still stops the run at the epoch's end."""
    base = dict(FAST, epochs=2, batch_size=32, max_train_batches=5)
    run(dict(base, run_dir=str(tmp_path / "every")))
    monkeypatch.setitem(run_mod.SYNC_EVERY, "cpu", 3)
    run(dict(base, run_dir=str(tmp_path / "sparse")))
    a, b = last_state(tmp_path / "every"), last_state(tmp_path / "sparse")
    assert a["history"][-1]["train/loss"] == b["history"][-1]["train/loss"]
    step_1_of_epoch_2 = lambda epoch: 1.0 + 1 / 5 <= epoch < 1.0 + 2 / 5  # noqa: E731 - between checks 0 and 3
    monkeypatch.setattr(run_mod, "model_from_settings", poisoned_builder(step_1_of_epoch_2, nan_loss=False))
    with pytest.raises(run_mod.NonFiniteLossError, match=r"kl/core = nan"):
        run(dict(base, run_dir=str(tmp_path / "nan")))
    assert last_state(tmp_path / "nan")["epoch"] == 1


# ------------------------------------------------------------------------------------------------ evaluation
def test_evaluation_records_standard_errors_of_the_per_point_estimates(tmp_path, fake_mnist):
    rd = tmp_path / "e"
    run(dict(FAST, epochs=1, batch_size=32, max_train_batches=2, eval_samples=3, eval_points=12, eval_batch_size=5,
             evaluate_after=True, run_dir=str(rd)))
    metrics = json.loads((rd / "metrics.json").read_text())
    ck = checkpoints.load_checkpoint(rd / "checkpoints" / "best.pt")
    torch.manual_seed(12345)  # eval_seed: the same importance samples, batch by batch
    per_point = {}
    for batch in synthetic_mnist().test.iter_batches(5, limit=12):
        for k, v in estimators.paper_rows(ck.model, batch, num_samples=3).items():
            per_point.setdefault(k, []).append(v.double())
    assert [r["row"] for r in metrics["rows"]] == list(per_point)
    for r in metrics["rows"]:
        v = torch.cat(per_point[r["row"]])
        assert r["n"] == 12 and math.isclose(r["value"], float(v.mean()), rel_tol=1e-9)
        assert math.isclose(r["se"], float(v.std()) / math.sqrt(12), rel_tol=1e-9)
        assert metrics["standard_errors"][r["row"]] == r["se"]
    assert metrics["train_epochs"] == 1 and metrics["train_wall_s"] > 0 and metrics["eval_wall_s"] > 0
    table = (rd / "results.md").read_text()
    assert "| paper JMVAE | paper MVAE | paper MHVAE | ours MHVAE (1 ep x 2 batches, K = 3, n = 12) |" in table
    assert "ours MHVAE − paper MHVAE" in table and " ± " in table


def test_probes_hook_runs_when_the_dataset_has_a_true_state(tmp_path, monkeypatch):
    from mhvae_perception import probes

    splits = synthetic_mnist()
    calls = []
    monkeypatch.setattr(probes, "transfer_probes",
                        lambda model, s, out_dir, seed=0, writer=None: calls.append((s, seed)) or {"score": 0.5})
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: splits)
    cfg = dict(FAST, epochs=1, batch_size=32, max_train_batches=1, eval_samples=2, eval_points=4, evaluate_after=True)
    run(dict(cfg, run_dir=str(tmp_path / "nostate")))
    assert calls == [] and "probes" not in json.loads((tmp_path / "nostate" / "metrics.json").read_text())
    splits.state = {"train": np.zeros((192, 2)), "valid": np.zeros((64, 2)), "test": np.zeros((32, 2))}
    run(dict(cfg, run_dir=str(tmp_path / "state")))
    assert calls == [(splits, 12345)]
    assert json.loads((tmp_path / "state" / "metrics.json").read_text())["probes"] == {"score": 0.5}


def test_evaluate_command_accepts_a_shipped_model_name(tmp_path, fake_mnist, monkeypatch):
    from mhvae_perception import pretrained

    rd = tmp_path / "r"
    run(dict(FAST, epochs=1, batch_size=32, max_train_batches=1, run_dir=str(rd)))
    entry = pretrained.export(rd / "checkpoints" / "last.pt", "tiny", weights_dir=tmp_path / "w")
    assert entry["trained_epochs"] == 1 and entry["run_epochs"] == 1  # the run's length, not null
    weights = tmp_path / "shipped.pt"
    checkpoints.save_checkpoint(weights, checkpoints.load_checkpoint(rd / "checkpoints" / "last.pt").model)
    monkeypatch.setattr(pretrained, "available", lambda: {"tiny-mnist": {"dataset": "mnist", "file": "x",
                                                                         "trained_epochs": 1}})
    monkeypatch.setattr(pretrained, "path", lambda name: weights)
    out = tmp_path / "eval"
    ev = run({"checkpoint": "tiny-mnist", "eval_samples": 2, "eval_points": 4, "eval_dir": str(out),
              "progress": False, "figures": False, "tensorboard": False, "device": "cpu"}, command="evaluate")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "mnist" and metrics["num_samples"] == 2 and set(ev.result) == set(metrics["values"])
    # the shipped file as it lies in the package, not this machine's absolute path
    assert metrics["checkpoint"] == str(Path("mhvae_perception", "weights", "shipped.pt"))
    assert metrics["train_epochs"] == 1 and "(1 ep, K = 2, n = 4)" in (out / "results.md").read_text()  # not "? ep"
    with pytest.raises(checkpoints.CheckpointError, match="did you mean 'tiny-mnist'"):
        run({"checkpoint": "tiny-mnst", "progress": False}, command="evaluate")
    with pytest.raises(checkpoints.CheckpointError, match="neither a checkpoint file nor a shipped model name"):
        run({"checkpoint": "no-such-model", "progress": False}, command="evaluate")


# ------------------------------------------------------------------------------------------------ figures
def test_figure_hints_choose_the_conditioning_grid(tmp_path):
    splits = synthetic_mnist()
    model = run_mod.model_from_settings(dict(model="mhvae", warmup_modality_epochs=1, warmup_core_epochs=1), splits)
    splits.figure_hints = {"condition_on": "one_hot_classes", "cross_modal": False}
    grids = figures.save_figures(model, splits, tmp_path, per_row=4)
    assert grids["samples_given_label"].shape[1] == 10 * 29 + 1  # one row per class (28 px + 1 px padding)
    splits.figure_hints = {"condition_on": "test_points"}
    grids = figures.save_figures(model, splits, tmp_path, per_row=4)
    assert grids["samples_given_label"].shape[1] == 8 * 29 + 1  # one row per test point (8 of them)
    splits.figure_hints = {"condition_on": "labels"}
    with pytest.raises(ValueError, match="condition_on.*'labels'.*one_hot_classes"):
        figures.save_figures(model, splits, tmp_path)
    del splits.figure_hints  # no hints in the description: the dataset's name decides
    assert figures.figure_hints(splits)["condition_on"] == "one_hot_classes"
    assert (tmp_path / "samples_given_label.png").stat().st_size > 500


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
         "device": "cpu", "run_dir": str(rd)})
    ck = checkpoints.load_checkpoint(rd / "checkpoints" / "best.pt")
    norm = ck.config["modalities"][1]["normalisation"]
    assert torch.allclose(torch.tensor(norm["mean"]), torch.tensor(splits.normalisation["sound"]["mean"]))
    metrics = json.loads((rd / "metrics.json").read_text())
    for split in ("valid", "test"):
        terms = metrics["elbo_terms"][split]["terms"]
        assert {"rec/image", "rec/sound", "kl/image", "kl/sound", "kl/core"} <= set(terms)
        assert all(math.isfinite(v) for v in terms.values())
    assert metrics["elbo_terms"]["test"]["points"] == 16
    results = (rd / "results.md").read_text()
    assert "kl/core" in results and "paper MHVAE" not in results  # not a dataset of the paper
    for name in ("cross_modal_image.png", "sound_from_image.png", "reconstructions_from_sound.png",
                 "learning_curves.png"):
        assert (rd / name).stat().st_size > 1000, name
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(rd / "tb")).Reload()
    assert "samples/samples_given_sound" in acc.Tags()["images"] and "valid/elbo" in acc.Tags()["scalars"]
    assert list((rd / "tb" / "hparams").glob("events.out.tfevents.*"))


# ------------------------------------------------------------------------------------------------ command line
def write_tiny_env_file(path: Path, n_train=48, n_test=8, state: bool = False) -> None:
    """A PendulumSound-shaped dataset file in the previous (image/sound only) layout, optionally with a true
    state (``train_state`` / ``test_state`` and their names in the metadata)."""
    rng = np.random.default_rng(0)
    parts = (("train", n_train), ("test", n_test))
    arrays = {f"{part}_image": (rng.random((n, 2, 60, 60)) < 0.1).astype(np.uint8) for part, n in parts}
    arrays.update({f"{part}_sound": (440 + 50 * rng.standard_normal((n, 2, 3, 2))).astype(np.float32)
                   for part, n in parts})
    metadata = {"env_id": "PendulumSound-v0"}
    if state:
        arrays.update({f"{part}_state": rng.standard_normal((n, 2)).astype(np.float32) for part, n in parts})
        metadata["state_names"] = ["cos", "sin"]
    np.savez_compressed(path, metadata=np.array(json.dumps(metadata)), **arrays)


def test_env_id_runs_any_environment_dataset_with_probes(tmp_path):
    env_file = tmp_path / "tiny.npz"
    write_tiny_env_file(env_file, n_train=64, n_test=16, state=True)
    assert config_of({"env_id": "PendulumSound-v0"})["run_dir"] == "runs/PendulumSound-v0-mhvae-seed0"
    assert config_of({"env_id": "envs:Hyperhot-v0", "tag": "a"})["run_dir"] == "runs/envs_Hyperhot-v0-mhvae-seed0-a"
    rd = tmp_path / "env"
    run(dict(FAST, env_id="PendulumSound-v0", data_path=str(env_file), epochs=1, batch_size=16, eval_samples=2,
             eval_points=4, evaluate_after=True, figures=True, run_dir=str(rd)))
    metrics = json.loads((rd / "metrics.json").read_text())
    assert metrics["dataset"] == "PendulumSound-v0" and "transfer" in metrics["probes"]
    assert (rd / "cross_modal_image.png").is_file() and (rd / "probes.json").is_file()
    assert last_state(rd)["run_config"]["env_id"] == "PendulumSound-v0"
    # shipped (weights only, no run config in the file): the manifest names the env, and evaluate uses it
    from mhvae_perception import pretrained

    entry = pretrained.export(rd / "checkpoints" / "last.pt", "tiny-env", weights_dir=tmp_path / "w")
    assert entry["env_id"] == "PendulumSound-v0" and entry["dataset"] is None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pretrained, "available", lambda: {"tiny-env": entry})
        mp.setattr(pretrained, "path", lambda name: tmp_path / "w" / entry["file"])
        run(dict(FAST, checkpoint="tiny-env", data_path=str(env_file), eval_samples=2, eval_points=4,
                 eval_dir=str(tmp_path / "ev")), command="evaluate")
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["dataset"] == "PendulumSound-v0"
    with pytest.raises(SettingsError, match="env_id='Nope-v0'.*not registered"):
        run(dict(FAST, env_id="Nope-v0", epochs=1, run_dir=str(tmp_path / "nope")))


def test_command_line_run_observer_and_clean_cout(tmp_path):
    """`python pretrain/run.py` from the repo root, as documented: sacred's default observer is added (here -F
    to a temporary folder), and cout.txt holds no progress-bar frames."""
    env_file = tmp_path / "tiny.npz"
    write_tiny_env_file(env_file)
    rd, obs = tmp_path / "cli", tmp_path / "sacred"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "pretrain/run.py", "with", "dataset=pendulum_sound", f"data_path={env_file}", "epochs=3",
           "batch_size=16", "eval_samples=2", "eval_points=4", "figures=False", "tensorboard=False", "num_threads=1",
           "device=cpu", f"run_dir={rd}", "-F", str(obs)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    cout = (obs / "1" / "cout.txt").read_text()
    assert "\r" not in cout and "log-likelihoods (K=2): 100%" in cout and "epoch 3/3: loss" in cout
    assert cout.count("batch/s") <= 4  # one frame of the training bar left per epoch (+ the last), not one per batch
    # piped output (not a terminal): no bar frames at all, epoch lines with their ETA, the evaluation as lines
    piped = done.stdout + done.stderr
    assert "\r" not in piped and "batch/s" not in piped
    assert all("ETA" in line for line in piped.splitlines() if line.startswith("epoch "))
    assert "log-likelihoods (K=2): 100% (4/4 points)" in piped
    assert json.loads((rd / "metrics.json").read_text())["num_samples"] == 2
    module = subprocess.run([sys.executable, "-m", "pretrain.run", "print_config", "with", "quick", "-u"], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert module.returncode == 0 and "max_train_batches = 150" in module.stdout, module.stderr[-3000:]


def test_ctrl_c_prints_one_line_with_what_was_saved_and_the_command_that_continues(tmp_path):
    import signal
    import time

    env_file = tmp_path / "tiny.npz"
    write_tiny_env_file(env_file)
    rd = tmp_path / "cli"
    args = ["with", "dataset=pendulum_sound", f"data_path={env_file}", "epochs=100000", "batch_size=16",
            "figures=False", "tensorboard=False", "num_threads=1", "device=cpu", "progress=False", f"run_dir={rd}", "-u"]
    # A shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored: the child gets
    # the default action back, as a command typed at a terminal has (else the test hangs when run in the background)
    proc = subprocess.Popen([sys.executable, "pretrain/run.py", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 600  # a loaded machine is slow: wait for the first checkpoint, not for a fixed time
    while not (rd / "checkpoints" / "last.pt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert (rd / "checkpoints" / "last.pt").is_file(), "no checkpoint within 10 min"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    line = next(x for x in err.splitlines() if x.startswith("interrupted:"))
    assert f"{rd / 'checkpoints' / 'last.pt'} holds epoch" in line
    assert line.endswith("python pretrain/run.py " + " ".join(args))


# ------------------------------------------------------------------------------------------------ real data
def _mnist_available() -> bool:
    return any((d / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").exists()
               for d in (data.shared_data_root(), data.data_root()))


@pytest.mark.skipif(not _mnist_available(),
                    reason="real-data smoke test needs the MNIST archives in ../shared/data/MNIST/raw (absent here)")
def test_real_mnist_smoke_and_evaluate_command(tmp_path):
    rd = tmp_path / "smoke"
    r = run({"dataset": "mnist", "epochs": 2, "max_train_batches": 25, "valid_points": 512, "eval_samples": 8,
             "eval_points": 32, "progress": False, "device": "cpu", "run_dir": str(rd)})
    history = json.loads((rd / "history.json").read_text())
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    metrics = json.loads((rd / "metrics.json").read_text())
    all_rows = getattr(estimators, "ALL_ROWS", estimators.PAPER_ROWS)
    assert [row["row"] for row in metrics["rows"]] == [k for k, _, _ in all_rows]
    assert all(math.isfinite(v) for v in metrics["values"].values())
    assert r.result == metrics["values"]
    for name in ("config.json", "history.json", "summary.json", "metrics.json", "results.md", "learning_curves.png",
                 "samples_given_label.png", "samples_prior.png", "reconstructions.png", "checkpoints/last.pt",
                 "checkpoints/best.pt"):
        assert (rd / name).is_file(), name
    assert list((rd / "tb").glob("events.out.tfevents.*"))
    table = (rd / "results.md").read_text()
    assert "| metric | input | paper JMVAE | paper MVAE | paper MHVAE | ours MHVAE" in table
    assert table.count("\n| log p(") == len(all_rows)
    assert "| log p(x1) | x1 | -90.19 | — | -89.05 |" in table  # the paper's Table 1, first row

    ev = run({"checkpoint": str(rd / "checkpoints" / "best.pt"), "eval_samples": 4, "eval_points": 16,
              "progress": False, "figures": False, "device": "cpu"}, command="evaluate")
    out = rd / "eval-best-K4-n16" / "metrics.json"
    assert out.is_file() and json.loads(out.read_text())["num_samples"] == 4
    assert set(ev.result) == set(metrics["values"])


def test_init_weights_fine_tunes_a_model_with_its_own_description(tmp_path):
    first, other = tmp_path / "a.npz", tmp_path / "b.npz"
    write_tiny_env_file(first, n_train=48, n_test=8)
    write_tiny_env_file(other, n_train=48, n_test=8)
    with np.load(other) as d:  # the new data has other sound statistics than the model was trained with
        arrays = {k: d[k] for k in d.files}
    arrays["train_sound"] = arrays["train_sound"] * 3 + 100
    np.savez_compressed(other, **arrays)
    common = dict(FAST, env_id="PendulumSound-v0", batch_size=16, max_train_batches=1)
    run(dict(common, data_path=str(first), epochs=1, run_dir=str(tmp_path / "src")))
    src = checkpoints.load_checkpoint(tmp_path / "src" / "checkpoints" / "last.pt")
    run(dict(common, data_path=str(other), epochs=1, lr=1e-30, warmup_core_epochs=3.0, run_dir=str(tmp_path / "ft"),
             init_weights=str(tmp_path / "src" / "checkpoints" / "last.pt")))
    tuned = checkpoints.load_checkpoint(tmp_path / "ft" / "checkpoints" / "last.pt")
    sound = lambda c: next(m for m in c["modalities"] if m["name"] == "sound")["normalisation"]  # noqa: E731
    assert sound(tuned.config) == sound(src.config)  # the weights' own normalisation, not the new data's
    assert tuned.config["warmup_core_epochs"] == 3.0 and src.config["warmup_core_epochs"] != 3.0
    for (name, p), q in zip(src.model.named_parameters(), tuned.model.parameters()):
        assert torch.allclose(p, q), name  # started from the source weights (lr ~ 0: still them)
    with pytest.raises(SettingsError, match="init_weights='nope.pt'.*no such checkpoint"):
        run(dict(common, data_path=str(other), epochs=1, run_dir=str(tmp_path / "x"), init_weights="nope.pt"))
    with pytest.raises(SettingsError, match="is a mhvae model.*model='jmvae'"):
        run(dict(common, data_path=str(other), epochs=1, run_dir=str(tmp_path / "y"), model="jmvae",
                 init_weights=str(tmp_path / "src" / "checkpoints" / "last.pt")))


def test_env_datasets_default_to_a_short_schedule_and_the_transfer_recipe(tmp_path, monkeypatch):
    """Environment datasets: 30 epochs, U_m 6 / U_c 12, K = 100 on 1,000 points and the transfer recipe's loss
    weights (the paper's datasets keep the paper's schedule and loss); a run records the recipe it used."""
    from pretrain.settings import ENV_SCHEDULE, default_schedule

    assert default_schedule("pendulum_sound") == default_schedule("mnist", env_id="Any-v0") == ENV_SCHEDULE
    assert default_schedule("mnist")["epochs"] == 500 and default_schedule("mnist")["loss_recipe"] == "paper"
    assert default_schedule("celeba")["eval_samples"] == 500 and default_schedule("celeba")["eval_points"] is None
    cfg = ex.run("print_config", config_updates={"dataset": "pendulum_sound"}, options={"--loglevel": "ERROR"}).config
    assert {k: cfg[k] for k in ENV_SCHEDULE} == ENV_SCHEDULE
    splits = synthetic_pendulum_sound()
    model = run_mod.model_from_settings(dict(model="mhvae", loss_recipe="transfer", warmup_modality_epochs=1,
                                             warmup_core_epochs=1), splits)
    assert model.config.modality("sound").recon_weight == 20.0 and model.config.modality("image").kl_weight == 10.0
    assert model.config.agreement_weight == 10.0
    # model_overrides still have the last word
    model = run_mod.model_from_settings(dict(model="mhvae", loss_recipe="transfer", warmup_modality_epochs=1,
                                             warmup_core_epochs=1, model_overrides={"agreement_weight": 0.0}), splits)
    assert model.config.agreement_weight == 0.0 and model.config.modality("sound").recon_weight == 20.0
    paper = run_mod.model_from_settings(dict(model="mhvae", loss_recipe="paper", warmup_modality_epochs=1,
                                             warmup_core_epochs=1), splits)
    assert paper.config.modality("sound").recon_weight == 1.0 and paper.config.agreement_weight == 0.0
    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: splits)
    rd = tmp_path / "recipe"
    run({"dataset": "pendulum_sound", "epochs": 1, "batch_size": 32, "max_train_batches": 2, "eval_samples": 2,
         "eval_points": 4, "evaluate_after": False, "figures": False, "progress": False, "device": "cpu",
         "run_dir": str(rd), "tensorboard": False})
    ck = checkpoints.load_checkpoint(rd / "checkpoints" / "last.pt")
    assert ck.config["agreement_weight"] == 10.0 and ck.config["modalities"][1]["recon_weight"] == 20.0
    with pytest.raises(SettingsError, match="loss_recipe"):
        run({"dataset": "pendulum_sound", "loss_recipe": "follow-up", "run_dir": str(tmp_path / "bad")})
    assert not (tmp_path / "bad").exists()
