"""Shipped models: export, SHA-256 check, loading by name; and every model in the manifest verifies."""
import json

import numpy as np
import pytest
import torch

from mhvae_perception import CheckpointError, pretrained, save_checkpoint
from mhvae_perception.models import MHVAE
from mhvae_perception.models.specs import CoreSpec, ModalitySpec, ModelConfig


def _model():
    mlp = {"hidden": [8], "activation": "leaky_relu", "batchnorm": True}
    torch.manual_seed(0)
    return MHVAE(ModelConfig("mhvae", (ModalitySpec("a", (4,), "gaussian", 2, "mlp", mlp),
                                       ModalitySpec("b", (10,), "categorical", 2, "mlp", mlp)), CoreSpec(3, (8,))))


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(pretrained, "MANIFEST", tmp_path / "manifest.json")
    model = _model()
    src = save_checkpoint(tmp_path / "run" / "best.pt", model,
                          training_state={"epoch": 7, "optimizer": {"big": torch.zeros(1000)},
                                          "run_config": {"dataset": "toy"}})
    entry = pretrained.export(src, "toy-mhvae", note="7 epochs", weights_dir=tmp_path)
    return model, entry


def test_export_keeps_weights_and_drops_training_state(shipped):
    model, entry = shipped
    assert entry["dataset"] == "toy" and entry["kind"] == "mhvae" and entry["trained_epochs"] == 7
    loaded = pretrained.load("toy-mhvae")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    assert not loaded.training
    assert torch.load(pretrained.path("toy-mhvae"), weights_only=True)["training_state"] is None


