"""Tests of mhvae_perception.experiment: the shared sacred set-up and device resolution."""
from __future__ import annotations

import pytest
import torch
from sacred import Experiment
from sacred.observers import FileStorageObserver

from mhvae_perception.experiment import prepare_experiment  # first: quiets sacred's warning
from mhvae_perception.models.devices import resolve_device


def test_resolve_device_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize("name, match", [("gpu", "unknown device 'gpu'"), ("", "device must be a string"),
                                         (None, "device must be a string"), ("xla", "not supported")])
def test_resolve_device_rejects_unknown(name, match):
    with pytest.raises(ValueError, match=match):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_resolve_device_rejects_unavailable_cuda():
    with pytest.raises(ValueError, match="CUDA is not available.*device=auto"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resolve_device_rejects_missing_cuda_index():
    with pytest.raises(ValueError, match="does not exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_prepare_experiment_adds_observer_unless_one_is_asked_for(tmp_path):
    ex = Experiment("t", save_git_info=False)
    assert prepare_experiment(ex, observer_dir=tmp_path / "sacred") is ex
    assert ex.captured_out_filter is not None
    assert ex.captured_out_filter("10%\r50%\r100%\ndone\n") == "100%\ndone\n"  # progress frames collapse
    (hook,) = ex.option_hooks
    cli = {"COMMAND": None, "UPDATE": [], "help": False, "with": False}  # what docopt gives run_commandline
    hook(options={**cli, "--unobserved": True})
    hook(options={**cli, "--file_storage": "elsewhere"})
    hook(options={"--loglevel": "ERROR"})  # a programmatic ex.run(...): no observer
    assert ex.observers == []
    hook(options={**cli, "--unobserved": False})
    assert len(ex.observers) == 1 and isinstance(ex.observers[0], FileStorageObserver)
    assert ex.observers[0].basedir == str(tmp_path / "sacred")


def test_programmatic_runs_get_no_observer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ex = prepare_experiment(Experiment("t", save_git_info=False, interactive=True))
    ex.main(lambda: 3)
    assert ex.run(options={"--loglevel": "ERROR"}).result == 3
    assert ex.observers == [] and not (tmp_path / "runs").exists()
