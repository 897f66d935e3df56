"""Agent folders are safe to re-run, share and fill a disk with: paths read from an agent's JSON stay inside its
folder, one training per folder (an OS lock), changed settings are refused, a finished agent is not retrained,
resume refuses tampered or foreign state, saves survive a full disk, and every setting is checked before work."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from agents.common import AgentFileError, load_agent, read_agent_meta, read_resume_state, train_agent
from agents.files import AgentFolderBusy
from agents.settings import SettingsError
from mhvae_perception import presets, save_checkpoint
from mhvae_perception.hashing import file_sha256

TINY_HP = {"learning_starts": 50, "batch_size": 16, "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("mhvae") / "mhvae.pt"
    return save_checkpoint(path, presets.build("pendulum_sound", "mhvae").eval())


def tiny(checkpoint, out_dir, timesteps: int = 100, **overrides) -> dict:
    """train_agent's arguments for a tiny SAC agent (a second or two on one CPU core)."""
    kwargs = dict(env="pendulum_sound", modalities="image", mhvae=str(checkpoint), seed=0, timesteps=timesteps,
                  out_dir=out_dir, hp=TINY_HP, eval_freq=10_000, n_eval_episodes=1, progress=False,
                  tensorboard=False, device="cpu", save_freq=100, keep_resume=True, log=lambda s: None)
    kwargs.update(overrides)
    return kwargs


@pytest.fixture(scope="module")
def agent(checkpoint, tmp_path_factory):
    """A finished tiny agent (100 steps) whose training state was kept (resume/)."""
    out = tmp_path_factory.mktemp("agent") / "sac"
    train_agent(**tiny(checkpoint, out))
    return out


def copy_agent(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".lock"))
    return dst


# ---------------------------------------------------------------------- 2. paths read from a file stay inside
def test_policy_file_outside_the_agent_folder_is_refused(agent, tmp_path):
    d = copy_agent(agent, tmp_path / "agent")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(agent / "policy.pt", elsewhere / "policy.pt")  # a valid policy with the recorded SHA-256
    meta = json.loads((d / "agent.json").read_text())
    for name in (str(elsewhere / "policy.pt"), "../elsewhere/policy.pt"):
        (d / "agent.json").write_text(json.dumps({**meta, "policy_file": name}))
        with pytest.raises(AgentFileError, match=r"outside the agent folder"):
            load_agent(d, device="cpu")
    (d / "agent.json").write_text(json.dumps(meta))
    (d / "policy.pt").unlink()
    (d / "policy.pt").symlink_to(elsewhere / "policy.pt")  # a link out of the folder
    with pytest.raises(AgentFileError, match=r"outside the agent folder"):
        load_agent(d, device="cpu")
    (d / "policy.pt").unlink()
    shutil.copy(agent / "policy.pt", d / "policy.pt")
    load_agent(d, device="cpu")  # the intact folder loads


def test_file_names_in_resume_json_must_stay_inside_the_resume_folder(agent, tmp_path):
    d = copy_agent(agent, tmp_path / "agent")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not the agent's")
    state = json.loads((d / "resume" / "resume.json").read_text())
    meta = read_agent_meta(d)
    assert read_resume_state(d, meta, 100, lambda s: None) is not None  # the intact state is usable
    for name in ("../../secret.bin", str(secret)):
        edited = {**state, "sha256": {**state["sha256"], name: file_sha256(secret)}}
        (d / "resume" / "resume.json").write_text(json.dumps(edited))
        with pytest.raises(AgentFileError, match=r"outside the agent folder|only"):
            read_resume_state(d, meta, 100, lambda s: None)


# ---------------------------------------------------------------------------------------- 6. a full disk
def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def test_full_disk_during_a_resume_save_keeps_the_previous_files(checkpoint, tmp_path, monkeypatch):
    """torch's writer fails with a bare RuntimeError ("unexpected pos") when the disk fills mid-save."""
    from agents.files import AgentDiskFullError

    out = tmp_path / "a"
    train_agent(**tiny(checkpoint, out, timesteps=100))
    before = _folder_bytes(out)
    real_save = torch.save

    def disk_fills(obj, f, *args, **kwargs):
        real_save({"part": torch.zeros(3)}, f)  # part of the file reaches the disk, then the write fails
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4544 vs 4432")

    monkeypatch.setattr(torch, "save", disk_fills)
    with pytest.raises(AgentDiskFullError, match=r"disk is full.*previous saved files .* are intact"):
        train_agent(**tiny(checkpoint, out, timesteps=200))  # continues; its resume save at step 200 fails
    assert _folder_bytes(out) == before  # no file replaced, no temporary file left
    monkeypatch.undo()
    assert train_agent(**tiny(checkpoint, out, timesteps=200))["resumed_from_step"] == 100  # the old state is usable


