"""Checkpoints: round trip, no code execution, clear errors, atomic saves."""
import os
import pickle

import pytest
import torch

from mhvae_perception import CheckpointError, build_model, checkpoints, load_checkpoint, presets, save_checkpoint

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
