"""Nothing a file says makes the tools import a module or write somewhere; a shipped name means the shipped file;
paths read from a manifest stay in its folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from mhvae_perception import pretrained, save_checkpoint
from mhvae_perception.hub import checkpoints, resolve_model, shipped_or_path
from pretrain import run as run_mod
from pretrain.settings import SettingsError, recorded_data_settings

from test_model import small_config
from mhvae_perception import build_model


def crafted_checkpoint(path: Path, run_config: dict) -> Path:
    model = build_model(small_config("mhvae"))
    save_checkpoint(path, model, training_state={"run_config": run_config, "epoch": 1})
    return path


def test_evaluate_never_imports_a_module_or_writes_a_path_a_checkpoint_names(tmp_path, monkeypatch):
    """A crafted checkpoint naming ``module:Env-v0`` and a data_path outside the project: evaluation imports
    nothing, writes nothing there, and says what to pass instead."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "evil_mod_xyz.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    target = tmp_path / "outside" / "collected.npz"
    ck = crafted_checkpoint(tmp_path / "evil.pt", {"env_id": "evil_mod_xyz:Evil-v0", "data_path": str(target),
                                                   "dataset": "mnist", "split_seed": 0})
    with pytest.raises(SettingsError, match=r"env_id='evil_mod_xyz:Evil-v0'.*pass env_id="):
        run_mod.ex.run("evaluate", config_updates={"checkpoint": str(ck), "progress": False, "device": "cpu",
                                                   "eval_dir": str(tmp_path / "ev")},
                       options={"--loglevel": "ERROR"})
    assert not marker.exists() and "evil_mod_xyz" not in sys.modules
    assert not target.exists() and not target.parent.exists()


def test_recorded_data_settings_take_names_and_seeds_never_modules_or_paths():
    used, refused = recorded_data_settings(
        {"dataset": "mnist", "split_seed": 3, "env_id": "x:Y-v0", "data_path": "/tmp/d.npz"}, given=set())
    assert used == {"dataset": "mnist", "split_seed": 3}
    assert set(refused) == {"env_id", "data_path"}
    used, refused = recorded_data_settings({"dataset": "../../etc", "env_id": "Hyperhot-v0"}, given=set())
    assert used == {"env_id": "Hyperhot-v0"} and set(refused) == {"dataset"}
    used, refused = recorded_data_settings({"env_id": "x:Y-v0"}, given={"env_id"})
    assert used == {} and refused == {}


def test_a_shipped_name_means_the_shipped_file_even_beside_a_local_file_of_that_name(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    weights.mkdir()
    model = build_model(small_config("mhvae"))
    src = save_checkpoint(tmp_path / "src.pt", model)
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pretrained, "MANIFEST", weights / "manifest.json")
    pretrained.export(src, "toy-mhvae", weights_dir=weights)
    monkeypatch.chdir(tmp_path)
    impostor = build_model(small_config("mhvae"))
    with torch.no_grad():
        for p in impostor.parameters():
            p.add_(1.0)
    save_checkpoint(tmp_path / "toy-mhvae", impostor)  # a local file named like the shipped model
    with pytest.warns(UserWarning, match=r"toy-mhvae.*shipped model.*\./toy-mhvae"):
        assert shipped_or_path("toy-mhvae") == weights / "toy-mhvae.pt"
    loaded, path = resolve_model("./toy-mhvae")  # a path that looks like a path is the local file
    assert path == Path("./toy-mhvae")
    assert torch.equal(next(loaded.parameters()), next(impostor.parameters()))


def test_a_manifest_entry_cannot_point_outside_the_weights_folder(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    weights.mkdir()
    outside = save_checkpoint(tmp_path / "x.pt", build_model(small_config("mhvae")))
    digest = pretrained.file_sha256(outside)
    for bad in ("../x.pt", str(outside), "sub/../../x.pt"):
        (weights / "manifest.json").write_text(json.dumps({"evil": {"file": bad, "sha256": digest}}))
        monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
        monkeypatch.setattr(pretrained, "MANIFEST", weights / "manifest.json")
        with pytest.raises(checkpoints.CheckpointError, match="outside"):
            pretrained.path("evil")
