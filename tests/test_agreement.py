"""The optional cross-modal agreement term of the MHVAE loss (an extension beyond the paper, off by default)."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mhvae_perception import ModelConfig, build_model, checkpoints, load_checkpoint, save_checkpoint
from mhvae_perception.models.distributions import gaussian_kl

from test_model import briefly_trained, random_batch, small_config

FORMAT1 = Path(__file__).resolve().parent / "data" / "format1"


def with_gamma(cfg: ModelConfig, gamma: float) -> ModelConfig:
    return dataclasses.replace(cfg, agreement_weight=gamma)


def trained_model(n_modalities=2, steps=3):
    """An MHVAE with non-trivial BatchNorm statistics, in eval mode (deterministic per data point)."""
    model, batch = briefly_trained(small_config(n_modalities=n_modalities), steps)
    return model.eval(), batch


def loss_with(model, batch, gamma, seed=5):
    model.config = with_gamma(model.config, gamma)
    torch.manual_seed(seed)
    return model.loss(batch, epoch=2.0)


def hand_agreement(model, batch, detach=True):
    """Σ_i KL(q(z_c | all h) ‖ q(z_c | h_i only)), batch mean, by the model's public pieces."""
    x = model.prepare(batch)
    hidden = {n: model.modality_posterior(n, x[n])[0] for n in model.modality_names}
    mu, logvar = model.core_posterior(hidden)
    if detach:
        mu, logvar = mu.detach(), logvar.detach()
    per = {n: gaussian_kl(mu, logvar, *model.core_posterior({n: hidden[n]})).mean() for n in model.modality_names}
    return sum(per.values()), per


def test_config_field_defaults_to_zero_round_trips_and_is_checked():
    cfg = small_config()
    assert cfg.agreement_weight == 0.0 and cfg.to_dict()["agreement_weight"] == 0.0
    old = cfg.to_dict()
    del old["agreement_weight"]  # a description written before the field existed
    assert ModelConfig.from_dict(old).agreement_weight == 0.0
    on = with_gamma(cfg, 0.3)
    assert ModelConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    for bad in (-0.1, float("nan"), float("inf"), "0.1"):
        with pytest.raises(ValueError, match="agreement_weight must be a finite number >= 0"):
            with_gamma(cfg, bad)
    with pytest.raises(ValueError, match="agreement_weight is an MHVAE loss term"):
        with_gamma(small_config("jmvae"), 0.1)


def test_gamma_zero_is_exactly_the_loss_and_gradient_of_the_code_before_the_term():
    """The fixture holds an eval-mode loss and its gradients computed by the code of 19279de."""
    ck = load_checkpoint(FORMAT1 / "small_mhvae.pt")
    state, model = ck.training_state, ck.model
    assert model.config.agreement_weight == 0.0
    rows = []
    model.core_encoder.register_forward_hook(lambda module, inputs, output: rows.append(inputs[0].shape[0]))
    torch.manual_seed(11)
    out = model.loss(state["fixture_batch"], epoch=5.0)
    loss = out.loss
    loss.backward()
    assert rows == [len(state["fixture_batch"]["label"])]  # no extra compute when the term is off
    assert not any(k.startswith("agree/") for k in out.terms)
    torch.testing.assert_close(loss.detach(), state["fixture_eval_loss_seed11_epoch5"], rtol=0, atol=0)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.grad, state["fixture_eval_grads_seed11_epoch5"][name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_modalities", [2, 3])
def test_gamma_adds_exactly_the_hand_computed_kl_sum(n_modalities):
    model, batch = trained_model(n_modalities)
    off, on = loss_with(model, batch, 0.0), loss_with(model, batch, 0.7)
    with torch.no_grad():
        total, per = hand_agreement(model, batch)
    assert total > 0
    torch.testing.assert_close(on.loss - off.loss, 0.7 * total, rtol=1e-5, atol=1e-5)
    for name, value in per.items():
        torch.testing.assert_close(on.terms[f"agree/{name}"], value, rtol=1e-5, atol=1e-6)
    assert not any(k.startswith("agree/") for k in off.terms)
    for key, value in off.terms.items():  # the ELBO terms are untouched
        torch.testing.assert_close(on.terms[key], value, rtol=1e-5, atol=1e-5)
    assert on.schedule == off.schedule  # γ is not warmed up


def test_no_gradient_flows_into_the_all_modality_target():
    model, batch = trained_model()

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}

    gamma = 0.7
    g_on, g_off = grads(loss_with(model, batch, gamma).loss), grads(loss_with(model, batch, 0.0).loss)
    g_stop = grads(gamma * hand_agreement(model, batch, detach=True)[0])
    g_through = grads(gamma * hand_agreement(model, batch, detach=False)[0])
    differs = False
    for name in g_on:
        torch.testing.assert_close(g_on[name] - g_off[name], g_stop[name], rtol=1e-4, atol=1e-6)
        differs |= not torch.allclose(g_stop[name], g_through[name], rtol=1e-3, atol=1e-6)
    assert differs  # the check can tell a stopped gradient from one that flows


def test_train_mode_runs_one_batchnorm_update_per_step_and_trains():
    torch.manual_seed(0)
    model = build_model(with_gamma(small_config(), 0.5))
    batch = random_batch(model.config, n=32)
    bn = next(m for m in model.core_encoder.modules() if isinstance(m, torch.nn.BatchNorm1d))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        out = model.loss(batch, epoch=1.0)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        first = first if first is not None else out.terms
        assert torch.isfinite(out.loss)
    assert int(bn.num_batches_tracked) == 40
    agree = lambda t: sum(float(v) for k, v in t.items() if k.startswith("agree/"))  # noqa: E731
    assert agree(out.terms) < agree(first)


def test_checkpoints_keep_the_weight(tmp_path):
    model = build_model(with_gamma(small_config(), 0.25))
    path = save_checkpoint(tmp_path / "m.pt", model)
    assert load_checkpoint(path).model.config.agreement_weight == 0.25
    with pytest.raises(checkpoints.CheckpointError, match="different model description.*agreement_weight"):
        checkpoints.restore_into(build_model(small_config()), path)
