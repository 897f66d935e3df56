"""Checkpoints: round trip, no code execution, clear errors, atomic saves."""
import errno
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mhvae_perception import (CheckpointError, ModelConfig, build_model, checkpoints, estimators, load_checkpoint,
                              presets, save_checkpoint)

from test_model import random_batch, small_config


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
def test_round_trip_gives_the_same_model(tmp_path, kind):
    torch.manual_seed(0)
    cfg = presets.config("pendulum_sound", kind, normalisation={"sound": {"mean": 0.5, "std": [[[2.0, 3.0]] * 3] * 2}})
    model = build_model(cfg).eval()
    opt = torch.optim.Adam(model.parameters())
    state = {"epoch": 3, "optimizer": opt.state_dict(), "rng": torch.get_rng_state(), "history": [1.0, 2.0]}
    path = save_checkpoint(tmp_path / "m.pt", model, state)
    ck = load_checkpoint(path)
    assert not ck.model.training and ck.version == checkpoints.__version__
    assert ck.training_state["epoch"] == 3 and ck.training_state["history"] == [1.0, 2.0]
    assert torch.equal(ck.training_state["rng"], state["rng"])
    assert ck.config["modalities"][1]["normalisation"]["mean"] == 0.5
    batch = {"image": torch.ones(2, 2, 60, 60), "sound": torch.randn(2, 2, 3, 2)}
    for a, b in zip(model.encode(batch), ck.model.encode(batch)):
        torch.testing.assert_close(a, b)


def test_loading_never_executes_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": checkpoints.FORMAT, "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="corrupt, truncated or not a checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_truncated_missing_and_foreign_files(tmp_path):
    model = build_model(small_config())
    path = save_checkpoint(tmp_path / "m.pt", model)
    data = path.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an mhvae-perception checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_mismatched_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(small_config()))
    other = build_model(small_config(n_modalities=3))
    with pytest.raises(CheckpointError, match="different model description"):
        checkpoints.restore_into(other, path)
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["core_encoder.1.weight"] = torch.zeros(1, 1)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = build_model(small_config())
    path = save_checkpoint(tmp_path / "last.pt", model, {"epoch": 1})
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("killed mid-save")

    monkeypatch.setattr(torch, "save", crash)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path).training_state == {"epoch": 1}


def test_restore_into_resumes_an_identical_model(tmp_path):
    torch.manual_seed(0)
    model = build_model(small_config())
    model.loss(random_batch(model.config), 1.0).loss.backward()
    path = save_checkpoint(tmp_path / "m.pt", model, {"epoch": 7})
    torch.manual_seed(1)
    fresh = build_model(small_config())
    assert checkpoints.restore_into(fresh, path) == {"epoch": 7}
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------ checkpoints written today (format 1)
FORMAT1 = Path(__file__).resolve().parent / "data" / "format1"


@pytest.mark.parametrize("kind", ["mhvae", "jmvae"])
def test_the_running_mnist_runs_descriptions_still_build_the_same_layout(kind):
    """Model descriptions and state-dict layouts written by the code of the 500-epoch MNIST runs (19279de)."""
    stored = json.loads((FORMAT1 / f"mnist_{kind}_description.json").read_text())
    model = build_model(json.loads(stored["config_json"]))
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == stored["state_dict_shapes"]
    # the stored description equals today's once fields added since get their defaults
    assert checkpoints._normalised(json.loads(stored["config_json"])) == checkpoints._normalised(model.config.to_dict())


def test_a_format1_checkpoint_loads_resumes_and_evaluates(tmp_path):
    """A checkpoint saved by the code of 19279de, with pretrain/run.py's training-state layout."""
    ck = load_checkpoint(FORMAT1 / "small_mhvae.pt")
    state = ck.training_state
    assert state["epoch"] == 3 and state["history"][0]["epoch"] == 1
    batch = state["fixture_batch"]
    torch.testing.assert_close(ck.model.encode({"label": batch["label"]})[0], state["fixture_encode_label_mu"])
    for name, value in ck.model.decode(torch.zeros(2, 4)).items():
        torch.testing.assert_close(value, state["fixture_decode_zero"][name])
    # resume: a model built from today's reading of the description accepts the weights and the optimizer
    fresh = build_model(ModelConfig.from_dict(ck.config))
    assert checkpoints.restore_into(fresh, FORMAT1 / "small_mhvae.pt")["epoch"] == 3
    opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    opt.load_state_dict(state["optimizer"])
    fresh.train()
    fresh.loss(batch, epoch=3.0).loss.backward()
    opt.step()
    # evaluate
    rows = estimators.paper_rows(ck.model, batch, num_samples=10)
    assert all(torch.isfinite(v).all() for v in rows.values())
    # and it saves again in today's format, loading back to the same model
    again = load_checkpoint(save_checkpoint(tmp_path / "again.pt", ck.model, state))
    torch.testing.assert_close(again.model.encode({"label": batch["label"]})[0], state["fixture_encode_label_mu"])


