"""The transfer predictor: R² maths, probes, active dimensions and the report on a small model."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mhvae_perception import probes
from mhvae_perception.data import DictTensorDataset
from mhvae_perception.models import MHVAE
from mhvae_perception.models.specs import CoreSpec, ModalitySpec, ModelConfig


def test_r2_matches_its_definition():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 3))
    pred = y + rng.normal(scale=0.5, size=y.shape)
    expected = [1 - np.sum((pred[:, j] - y[:, j]) ** 2) / np.sum((y[:, j] - y[:, j].mean()) ** 2) for j in range(3)]
    np.testing.assert_allclose(probes.r2_scores(pred, y), expected)
    np.testing.assert_allclose(probes.r2_scores(y, y), 1.0)
    np.testing.assert_allclose(probes.r2_scores(np.broadcast_to(y.mean(0), y.shape), y), 0.0, atol=1e-12)


def test_linear_probe_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(500, 6))
    a, b = rng.normal(size=(6, 2)), rng.normal(size=2)
    probe = probes.LinearProbe().fit(z, z @ a + b)
    np.testing.assert_allclose(probe.predict(z), z @ a + b, atol=1e-4)


def test_mlp_probe_fits_what_a_linear_probe_cannot():
    rng = np.random.default_rng(2)
    z = rng.uniform(-1, 1, size=(2000, 2))
    y = np.stack([np.cos(3 * z[:, 0]), z[:, 1] ** 2], axis=1)
    lin = probes.r2_scores(probes.LinearProbe().fit(z, y).predict(z), y)
    mlp = probes.r2_scores(probes.MLPProbe(steps=800).fit(z, y).predict(z), y)
    assert (mlp > 0.9).all() and (lin < 0.5).all(), (mlp, lin)


def test_active_dimensions_counts_varying_means():
    rng = np.random.default_rng(3)
    means = np.concatenate([rng.normal(size=(300, 3)), 1e-3 * rng.normal(size=(300, 2)) + 5.0], axis=1)
    assert probes.active_dimensions(means) == 3


def test_probe_transfer_sees_a_shifted_posterior():
    """Two sensors whose latents carry the state equally well but live in different places: each within-R² is
    ~1, the transfer R² is far below 0; identical latents transfer perfectly."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(1200, 4))
    y = z[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])
    tr, te = slice(0, 800), slice(800, None)
    shifted = {"a": z, "b": z + np.array([3.0, -3.0, 0.0, 0.0])}
    out = probes.probe_scores({k: v[tr] for k, v in shifted.items()}, {k: v[te] for k, v in shifted.items()},
                              y[tr], y[te], ("u", "v"), single=("a", "b"), kinds=("linear",))
    assert min(out["within"]["linear"]["a"].values()) > 0.999
    assert min(out["within"]["linear"]["b"].values()) > 0.999
    assert max(out["transfer"]["linear"]["a->b"].values()) < -1.0
    assert out["transfer_score"]["linear"] == pytest.approx(-1.0)  # every cell clipped at -1

    same = {"a": z, "b": z.copy()}
    out = probes.probe_scores({k: v[tr] for k, v in same.items()}, {k: v[te] for k, v in same.items()},
                              y[tr], y[te], ("u", "v"), single=("a", "b"), kinds=("linear",))
    assert out["transfer_score"]["linear"] > 0.999


def _tiny_splits(n: int = 300):
    """Two vector sensors that both see the state (s) through different fixed maps."""
    g = torch.Generator().manual_seed(0)
    s = torch.randn(n, 2, generator=g)
    x1 = torch.cat([s, s ** 2], dim=1) + 0.05 * torch.randn(n, 4, generator=g)
    x2 = s @ torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]]) + 0.05 * torch.randn(n, 3, generator=g)
    data = DictTensorDataset({"a": x1, "b": x2})
    half = n // 2
    return SimpleNamespace(name="tiny", train=data.subset(torch.arange(half)), test=data.subset(torch.arange(half, n)),
                           state={"train": s[:half].numpy(), "test": s[half:].numpy()}, state_names=("s0", "s1"))


def _tiny_model():
    mlp = {"hidden": [16], "activation": "leaky_relu", "batchnorm": False}
    cfg = ModelConfig("mhvae", (ModalitySpec("a", (4,), "gaussian", 3, "mlp", mlp),
                                ModalitySpec("b", (3,), "gaussian", 3, "mlp", mlp)), CoreSpec(4, (16,)))
    torch.manual_seed(0)
    return MHVAE(cfg)


def test_transfer_probes_report_files_and_mode(tmp_path):
    model = _tiny_model().train()
    report = probes.transfer_probes(model, _tiny_splits(), tmp_path, kinds=("linear",))
    assert model.training  # the caller's mode is restored
    assert set(report["within"]["linear"]) == {"a", "b", "a+b"}
    assert set(report["transfer"]["linear"]) == {"a->b", "b->a"}
    assert report["points"] == {"train": 150, "test": 150}
    assert json.loads((tmp_path / "probes.json").read_text()) == report
    table = (tmp_path / "probes.md").read_text()
    assert "| linear |" in table and "a probe on b latents" in table
    assert (tmp_path / "probes.png").stat().st_size > 1000


def test_transfer_probes_needs_a_state():
    splits = _tiny_splits()
    splits.state = None
    with pytest.raises(ValueError, match="no true state"):
        probes.transfer_probes(_tiny_model(), splits)


def test_transfer_a_to_b_fits_on_a_and_scores_on_b():
    """Asymmetric latents: a = s, b = 2 s. Fitted on a (s = a) and scored on b it predicts 2 s: R² = 1 - 1 = 0;
    fitted on b (s = b / 2) and scored on a it predicts s / 2: R² = 1 - 1/4 = 0.75. Swapping the direction fails."""
    rng = np.random.default_rng(3)
    s_train, s_test = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 1))
    train = {"a": s_train, "b": 2 * s_train}
    test = {"a": s_test, "b": 2 * s_test}
    report = probes.probe_scores(train, test, s_train, s_test, ["s"], single=["a", "b"], kinds=["linear"])
    assert report["transfer"]["linear"]["a->b"]["s"] == pytest.approx(0.0, abs=0.05)
    assert report["transfer"]["linear"]["b->a"]["s"] == pytest.approx(0.75, abs=0.02)