def test_a_failed_write_replaces_none_of_a_save_s_files(checkpoint, tmp_path, monkeypatch):
    """A save is several files (policy.pt + agent.json; params.pt + replay.npz + resume.json): when a later file
    fails (ENOSPC), the earlier ones of the same save are not replaced either, so the set stays consistent."""
    import errno

    import numpy as np

    from agents.common import save_agent
    from agents.files import AgentDiskFullError

    out = tmp_path / "a"
    train_agent(**tiny(checkpoint, out, timesteps=100))
    before = _folder_bytes(out)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", no_space)  # replay.npz is written after params.pt
    with pytest.raises(AgentDiskFullError, match=r"disk is full.*replay\.npz.*intact"):
        train_agent(**tiny(checkpoint, out, timesteps=200))
    assert _folder_bytes(out) == before
    monkeypatch.undo()
    agent, meta = load_agent(out, device="cpu")
    for param in agent.policy.parameters():
        param.data.add_(1.0)
    import os

    real_fsync, calls = os.fsync, []

    def second_flush_fails(fd):  # a full disk often shows only when the data is flushed
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", second_flush_fails)
    with pytest.raises(AgentDiskFullError, match=r"disk is full.*agent\.json.*intact"):
        save_agent(agent, out, meta)  # policy.pt is written, agent.json is not: policy.pt must stay the old one
    monkeypatch.undo()
    assert _folder_bytes(out) == before
    load_agent(out, device="cpu")