# ------------------------------------------------------------------ refusing bad files
def _tamper(path, tmp_path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    return bad


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    model = build_model(small_config())
    path = save_checkpoint(tmp_path / "m.pt", model)
    bad = _tamper(path, tmp_path, lambda p: p["state_dict"]["decoders.label.1.weight"].view(-1).__setitem__(3, value))
    with pytest.raises(CheckpointError, match=r"non-finite weights.*decoders\.label\.1\.weight"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match=r"non-finite weights.*decoders\.label\.1\.weight"):
        checkpoints.restore_into(build_model(small_config()), bad)


def test_a_corrupt_model_description_is_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", build_model(small_config()))
    bad = _tamper(path, tmp_path, lambda p: p.__setitem__("config_json", p["config_json"][:-7]))
    with pytest.raises(CheckpointError, match="corrupt model description"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="corrupt model description"):
        checkpoints.restore_into(build_model(small_config()), bad)
    missing = _tamper(path, tmp_path, lambda p: p.pop("config_json"))
    with pytest.raises(CheckpointError, match="corrupt model description"):
        load_checkpoint(missing)


# ------------------------------------------------------------------ saving: leftovers and full disks
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_of_killed_saves_are_cleaned_up_safely(tmp_path):
    target = tmp_path / "last.pt"
    save_checkpoint(target, build_model(small_config()))
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = checkpoints._host()
        files = {
            "dead": f".last.pt.pid{_dead_pid()}-{host}.a1b2c3.tmp",
            "live": f".last.pt.pid{live.pid}-{host}.d4e5f6.tmp",
            "mine": f".last.pt.pid{os.getpid()}-{host}.g7h8i9.tmp",
            "other_host_new": f".last.pt.pid{_dead_pid()}-elsewhere.j1k2l3.tmp",  # its pid cannot be checked here
            "other_host_old": f".last.pt.pid{live.pid}-elsewhere.m4n5o6.tmp",
            "legacy_old": ".last.pt.k9_x2abc.tmp",
            "legacy_new": ".last.pt.q1w2e3r4.tmp",
            "other_target": f".best.pt.pid{_dead_pid()}-{host}.z0z0z0.tmp",
        }
        for name in files.values():
            (tmp_path / name).write_bytes(b"half a checkpoint")
        two_hours_ago = time.time() - 7200
        for key in ("legacy_old", "other_host_old"):
            os.utime(tmp_path / files[key], (two_hours_ago, two_hours_ago))
        save_checkpoint(target, build_model(small_config()))
        left = {p.name for p in tmp_path.iterdir()}
    finally:
        live.kill()
        live.wait()
    removed = {"dead", "other_host_old", "legacy_old"}
    assert not {files[k] for k in removed} & left
    assert {files[k] for k in set(files) - removed} <= left
    assert left == {"last.pt", *(files[k] for k in set(files) - removed)}  # and no new temporary file


def test_temporary_files_are_named_with_the_writer_pid(tmp_path, monkeypatch):
    seen = []

    def spy(obj, f, *args, **kwargs):
        seen.extend(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp"))
        f.write(b"x")

    monkeypatch.setattr(torch, "save", spy)
    save_checkpoint(tmp_path / "m.pt", build_model(small_config()))
    assert len(seen) == 1 and seen[0].startswith(f".m.pt.pid{os.getpid()}-{checkpoints._host()}.")
    assert seen[0].endswith(".tmp")


def test_a_full_disk_gives_a_clear_error_and_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    model = build_model(small_config())
    path = save_checkpoint(tmp_path / "last.pt", model, {"epoch": 1})
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"part of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"disk full.*previous checkpoint .*last\.pt is intact.*temporary file "
                                              r"was removed"):
        save_checkpoint(path, model, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    with pytest.raises(CheckpointError, match="no checkpoint existed"):
        save_checkpoint(tmp_path / "new.pt", model)
    assert not (tmp_path / "new.pt").exists()
    monkeypatch.undo()
    assert load_checkpoint(path).training_state == {"epoch": 1}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_real_enospc_from_the_file_system_is_reported_as_a_full_disk(tmp_path, monkeypatch):
    """/dev/full fails every write with ENOSPC, wherever torch or the file buffer reports it."""
    real_fdopen = os.fdopen

    def full_disk_fdopen(fd, mode="r", *args, **kwargs):
        os.close(fd)
        return open("/dev/full", mode)

    monkeypatch.setattr(checkpoints.os, "fdopen", full_disk_fdopen)
    try:
        with pytest.raises(CheckpointError, match="disk full"):
            save_checkpoint(tmp_path / "m.pt", build_model(small_config()))
    finally:
        monkeypatch.setattr(checkpoints.os, "fdopen", real_fdopen)
    assert list(tmp_path.iterdir()) == []
