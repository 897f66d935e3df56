"""run.py's model_overrides: applied to the description, checked before any data, part of a run's settings."""
import pytest

from mhvae_perception import presets
from pretrain.settings import SettingsError, changed_settings, check_settings
from pretrain.run import ex


def _cfg(**updates):
    cfg = dict(ex.configurations[0]())  # run.py's defaults
    cfg.update(updates)
    return cfg


def test_overrides_change_modality_core_and_top_level_fields():
    base = presets.config("mnist", "mhvae")
    out = base.with_overrides({"modalities": {"label": {"recon_weight": 50.0, "dropout": 0.3}},
                                       "core": {"kl_weight": 0.2}, "agreement_weight": 1.5})
    assert out.modality("label").recon_weight == 50.0 and out.modality("label").dropout == 0.3
    assert out.modality("image") == base.modality("image")
    assert out.core.kl_weight == 0.2 and out.core.hidden == base.core.hidden
    assert out.agreement_weight == 1.5
    assert base.with_overrides({}) == base


def test_star_changes_every_modality_before_the_named_ones():
    base = presets.config("mnist", "mhvae")
    out = base.with_overrides({"modalities": {"*": {"kl_weight": 3.0, "recon_weight": 2.0},
                                              "label": {"recon_weight": 50.0}}})
    assert [m.kl_weight for m in out.modalities] == [3.0, 3.0]
    assert out.modality("image").recon_weight == 2.0 and out.modality("label").recon_weight == 50.0
    assert [m.dropout for m in out.modalities] == [m.dropout for m in base.modalities]
    with pytest.raises(ValueError, match="ModalitySpec"):
        base.with_overrides({"modalities": {"*": {"kl_weigth": 1.0}}})


def test_unknown_modality_is_named():
    with pytest.raises((ValueError, KeyError), match="sound"):
        presets.config("mnist", "mhvae").with_overrides({"modalities": {"sound": {"recon_weight": 2.0}}})


@pytest.mark.parametrize("bad, word", [
    ({"agrement_weight": 1.0}, "agrement_weight"),
    ({"core": {"kl_weigth": 0.2}}, "CoreSpec"),
    ({"modalities": {"image": {"recon": 2.0}}}, "ModalitySpec"),
    ({"modalities": {"image": 3}}, "modalities.image"),
    ("agreement=1", "model_overrides"),
])
def test_bad_overrides_are_refused_before_any_data(bad, word):
    with pytest.raises(SettingsError, match=word):
        check_settings(_cfg(model_overrides=bad))


def test_overrides_are_a_training_setting():
    recorded = {"dataset": "mnist", "model": "mhvae", "model_overrides": {"agreement_weight": 1.0}}
    assert "model_overrides" in changed_settings(recorded, _cfg(model_overrides={"agreement_weight": 2.0}))
    old_record = {"dataset": "mnist", "model": "mhvae"}  # runs started before the setting existed
    assert "model_overrides" not in changed_settings(old_record, _cfg())
    assert "model_overrides" in changed_settings(old_record, _cfg(model_overrides={"agreement_weight": 2.0}))


def test_command_line_accepts_nested_overrides_and_still_refuses_typos(tmp_path):
    """sacred refuses entries added to the config; those inside model_overrides are meant to be added."""
    import subprocess
    import sys

    base = [sys.executable, "pretrain/run.py", "print_config", "with", f"run_dir={tmp_path}"]
    ok = subprocess.run(base + ['model_overrides={"core": {"kl_weight": 0.2}}'], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    # print_config does not run main; the main command is what users run:
    ran = subprocess.run([sys.executable, "pretrain/run.py", "with", f"run_dir={tmp_path}", "epochs=-1",
                          'model_overrides={"core": {"kl_weight": 0.2}}'], capture_output=True, text=True)
    assert "ConfigAddedError" not in ran.stderr and "epochs" in ran.stderr  # got as far as the settings check
    typo = subprocess.run([sys.executable, "pretrain/run.py", "with", f"run_dir={tmp_path}", "epochz=3"],
                          capture_output=True, text=True)
    assert "ConfigAddedError" in typo.stderr
