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


SMALL_DISK_CHILD = r'''
import sys
from pathlib import Path
import torch
from mhvae_perception import CheckpointError, load_checkpoint, presets, save_checkpoint
sys.path.insert(0, sys.argv[2])
from test_model import small_config
from mhvae_perception import build_model

folder = Path(sys.argv[1])
small = build_model(small_config("mhvae"))
path = save_checkpoint(folder / "ck.pt", small, training_state={"epoch": 1})
before = path.read_bytes()
big = presets.build("mnist")  # ~8 MB of weights: does not fit the 1 MiB filesystem
try:
    save_checkpoint(path, big, training_state={"epoch": 2})
except CheckpointError as err:
    assert "disk full" in str(err) and "intact" in str(err), err
else:
    raise SystemExit("no CheckpointError on a full disk")
assert path.read_bytes() == before, "the previous checkpoint changed"
assert load_checkpoint(path).training_state["epoch"] == 1
assert sorted(p.name for p in folder.iterdir()) == ["ck.pt"], list(folder.iterdir())
print("OK")
'''


def test_a_full_disk_during_a_save_is_a_checkpoint_error_on_a_real_small_filesystem(tmp_path):
    """A 1 MiB tmpfs mounted in a private mount namespace (``unshare``; no root needed where user namespaces
    are allowed): the save fails with CheckpointError, the previous checkpoint and the folder are untouched."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to mount a small filesystem")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    child = tmp_path / "child.py"
    child.write_text(SMALL_DISK_CHILD)
    tests_dir = Path(__file__).resolve().parent
    script = (f"mount -t tmpfs -o size=1m tmpfs {mount_point} || exit 77; "
              f"{sys.executable} {child} {mount_point} {tests_dir}")
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    if done.returncode == 77 or "unshare:" in done.stderr[:200]:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0 and done.stdout.strip().endswith("OK"), done.stderr[-2000:]


def test_ctrl_c_during_a_save_is_a_keyboard_interrupt_and_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    """torch's zip writer turns a Ctrl-C in the middle of a write into RuntimeError('unexpected pos'): the save
    gives back the KeyboardInterrupt, removes its temporary file and leaves the previous checkpoint whole."""
    model = build_model(small_config("mhvae"))
    path = save_checkpoint(tmp_path / "ck.pt", model, training_state={"epoch": 1})
    before = path.read_bytes()

    def interrupted_save(obj, handle):
        handle.write(b"partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 16839552 vs 16839444")

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, training_state={"epoch": 2})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["ck.pt"]
