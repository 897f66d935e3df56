"""The model registry, the loss output's interface and the package's import structure."""
import ast
from pathlib import Path

import pytest
import torch

import mhvae_perception
from mhvae_perception import JMVAE, MHVAE, MODEL_KINDS, MVAE, LossOutput, build_model, registry

from test_model import random_batch, small_config

PACKAGE = Path(mhvae_perception.__file__).resolve().parent


def test_registry_maps_every_kind_to_its_class():
    assert MODEL_KINDS == ("mhvae", "jmvae", "mvae")
    assert dict(registry.MODELS) == {"mhvae": MHVAE, "jmvae": JMVAE, "mvae": MVAE}
    for kind in MODEL_KINDS:
        cfg = small_config(kind)
        assert type(build_model(cfg)) is registry.MODELS[kind]
        assert type(build_model(cfg.to_dict())) is registry.MODELS[kind]  # the JSON description works too


def test_unknown_kind_is_refused_with_the_known_kinds():
    cfg = small_config("mhvae")
    bad = {**cfg.to_dict(), "kind": "vae"}
    with pytest.raises(ValueError, match=r"unknown model kind 'vae'.*'mhvae', 'jmvae', 'mvae'"):
        build_model(bad)
    with pytest.raises(ValueError, match="non-empty string"):
        build_model({**cfg.to_dict(), "kind": ""})


def _imports(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / "models" / f"{module}.py").read_text())
    return {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_model_does_not_import_the_baselines_or_the_registry():
    assert not (_imports("base") | _imports("mhvae")) & {"baselines", "registry"}
    assert not _imports("specs") & {"base", "mhvae", "baselines", "registry"}
    assert "base" in _imports("baselines") and {"mhvae", "baselines"} <= _imports("registry")


def test_no_sys_path_preambles_in_the_library():
    offenders = [p.name for p in PACKAGE.rglob("*.py") if "sys.path" in p.read_text()]
    assert offenders == []


@pytest.mark.parametrize("kind,schedule", [("mhvae", {"beta_m": 0.25, "beta_c": 0.5}), ("jmvae", {"beta": 0.5}),
                                           ("mvae", {"beta": 0.5})])
def test_loss_output_keeps_terms_and_schedule_apart(kind, schedule):
    cfg = small_config(kind)
    cfg = type(cfg)(cfg.kind, cfg.modalities, cfg.core, warmup_modality_epochs=8.0, warmup_core_epochs=4.0)
    out = build_model(cfg).loss(random_batch(cfg), epoch=2.0)
    assert out.schedule == schedule
    assert all(not v.requires_grad and v.dim() == 0 for v in out.terms.values())
    assert not any("beta" in k or "scale" in k for k in out.terms)
    scalars = out.scalars()
    assert scalars["loss"] == out.loss.item()
    assert {k: scalars[k] for k in out.terms} == {k: v.item() for k, v in out.terms.items()}
    assert {k[len("schedule/"):]: v for k, v in scalars.items() if k.startswith("schedule/")} == schedule
    assert set(scalars) == {"loss", *out.terms, *(f"schedule/{k}" for k in schedule)}
    assert all(type(v) is float for v in scalars.values())


def test_loss_output_scalars_by_hand():
    out = LossOutput(torch.tensor(2.5, requires_grad=True), {"rec/x": torch.tensor(-1.0)}, {"beta": 0.1})
    assert out.scalars() == {"loss": 2.5, "rec/x": -1.0, "schedule/beta": 0.1}