# ------------------------------------------------------- 1. one training per folder, no silent retraining
LOCK_HOLDER = """import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, str(os.getpid()).encode())
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_training_in_an_agent_folder_is_refused(checkpoint, tmp_path):
    out = tmp_path / "a"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(out / ".lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"  # another training holds the folder
        with pytest.raises(AgentFolderBusy, match=rf"{re.escape(str(out))} is in use.*pid {holder.pid}.*"
                                                  rf"{re.escape(str(out / '.lock'))}.*another folder"):
            train_agent(**tiny(checkpoint, out))
        assert [p.name for p in out.iterdir()] == [".lock"]  # nothing written beside it
    finally:
        holder.kill()
        holder.wait()
    train_agent(**tiny(checkpoint, out))  # the kernel released the lock with its holder
    assert (out / "agent.json").is_file()


def test_a_finished_agent_is_not_retrained_and_more_timesteps_continue_it(checkpoint, tmp_path):
    out = tmp_path / "a"
    first = train_agent(**tiny(checkpoint, out, timesteps=100))
    (out / "eval-sound").mkdir()
    (out / "eval-sound" / "returns.json").write_text("{}")  # an evaluation of this agent
    before = _folder_bytes(out)
    logs: list[str] = []
    again = train_agent(**tiny(checkpoint, out, timesteps=100, log=logs.append))
    assert again == json.loads(json.dumps(first)) and _folder_bytes(out) == before  # nothing trained or rewritten
    assert any("nothing to do" in m for m in logs)
    more = train_agent(**tiny(checkpoint, out, timesteps=200, log=logs.append))
    assert more["resumed_from_step"] == 100 and read_agent_meta(out)["timesteps"] == 200
    assert any("resuming" in m for m in logs)
    assert not (out / "eval-sound").exists()  # the old agent's evaluation is not left as the new agent's
    assert (out / "superseded" / "step100" / "eval-sound" / "returns.json").read_text() == "{}"
    with pytest.raises(SettingsError, match=r"trained for 200 steps and timesteps=150 asks for fewer"):
        train_agent(**tiny(checkpoint, out, timesteps=150))


def test_a_finished_agent_without_its_training_state_is_not_continued(checkpoint, tmp_path):
    out = tmp_path / "a"
    train_agent(**tiny(checkpoint, out, timesteps=100, keep_resume=False))
    before = _folder_bytes(out)
    with pytest.raises(SettingsError, match=r"no complete training state.*keep_resume=False.*another folder"):
        train_agent(**tiny(checkpoint, out, timesteps=200))
    assert _folder_bytes(out) == before


def test_changed_settings_in_an_agent_folder_are_refused(checkpoint, tmp_path):
    out = tmp_path / "a"
    train_agent(**tiny(checkpoint, out))
    before = _folder_bytes(out)
    with pytest.raises(SettingsError, match=rf"{re.escape(str(out))} holds an agent trained with other settings "
                                            rf"\(seed: 0 -> 1\).*another folder \(run_dir="):
        train_agent(**tiny(checkpoint, out, seed=1))
    with pytest.raises(SettingsError, match=r"\(hyperparameters\.gamma: 0\.99 -> 0\.9\)"):
        train_agent(**tiny(checkpoint, out, hp={**TINY_HP, "gamma": 0.9}))
    with pytest.raises(SettingsError, match=r"latent_stack: 2 -> 1, train_modalities|train_modalities.*latent_stack"):
        train_agent(**tiny(checkpoint, out, latent_stack=1, modalities="sound"))
    assert _folder_bytes(out) == before
    (out / "agent.json").unlink()  # as if interrupted before the agent was saved: its training state remains
    with pytest.raises(SettingsError, match=r"seed: 0 -> 1"):
        train_agent(**tiny(checkpoint, out, seed=1))


def test_a_finished_agent_whose_policy_changed_is_not_reported_done(checkpoint, tmp_path):
    out = tmp_path / "a"
    train_agent(**tiny(checkpoint, out))
    state = torch.load(out / "policy.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key] + 1.0
    torch.save(state, out / "policy.pt")
    with pytest.raises(AgentFileError, match="weights were changed"):
        train_agent(**tiny(checkpoint, out))


# ------------------------------------------ 5. resume checks its files' hashes and the MHVAE it was trained on
def interrupt(checkpoint, out: Path, **overrides) -> None:
    """Train towards 300 steps, killed during step 200 (its training state was saved at step 100)."""
    def killed(name, value, step):
        if name == "eval/mean_reward" and step == 200:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        train_agent(**tiny(checkpoint, out, timesteps=300, eval_freq=100, log_scalar=killed, **overrides))
    assert json.loads((out / "resume" / "resume.json").read_text())["num_timesteps"] == 100
    assert not (out / "agent.json").exists()


@pytest.mark.parametrize("name", ["params.pt", "replay.npz"])
def test_resume_does_not_use_a_training_state_whose_files_changed(checkpoint, tmp_path, name):
    import numpy as np

    out = tmp_path / "a"
    interrupt(checkpoint, out)
    path = out / "resume" / name
    if name == "params.pt":  # valid tensors, other values: only the recorded SHA-256 tells
        params = torch.load(path, weights_only=True)
        params["sb3"]["policy"] = {k: v + 1.0 if v.is_floating_point() else v
                                   for k, v in params["sb3"]["policy"].items()}
        torch.save(params, path)
    else:
        with np.load(path) as arrays:
            replay = {k: arrays[k] for k in arrays.files}
        replay["rewards"] = replay["rewards"] + 100.0
        np.savez(path, **replay)
    logs: list[str] = []
    meta = train_agent(**tiny(checkpoint, out, timesteps=300, log=logs.append))
    assert meta["resumed_from_step"] == 0 and any(f"{name} is missing or incomplete" in m for m in logs)


def test_resume_refuses_an_mhvae_replaced_under_the_same_path(checkpoint, tmp_path):
    ck = tmp_path / "mhvae.pt"
    shutil.copy(checkpoint, ck)
    out = tmp_path / "a"
    interrupt(ck, out)
    torch.manual_seed(1)
    save_checkpoint(ck, presets.build("pendulum_sound", "mhvae").eval())  # same architecture, other weights
    with pytest.raises(SettingsError, match=r"mhvae \(checkpoint SHA-256\)"):
        train_agent(**tiny(ck, out, timesteps=300))
    finished = tmp_path / "b"
    train_agent(**tiny(ck, finished))
    shutil.copy(checkpoint, ck)  # the file is replaced once more
    with pytest.raises(SettingsError, match=r"mhvae \(checkpoint SHA-256\)"):
        train_agent(**tiny(ck, finished))
