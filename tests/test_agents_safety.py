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


# ------------------------------------------------------------- 4. every setting is checked before any work
BAD_TRAINING = [
    ({"latent_stack": -2}, r"latent_stack=-2 .*None or an integer >= 1"),
    ({"hp": {**TINY_HP, "batch_size": 0}}, r"hp\.batch_size=0 .*an integer >= 1"),
    ({"hp": {**TINY_HP, "gamma": 5}}, r"hp\.gamma=5 .*in \[0, 1\]"),
    ({"hp": {**TINY_HP, "learning_rate": 0}}, r"hp\.learning_rate=0 .*\(0, inf\)"),
    ({"hp": {**TINY_HP, "learnin_rate": 1e-3}}, r"hp\.learnin_rate=0\.001 .*hyper-parameters the agents support"),
    ({"hp": {**TINY_HP, "policy_kwargs": {"net_arch": [0]}}}, r"hp\.policy_kwargs\.net_arch=\[0\]"),
    ({"eval_freq": -1}, r"eval_freq=-1 .*an integer >= 1"),
    ({"timesteps": 1.5}, r"timesteps=1\.5 .*an integer >= 1"),
    ({"timesteps": 1e5}, r"timesteps=100000\.0 .*write 100000, not 1e5"),
    ({"n_eval_episodes": 0}, r"n_eval_episodes=0 "),
    ({"seed": -1}, r"seed=-1 .*an integer in \[0, 2147483647\]"),
    ({"seed": 0.5}, r"seed=0\.5 "),
    ({"seed": "0"}, r"seed='0' "),
    ({"seed": 2 ** 40}, r"seed=1099511627776 "),
    ({"save_freq": 0}, r"save_freq=0 .*None or an integer >= 1"),
    ({"modalities": "both", "train_failure_p": 1.5}, r"train_failure_p=1\.5 .*probability in \[0, 1\]"),
    ({"train_failure_p": 0.5}, r"train_failure_p=0\.5 needs at least two training modalities"),
    ({"modalities": "smell"}, r"train_modalities='smell' "),
    ({"modalities": "image,image"}, r"train_modalities='image,image' .*each once"),
    ({"device": "tpu"}, r"device='tpu': unknown device"),
    ({"mhvae": "no/such/model.pt"}, r"mhvae='no/such/model.pt': no such checkpoint file or shipped model"),
    ({"env": "nope"}, r"env='nope' .*one of \('pendulum_sound'"),
    ({"keep_resume": "yes"}, r"keep_resume='yes' .*True or False"),
    ({"state": True, "modalities": None}, r"mhvae='.*' does not apply to state=True"),
]


@pytest.mark.parametrize("change, message", BAD_TRAINING, ids=[str(c) for c, _ in BAD_TRAINING])
def test_bad_training_settings_are_refused_before_any_work(checkpoint, tmp_path, change, message):
    out = tmp_path / "a"
    with pytest.raises(SettingsError, match=rf"setting {message}"):
        train_agent(**tiny(checkpoint, out, **{"timesteps": 10, **change}))
    assert not out.exists()  # no folder, no lock file


BAD_EVALUATION = [
    ({"episodes": 0}, r"episodes=0 .*an integer >= 1"),
    ({"episodes": 2.5}, r"episodes=2\.5 "),
    ({"n_envs": 0}, r"n_envs=0 "),
    ({"seed": -3}, r"seed=-3 "),
    ({"modalities": "both", "failure_p": 2.0}, r"failure_p=2\.0 .*probability in \[0, 1\]"),
    ({"modalities": "both", "failure_p": {"smell": 0.5}},
     r"failure_p=\{'smell': 0\.5\} .*sensors \('image', 'sound'\)"),
    ({"modalities": "smell"}, r"modalities='smell' "),
    ({"on_out_of_range": "explode"}, r"on_out_of_range='explode' .*one of \('error', 'warn', 'ignore'\)"),
    ({"video": "yes"}, r"video='yes' .*True or False"),
    ({"device": "tpu"}, r"device='tpu'"),
    ({"mhvae": "no/such/model.pt"}, r"mhvae='no/such/model.pt': no such checkpoint"),
    ({"num_threads": 0}, r"num_threads=0 "),
]


