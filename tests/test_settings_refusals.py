"""Bad pretraining settings are refused before anything happens: no data loaded, no run folder, no sacred run
folder; settings of one model kind given for another are refused, not ignored."""
from __future__ import annotations

import pytest
from sacred.observers import FileStorageObserver

from mhvae_perception import data
from pretrain import run as run_mod
from pretrain.settings import SettingsError


@pytest.mark.parametrize("updates,named", [
    ({"seed": -1}, "seed=-1"),
    ({"model_overrides": {"core": {"latent_dim": -3}}}, "core latent_dim"),
    ({"model_overrides": {"modalities": {"nope": {"latent_dim": 3}}}}, "unknown modality 'nope'"),
    ({"model_overrides": {"modalities": {"image": {"dropout": 1.5}}}}, "dropout"),
    ({"model": "jmvae", "warmup_modality_epochs": 5}, "warmup_modality_epochs=5 does not apply to model='jmvae'"),
    ({"model": "mvae", "warmup_core_epochs": 7}, "warmup_core_epochs=7 does not apply to model='mvae'"),
    ({"model": "mhvae", "warmup_epochs": 3}, "warmup_epochs=3 does not apply to model='mhvae'"),
    ({"model": "jmvae", "model_overrides": {"agreement_weight": 1.0}}, "agreement_weight does not apply"),
])
def test_refused_before_data_or_any_folder(tmp_path, monkeypatch, updates, named):
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the refusal"))
    observer_dir = tmp_path / "sacred"
    monkeypatch.setattr(run_mod.ex, "observers", [FileStorageObserver(str(observer_dir))])
    run_dir = tmp_path / "run"
    with pytest.raises(SettingsError, match=named.replace("(", r"\(").replace(")", r"\)")):
        run_mod.ex.run("main", config_updates={"progress": False, "run_dir": str(run_dir), **updates},
                       options={"--loglevel": "ERROR"})
    assert not run_dir.exists() and not observer_dir.exists()


def test_the_other_kinds_own_warmups_and_the_defaults_are_accepted():
    from pretrain.settings import check_settings

    base = dict(run_mod.ex.run("print_config", options={"--loglevel": "ERROR"}).config)
    check_settings({**base, "model": "jmvae", "warmup_epochs": 3})
    check_settings({**base, "model": "mhvae", "warmup_modality_epochs": 2, "warmup_core_epochs": 4})
    check_settings({**base, "model": "mvae"})