def test_half_export_halves_the_file_and_loads_into_float32(shipped, tmp_path):
    src = save_checkpoint(tmp_path / "run" / "big.pt", _big := _model_of_width(256))
    full = pretrained.export(src, "toy-full", weights_dir=tmp_path)
    half = pretrained.export(src, "toy-half", weights_dir=tmp_path, half=True)
    assert full["weights_dtype"] == "float32" and half["weights_dtype"] == "float16"
    assert half["bytes"] < 0.6 * full["bytes"]
    stored = torch.load(pretrained.path("toy-half"), weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    loaded = pretrained.load("toy-half")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    for k, v in _big.state_dict().items():
        if v.is_floating_point():  # float16 keeps 11 significant bits: relative error <= 2^-11
            assert torch.allclose(loaded.state_dict()[k], v, rtol=2 ** -11, atol=1e-7), k
        else:
            assert torch.equal(loaded.state_dict()[k], v)


def test_half_export_refuses_weights_float16_cannot_hold(tmp_path):
    model = _model()
    with torch.no_grad():
        next(model.parameters())[0] = 1e5  # > 65504, the largest float16
    with pytest.raises(CheckpointError, match="float16.*float32"):
        save_checkpoint(tmp_path / "w.pt", model, weights_dtype=torch.float16)
    assert not list(tmp_path.iterdir())  # nothing written


def _model_of_width(width: int):
    mlp = {"hidden": [width], "activation": "leaky_relu", "batchnorm": True}
    torch.manual_seed(1)
    return MHVAE(ModelConfig("mhvae", (ModalitySpec("a", (64,), "gaussian", 4, "mlp", mlp),
                                       ModalitySpec("b", (10,), "categorical", 2, "mlp", mlp)),
                             CoreSpec(3, (width,))))


def test_a_tampered_file_is_refused(shipped):
    file = pretrained.path("toy-mhvae")
    data = bytearray(file.read_bytes())
    data[-10] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        pretrained.load("toy-mhvae")


def test_unknown_and_missing_names(shipped):
    with pytest.raises(KeyError, match="toy-mhvae"):
        pretrained.path("nope")
    pretrained.path("toy-mhvae").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        pretrained.load("toy-mhvae")


@pytest.mark.parametrize("name", sorted(pretrained.available()))
def test_every_shipped_model_verifies_and_loads(name):
    if pretrained.available()[name]["kind"] == "classifier":
        from mhvae_perception.hub.classifiers import load_classifier

        model, info = load_classifier(name)
        assert info["test_accuracy"] == pretrained.available()[name]["test_accuracy"]
    else:
        model = pretrained.load(name)
        assert model.config.kind == pretrained.available()[name]["kind"]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_wrappers_resolve_a_shipped_name_even_beside_a_file_of_that_name(shipped, tmp_path, monkeypatch):
    from pathlib import Path

    from mhvae_perception.hub import resolve_model, shipped_or_path

    model, _ = shipped
    loaded, path = resolve_model("toy-mhvae")
    assert path == pretrained.path("toy-mhvae") and not loaded.training
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    monkeypatch.chdir(tmp_path)
    Path("toy-mhvae").write_bytes(b"")  # a file of that name in the working directory: the shipped name wins
    with pytest.warns(UserWarning, match="give it as a path: ./toy-mhvae"):
        assert shipped_or_path("toy-mhvae") == pretrained.path("toy-mhvae")
    assert shipped_or_path("./toy-mhvae") == Path("toy-mhvae")
    assert shipped_or_path("not-a-model") == Path("not-a-model")


@pytest.mark.parametrize("name", sorted(n for n, e in pretrained.available().items() if e.get("env_id")))
def test_every_shipped_environment_model_wraps_its_environment_by_name(name):
    """The user's path without pretraining: gym.make(env) + MHVAEObservation(env, <shipped name>) from each
    sensor alone, observations inside the declared space."""
    import gymnasium as gym

    import envs  # noqa: F401  (registers the project's environments)
    from mhvae_perception.wrappers import MHVAEObservation

    entry = pretrained.available()[name]
    model = pretrained.load(name)
    for sensor in model.modality_names:
        env = MHVAEObservation(gym.make(entry["env_id"]), name, modalities=(sensor,))
        obs, _ = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(obs).all()
        env.close()


def test_list_is_a_table_and_a_mistyped_name_gets_did_you_mean(tmp_path, monkeypatch):
    entries = {"toy-mhvae": {"kind": "mhvae", "dataset": "mnist", "env_id": None, "trained_epochs": 49,
                             "run_epochs": 50, "bytes": 3 * 2 ** 20, "note": "MNIST, REDUCED; more"},
               "other": {"kind": "jmvae", "dataset": None, "env_id": "Env-v0", "trained_epochs": 3, "bytes": 2 ** 20,
                         "note": "x"}}
    lines = pretrained.list_table(entries)
    assert lines[0].split() == ["name", "kind", "env", "/", "dataset", "epochs", "MiB", "note"]
    assert lines[1].split()[:4] == ["other", "jmvae", "Env-v0", "3"]
    assert "49 of 50" in lines[2] and "3.0" in lines[2] and lines[2].endswith("MNIST, REDUCED")
    monkeypatch.setattr(pretrained, "available", lambda: entries)
    with pytest.raises(KeyError, match=r"did you mean 'toy-mhvae'\?"):
        pretrained.path("toy-mhave")
    from mhvae_perception.hub import resolve_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"did you mean 'toy-mhvae'\?.*shipped models: other, toy-mhvae"):
        resolve_model("toy_mhvae")


def test_a_retired_model_name_says_what_replaced_it_and_how_to_get_the_old_file(tmp_path, monkeypatch):
    from mhvae_perception import pretrained

    retired = tmp_path / "retired.json"
    retired.write_text(json.dumps({"old-model": {"file": "old-model.pt", "replaced_by": "new-model",
                                                 "date": "2026-12-03", "last_commit": "abc123", "why": "smaller"}}))
    monkeypatch.setattr(pretrained, "RETIRED", retired)
    with pytest.raises(KeyError, match=r"'old-model' was retired on 2026-12-03 and replaced by 'new-model' "
                                       r"\(smaller\).*git show abc123:mhvae_perception/weights/old-model.pt"):
        pretrained.load("old-model")


def test_every_retired_model_is_gone_and_its_replacement_is_shipped():
    from mhvae_perception import pretrained

    retired = json.loads(pretrained.RETIRED.read_text())
    shipped = pretrained.available()
    for name, r in retired.items():
        assert name not in shipped and not (pretrained.WEIGHTS_DIR / r["file"]).exists()
        assert r["replaced_by"] in shipped


def test_the_list_command_prints_the_table_without_a_warning():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "mhvae_perception.hub", "list"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.split("\n")[0].split()[:2] == ["name", "kind"]
    assert "mnist-mhvae-e50" in done.stdout and "Warning" not in done.stderr, done.stderr