@pytest.mark.parametrize("change, message", BAD_EVALUATION, ids=[str(c) for c, _ in BAD_EVALUATION])
def test_bad_evaluation_settings_are_refused_before_any_work(agent, tmp_path, change, message):
    from agents.evaluate import evaluate

    d = copy_agent(agent, tmp_path / "agent")
    cfg = {"agent": str(d), "episodes": 2, "n_envs": 2, "seed": 0, "random_reference": False, "device": "cpu",
           **change}
    with pytest.raises(SettingsError, match=rf"setting {message}"):
        evaluate(cfg, log=lambda s: None)
    assert not list(d.glob("eval-*"))  # no empty evaluation folder


def _quick_transfer(checkpoint, out: Path, **change) -> dict:
    return {"mhvae": str(checkpoint), "seeds": [0], "timesteps": 10, "train_conditions": ["image"],
            "test_conditions": ["image"], "state_reference": False, "test_episodes": 1, "failure_probs": [],
            "latent_diagnostics": False, "device": "cpu", "out_dir": str(out),
            "hp": {"learning_starts": 5, "batch_size": 4}, **change}


BAD_TRANSFER = [
    ({"seeds": []}, r"seeds=\[\] .*at least one entry"),
    ({"seeds": [-1]}, r"seeds\[0\]=-1 "),
    ({"seeds": [0, 0]}, r"seeds=\[0, 0\] .*without repeated entries"),
    ({"test_episodes": 0}, r"test_episodes=0 "),
    ({"train_conditions": ["smell"]}, r"train_conditions\[0\]='smell' .*one of \('image', 'sound', 'both'\)"),
    ({"failure_probs": [1.5]}, r"failure_probs\[0\]=1\.5 "),
    ({"train_failure_p": 0.5}, r"train_failure_p=0\.5 needs two sensors in every training condition"),
    ({"timesteps": 0}, r"timesteps=0 "),
    ({"hp": {"gamma": 2}}, r"hp\.gamma=2 "),
    ({"n_eval_envs": 0}, r"n_eval_envs=0 "),
    ({"mhvae": "no/such/model.pt"}, r"mhvae='no/such/model.pt': no such checkpoint"),
    ({"env": "nope"}, r"env='nope' "),
]


@pytest.mark.parametrize("change, message", BAD_TRANSFER, ids=[str(c) for c, _ in BAD_TRANSFER])
def test_bad_transfer_settings_are_refused_before_any_work(checkpoint, tmp_path, change, message):
    from agents import transfer

    out = tmp_path / "transfer"
    with pytest.raises(SettingsError, match=rf"setting {message}"):
        transfer.ex.run(config_updates=_quick_transfer(checkpoint, out, **change))
    assert not out.exists()


def test_refused_settings_leave_no_sacred_run_folder(checkpoint, agent, tmp_path):
    """sacred's observer writes runs/sacred/<id> when a run starts; the checks run before (a config hook)."""
    from sacred.observers import FileStorageObserver

    from agents import evaluate, train, transfer

    obs, d = tmp_path / "sacred", copy_agent(agent, tmp_path / "agent")
    quick = {"mhvae": str(checkpoint), "timesteps": 10, "eval_freq": 1000, "progress": False, "tensorboard": False,
             "device": "cpu", "run_dir": str(tmp_path / "run")}
    cases = [(train.ex, {**quick, "latent_stack": -2}), (train.ex, {**quick, "hp": {"batch_size": 0}}),
             (evaluate.ex, {"agent": str(d), "episodes": 0, "device": "cpu"}),
             (evaluate.ex, {"agent": str(d), "modalities": "both", "failure_p": 2.0, "episodes": 1, "device": "cpu"}),
             (transfer.ex, _quick_transfer(checkpoint, tmp_path / "transfer", seeds=[]))]
    for ex, updates in cases:
        ex.observers.append(FileStorageObserver(str(obs)))
        try:
            with pytest.raises(SettingsError):
                ex.run(config_updates=updates)
        finally:
            ex.observers.pop()
    assert not [p for p in obs.glob("*") if p.name.isdigit()]
    assert not (tmp_path / "run").exists() and not (tmp_path / "transfer").exists() and not list(d.glob("eval-*"))


