"""The one-command transfer pipeline: stage order, skip and resume, the predictor's gate, refusals before any file.
The stages' own scripts are tested elsewhere; here each command is replaced by a fake that writes its product."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from agents import pipeline

ORDER = ["pretrain", "scout", "collect-onpolicy", "finetune", "transfer"]


class OneSensor(gym.Env):
    observation_space = spaces.Dict({"only": spaces.Box(-1.0, 1.0, (2,), np.float32)})
    action_space = spaces.Discrete(2)


def _register() -> None:
    if "OneSensorPipeline-v0" not in gym.registry:
        gym.register("OneSensorPipeline-v0", entry_point=OneSensor)


def fake_runner(out, calls, fail=(), score=0.9):
    """A ``run_command`` that records the stage and writes what its script would have written."""
    def run(command, log_path):
        stage = log_path.stem
        calls.append(stage)
        if stage in fail:
            return 3
        if stage in ("pretrain", "evaluate"):
            (out / "model").mkdir(parents=True, exist_ok=True)
            probes = {"transfer_score": {"linear": score, "mlp": score}} if score is not None else None
            (out / "model" / "metrics.json").write_text(json.dumps({"probes": probes}))
        elif stage == "scout":
            (out / "scout" / "all-seed0").mkdir(parents=True, exist_ok=True)
            steps = int(next(a for a in command if a.startswith("timesteps=")).split("=")[1])
            (out / "scout" / "all-seed0" / "agent.json").write_text(json.dumps({"timesteps": steps}))
        elif stage == "collect-onpolicy":
            (out / "data").mkdir(parents=True, exist_ok=True)
            (out / "data" / "onpolicy.npz").write_bytes(b"npz")
        elif stage == "finetune":
            (out / "model-onpolicy").mkdir(parents=True, exist_ok=True)
            (out / "model-onpolicy" / "metrics.json").write_text("{}")
        elif stage == "transfer":
            (out / "transfer").mkdir(parents=True, exist_ok=True)
            (out / "transfer" / "results.json").write_text("{}")
            (out / "transfer" / "table.md").write_text("| condition | return |\n")
        return 0
    return run


def args_for(out, *extra):
    return ["--env", "PendulumSound-v0", "--out", str(out), "--timesteps", "500", "--seeds", "0", *extra]


def test_stages_run_in_order_then_are_skipped(tmp_path, monkeypatch):
    out, calls = tmp_path / "p", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls))
    pipeline.main(args_for(out))
    assert calls == ORDER
    record = json.loads((out / "pipeline.json").read_text())
    assert [s["status"] for s in record["stages"].values()] == ["done", "passed", "done", "done", "done", "done"]
    assert "init_weights=" + str(out / "model" / "checkpoints" / "best.pt") in record["stages"]["finetune"]["command"]
    assert "mhvae=" + str(out / "model-onpolicy" / "checkpoints" / "best.pt") in record["stages"]["transfer"]["command"]
    # the on-policy dataset records the true state as the pretraining did (else the fine-tuning refuses it)
    assert "--state-source auto" in record["stages"]["collect-onpolicy"]["command"]
    assert "state_source=auto" in record["stages"]["finetune"]["command"]
    assert "state_source=auto" in record["stages"]["transfer"]["command"]  # the latent diagnostics' dataset
    assert all(isinstance(s["wall_s"], float) for s in record["stages"].values())
    assert "| condition | return |" in (out / "summary.md").read_text()
    calls.clear()
    pipeline.main(args_for(out))  # everything exists: nothing runs again
    assert calls == []
    # more seeds: the transfer stage's command changed, so it runs again (transfer.py reuses the agents it has)
    pipeline.main(args_for(out)[:-1] + ["0", "1"])
    assert calls == ["transfer"]
    calls.clear()
    pipeline.main(args_for(out)[:-1] + ["0", "1"])
    assert calls == []


def test_a_failed_stage_stops_and_the_same_command_resumes_there(tmp_path, monkeypatch):
    out, calls = tmp_path / "p", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls, fail={"collect-onpolicy"}))
    with pytest.raises(SystemExit, match=r"stage collect-onpolicy failed \(exit 3\).*re-run the same command"):
        pipeline.main(args_for(out))
    record = json.loads((out / "pipeline.json").read_text())
    assert record["stages"]["collect-onpolicy"]["status"] == "failed (exit 3)" and "finetune" not in record["stages"]
    calls.clear()
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls))
    pipeline.main(args_for(out))
    assert calls == ["collect-onpolicy", "finetune", "transfer"]


def test_stop_after_ends_at_a_stage_and_the_same_command_goes_on(tmp_path, monkeypatch, capsys):
    out, calls = tmp_path / "p", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls))
    pipeline.main(args_for(out, "--stop-after", "pretrain"))
    assert calls == ["pretrain"] and "goes on from gate" in capsys.readouterr().out
    pipeline.main(args_for(out, "--stop-after", "gate"))  # a skipped stage or the gate stops it too
    assert calls == ["pretrain"]
    pipeline.main(args_for(out))
    assert calls == ORDER
    with pytest.raises(SystemExit, match="'evaluate' is not a stage of this pipeline; its stages: pretrain, gate"):
        pipeline.main(args_for(tmp_path / "q", "--stop-after", "evaluate"))
    assert not (tmp_path / "q").exists()


def test_the_gate_warns_or_stops_when_transfer_is_unlikely(tmp_path, monkeypatch, capsys):
    out, calls = tmp_path / "stop", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls, score=0.1))
    with pytest.raises(SystemExit, match="stopped at the gate"):
        pipeline.main(args_for(out, "--gate", "stop"))
    assert calls == ["pretrain"]
    assert "probably NOT act well" in capsys.readouterr().out
    out, calls = tmp_path / "warn", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls, score=0.1))
    pipeline.main(args_for(out))
    assert calls == ORDER
    assert "probably NOT" in json.loads((out / "pipeline.json").read_text())["gate"]
    # without a true state there is no predictor: the gate says how to give one
    likely, message = pipeline.gate_message(None, 0.5)
    assert likely and "--state-source" in message


def test_a_model_made_earlier_is_evaluated_instead_of_pretrained(tmp_path, monkeypatch):
    """--model: the pretrain stage becomes the given model's evaluation and the refinement starts from it;
    --tuned-model: the agents are trained on it directly (no scout, collection or fine-tuning)."""
    given = tmp_path / "given.pt"
    given.write_bytes(b"a checkpoint")
    out, calls = tmp_path / "m", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls))
    pipeline.main(args_for(out, "--model", str(given)))
    assert calls == ["evaluate", "scout", "collect-onpolicy", "finetune", "transfer"]
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert f"evaluate with checkpoint={given}" in stages["evaluate"]["command"]
    assert f"eval_dir={out / 'model'}" in stages["evaluate"]["command"]
    assert f"mhvae={given}" in stages["scout"]["command"] and f"init_weights={given}" in stages["finetune"]["command"]
    out, calls = tmp_path / "t", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls, score=0.1))
    pipeline.main(args_for(out, "--tuned-model", str(given)))
    assert calls == ["evaluate", "transfer"]
    record = json.loads((out / "pipeline.json").read_text())
    assert f"mhvae={given} " in record["stages"]["transfer"]["command"] and "probably NOT" in record["gate"]


@pytest.mark.parametrize("extra, message", [
    (["--state-source", "sensor:lidar"], "no sensor 'lidar'"),
    (["--model", "no-such-model"], "neither a checkpoint file nor a shipped model name"),
    (["--timesteps", "0"], "--timesteps must be >= 1"),
    (["--pretrain-set", "epochs"], "is not KEY=VALUE"),
])
def test_bad_settings_are_refused_before_any_folder(tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.setattr(pipeline, "run_command", lambda *a: pytest.fail("a stage ran"))
    with pytest.raises(SystemExit) as exc:
        pipeline.main(args_for(tmp_path / "p") + extra)
    assert message in str(exc.value) + capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_one_sensor_env_refused(tmp_path):
    _register()
    with pytest.raises(SystemExit, match="observes one sensor"):
        pipeline.main(["--env", "OneSensorPipeline-v0", "--out", str(tmp_path / "p")])
    assert not (tmp_path / "p").exists()


def test_dry_run_prints_the_stages_and_writes_nothing(tmp_path, capsys):
    pipeline.main(args_for(tmp_path / "p", "--dry-run"))
    printed = capsys.readouterr().out
    assert [line.split(":")[0].split("] ")[1] for line in printed.splitlines() if line.startswith("[")] == \
        ["pretrain", "gate", "scout", "collect-onpolicy", "finetune", "transfer"]
    assert not (tmp_path / "p").exists()


def test_an_alias_trains_its_agents_on_the_variant_and_its_model_on_the_game(tmp_path, monkeypatch):
    """A reward variant (hyperhot_spectrum_hits: +1 per kill) observes its game's sensors: the model is
    pretrained and evaluated on HyperhotSpectrum-v0, the agents get the variant's reward."""
    out, calls = tmp_path / "a", []
    monkeypatch.setattr(pipeline, "run_command", fake_runner(out, calls))
    pipeline.main(["--env", "hyperhot_spectrum_hits", "--out", str(out), "--timesteps", "500", "--seeds", "0"])
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert "env_id=HyperhotSpectrum-v0 " in stages["pretrain"]["command"]
    assert "env_id=HyperhotSpectrum-v0 " in stages["finetune"]["command"]
    assert "env=hyperhot_spectrum_hits " in stages["scout"]["command"]
    assert "env=hyperhot_spectrum_hits " in stages["transfer"]["command"]