def test_command_line_refusal_names_the_setting_and_writes_nothing(checkpoint, tmp_path):
    import os

    obs, run_dir = tmp_path / "sacred", tmp_path / "run"
    repo = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "agents/train.py", "with", f"mhvae={checkpoint}", "latent_stack=-2", "timesteps=10",
           "progress=False", "tensorboard=False", "device=cpu", f"run_dir={run_dir}", "-F", str(obs)]
    done = subprocess.run(cmd, cwd=repo, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0
    assert "setting latent_stack=-2 is not allowed: latent_stack must be None or an integer >= 1" in done.stderr
    assert not [p for p in obs.glob("*") if p.name.isdigit()] and not run_dir.exists()


# ----------------------------------------------- 3. an evaluation encodes with the agent's own MHVAE by default
@pytest.fixture(scope="module")
def other_checkpoint(tmp_path_factory):
    """The same architecture as the agent's MHVAE with other (random) weights."""
    torch.manual_seed(7)
    return save_checkpoint(tmp_path_factory.mktemp("other") / "other.pt",
                           presets.build("pendulum_sound", "mhvae").eval())


def test_evaluation_refuses_another_mhvae_unless_asked(agent, checkpoint, other_checkpoint, tmp_path, recwarn):
    from agents.evaluate import evaluate

    d = copy_agent(agent, tmp_path / "agent")
    base = {"agent": str(d), "episodes": 1, "n_envs": 1, "seed": 0, "random_reference": False, "device": "cpu"}
    with pytest.raises(SettingsError, match=rf"mhvae='{re.escape(str(other_checkpoint))}'.* is not the checkpoint "
                                            rf"{re.escape(str(d))} was trained on .*allow_other_mhvae=True"):
        evaluate({**base, "mhvae": str(other_checkpoint)}, log=lambda s: None)
    assert not list(d.glob("eval-*"))
    with pytest.warns(UserWarning, match=r"not the MHVAE the agent was trained on"):
        other = evaluate({**base, "mhvae": str(other_checkpoint), "allow_other_mhvae": True}, log=lambda s: None)
    assert other["other_mhvae"] is True and other["mhvae_sha256"] == file_sha256(other_checkpoint)
    recwarn.clear()
    own = evaluate(base, log=lambda s: None)  # default: the recorded checkpoint, its SHA-256 checked
    assert own["mhvae"] == str(checkpoint.resolve()) and own["mhvae_sha256"] == file_sha256(checkpoint)
    moved = tmp_path / "moved.pt"
    shutil.copy(checkpoint, moved)  # the agent's own model under another path is accepted without a warning
    assert evaluate({**base, "mhvae": str(moved)}, log=lambda s: None)["other_mhvae"] is False
    assert not [w for w in recwarn if "not the MHVAE" in str(w.message)]
    meta = json.loads((d / "agent.json").read_text())
    meta["mhvae"]["path"] = str(moved)  # as if the agent had been trained on the copy
    (d / "agent.json").write_text(json.dumps(meta))
    with open(moved, "ab") as handle:
        handle.write(b"changed")  # the recorded checkpoint is no longer the model the agent was trained on
    with pytest.raises(ValueError, match=r"SHA-256"):
        evaluate(base, log=lambda s: None)


def test_ctrl_c_during_an_agent_save_is_a_keyboard_interrupt_not_a_full_disk(tmp_path):
    """torch's writer turns a Ctrl-C in the middle of a write into RuntimeError('unexpected pos'), the message it
    also gives on a full disk: the save gives back the KeyboardInterrupt."""
    from agents.files import staged_writes

    def interrupted(handle):
        handle.write(b"partial")
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4544 vs 4432")

    with pytest.raises(KeyboardInterrupt):
        with staged_writes("a test save") as stage:
            stage.write(tmp_path / "policy.pt", interrupted)
    assert list(tmp_path.iterdir()) == []
