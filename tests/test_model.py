"""The MHVAE and baselines: maths against closed forms, MRD, losses, warm-ups, input errors, any N."""
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from mhvae_perception import MHVAE, CoreSpec, ModalitySpec, ModelConfig, build_model, presets, warmup_scale
from mhvae_perception.models.baselines import product_of_experts
from mhvae_perception.models.distributions import gaussian_kl, gaussian_log_prob, standard_normal_kl

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def small_config(kind="mhvae", n_modalities=2, dropout=0.5):
    mods = [ModalitySpec("image", (1, 8, 8), "bernoulli", 4, "mlp", {"hidden": [32, 32]}, dropout=dropout),
            ModalitySpec("label", (5,), "categorical", 3, "mlp", {"hidden": [16, 16]}, dropout=dropout),
            ModalitySpec("sound", (2, 3), "gaussian", 2, "mlp", {"hidden": [16], "batchnorm": False}, dropout=dropout)]
    return ModelConfig(kind, tuple(mods[:n_modalities]), CoreSpec(4, (16, 16)))


def random_batch(config, n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for m in config.modalities:
        if m.likelihood == "bernoulli":
            batch[m.name] = (torch.rand(n, *m.shape, generator=g) > 0.5).float()
        elif m.likelihood == "categorical":
            batch[m.name] = torch.nn.functional.one_hot(torch.randint(0, m.shape[0], (n,), generator=g), m.shape[0]).float()
        else:
            batch[m.name] = torch.randn(n, *m.shape, generator=g)
    return batch


def briefly_trained(config, steps=3, n=16):
    """A model of ``config`` after a few SGD steps on one random batch (non-trivial BatchNorm running statistics),
    left in train mode, and that batch."""
    torch.manual_seed(0)
    model = build_model(config)
    batch = random_batch(model.config, n=n)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        model.loss(batch, epoch=1.0).loss.backward()
        opt.step()
    return model, batch


def test_gaussian_kl_and_log_prob_match_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mu_q, mu_p, lv_q, lv_p, z = (torch.randn(7, 5, generator=g) for _ in range(5))
    expected = kl_divergence(Normal(mu_q, (0.5 * lv_q).exp()), Normal(mu_p, (0.5 * lv_p).exp())).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, mu_p, lv_p), expected)
    torch.testing.assert_close(standard_normal_kl(mu_q, lv_q), gaussian_kl(mu_q, lv_q, torch.zeros(5), torch.zeros(5)))
    torch.testing.assert_close(gaussian_log_prob(z, mu_q, lv_q), Normal(mu_q, (0.5 * lv_q).exp()).log_prob(z).sum(-1))


def test_product_of_experts_is_the_closed_form_product_of_gaussians():
    mu1, mu2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]])
    v1, v2 = torch.tensor([[0.5, 2.0]]), torch.tensor([[1.5, 0.25]])
    mu, logvar = product_of_experts([(mu1, v1.log()), (mu2, v2.log())], (-12.0, 8.0), prior=True)
    precision = 1 / v1 + 1 / v2 + 1.0
    torch.testing.assert_close(logvar.exp(), 1 / precision)
    torch.testing.assert_close(mu, (mu1 / v1 + mu2 / v2) / precision)
    # clamping keeps extreme experts finite: a huge log-variance is capped, not overflowing
    mu, logvar = product_of_experts([(mu1, torch.full_like(v1, 1e4)), (mu2, torch.full_like(v1, -1e4))], (-12.0, 8.0), False)
    assert torch.isfinite(mu).all() and torch.isfinite(logvar).all()


def test_modality_dropout_never_drops_everything_and_has_the_conditional_rate():
    torch.manual_seed(0)
    model = MHVAE(small_config())
    keep = model.sample_keep_mask(200_000)
    assert keep.any(dim=1).all()
    # each kept with prob 1/2, conditioned on at least one kept: P(keep_i) = 0.5 / 0.75
    np.testing.assert_allclose(keep.float().mean(0).numpy(), [2 / 3, 2 / 3], atol=0.01)
    single = MHVAE(small_config(n_modalities=1, dropout=0.9))
    assert single.sample_keep_mask(1000).all()


def test_encoding_a_subset_equals_dropping_the_missing_representations():
    torch.manual_seed(0)
    model = MHVAE(small_config(n_modalities=3)).eval()
    batch = random_batch(model.config)
    x = model.prepare(batch)
    hidden = {n: model.encoders[n](v) for n, v in x.items()}
    keep = torch.tensor([[True, False, True]]).expand(16, 3)
    via_mask = model.core_posterior(hidden, keep)
    via_subset = model.encode({"image": batch["image"], "sound": batch["sound"]})
    for a, b in zip(via_mask, via_subset):
        torch.testing.assert_close(a, b)


def test_mhvae_loss_is_the_weighted_elbo_with_warmups():
    torch.manual_seed(0)
    cfg = small_config(dropout=0.0)
    cfg = cfg.replace_modality("image", recon_weight=2.0, kl_weight=3.0)
    cfg = ModelConfig(cfg.kind, cfg.modalities, CoreSpec(4, (16, 16), kl_weight=0.5), 10.0, 20.0)
    model = MHVAE(cfg).eval()  # eval: no MRD, so the terms are reproducible with the same seed
    batch = random_batch(cfg)
    torch.manual_seed(5)
    out = model.loss(batch, epoch=5.0)
    t = out.terms
    assert out.schedule == {"beta_m": 0.5, "beta_c": 0.25}
    assert not any("beta" in k or "scale" in k for k in t)  # warm-up weights are not terms
    expected = -(2.0 * t["rec/image"] + t["rec/label"] - 0.5 * (3.0 * t["kl/image"] + t["kl/label"]) - 0.25 * 0.5 * t["kl/core"])
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-4)
    torch.manual_seed(5)
    torch.testing.assert_close(model.elbo(batch).mean(), t["elbo"], rtol=1e-5, atol=1e-4)


def test_warmup_schedule():
    assert warmup_scale(0, 100) == 0.0
    assert warmup_scale(50, 100) == 0.5
    assert warmup_scale(250, 100) == 1.0
    assert warmup_scale(3, 0) == 1.0


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
@pytest.mark.parametrize("n_modalities", [1, 2, 3])
def test_every_model_trains_on_any_number_of_modalities(kind, n_modalities):
    torch.manual_seed(0)
    model = build_model(small_config(kind, n_modalities))
    batch = random_batch(model.config, n=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(60):
        out = model.loss(batch, epoch=step / 10)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
        assert all(torch.isfinite(v) for v in out.terms.values())
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 1.0
    model.eval()
    names = model.modality_names
    mu, logvar = model.encode({names[-1]: batch[names[-1]]})
    assert mu.shape == (64, model.top_latent_dim) and logvar.shape == mu.shape
    generated = model.generate({names[0]: batch[names[0]][:4]}, n_per_input=3)
    assert {k: v.shape[0] for k, v in generated.items()} == {n: 12 for n in names}
    samples = model.sample(5)
    for m in model.config.modalities:
        assert samples[m.name].shape == (5, *m.shape)
        if m.likelihood == "categorical":
            torch.testing.assert_close(samples[m.name].sum(-1), torch.ones(5))


def test_decoded_means_are_in_raw_units():
    cfg = presets.config("pendulum_sound", normalisation={"sound": {"mean": np.full((2, 3, 2), 5.0), "std": 2.0}})
    model = build_model(cfg).eval()
    params = model.decode_params(torch.zeros(3, model.top_latent_dim))
    torch.testing.assert_close(model.decode(torch.zeros(3, model.top_latent_dim))["sound"], params["sound"] * 2.0 + 5.0)
    x = torch.full((3, 2, 3, 2), 7.0)
    torch.testing.assert_close(model.prepare({"sound": x})["sound"], torch.ones(3, 2, 3, 2))


def test_bad_inputs_get_clear_errors():
    model = MHVAE(small_config()).eval()
    good = random_batch(model.config, n=4)
    with pytest.raises(ValueError, match="unknown modality 'audio'"):
        model.encode({"audio": good["image"]})
    with pytest.raises(ValueError, match="empty subset"):
        model.encode({})
    with pytest.raises(ValueError, match=r"expected shape \(batch, 1, 8, 8\)"):
        model.encode({"image": good["image"][0]})
    with pytest.raises(TypeError, match="floating-point"):
        model.encode({"image": good["image"].long()})
    bad = good["image"].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        model.encode({"image": bad})
    with pytest.raises(ValueError, match="batch size"):
        model.encode({"image": good["image"], "label": good["label"][:2]})
    with pytest.raises(ValueError, match="lacks modality 'label'"):
        model.loss({"image": good["image"]})
    with pytest.raises(ValueError, match="unknown likelihood"):
        ModalitySpec("x", (3,), "poisson", 2)
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({**model.config.to_dict(), "latnet_dim": 3})


@pytest.mark.skipif(not (SHARED / "MNIST" / "raw").is_dir(), reason="real MNIST not beside the repo (../shared/data)")
def test_mvae_trains_without_nans_on_real_mnist():
    from mhvae_perception import data

    train = data.load_dataset("mnist").train  # dynamically binarised training split
    torch.manual_seed(0)
    model = presets.build("mnist", "mvae", warmup_core_epochs=1.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    batches = train.iter_batches(64, shuffle=True, generator=torch.Generator().manual_seed(0), limit=6400)
    for step, batch in enumerate(batches):
        out = model.loss(batch, epoch=step / 100)
        assert torch.isfinite(out.loss), f"NaN/inf loss at step {step}: {out.terms}"
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_inference_copy_folds_batchnorm_without_changing_outputs():
    from mhvae_perception.models.networks import fused_for_inference

    torch.manual_seed(0)
    model = presets.build("mnist")
    batch = random_batch(presets.config("mnist"), n=32)
    for _ in range(3):  # give BatchNorm non-trivial running statistics
        model.loss(batch)
    model.eval()
    fused = fused_for_inference(model)
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    z = torch.randn(5, model.top_latent_dim)
    for name in model.modality_names:
        torch.testing.assert_close(fused.decode(z)[name], model.decode(z)[name], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fused.encode(batch)[0], model.encode(batch)[0], rtol=1e-4, atol=1e-5)


def test_inference_api_has_eval_semantics_and_restores_training_mode():
    torch.manual_seed(0)
    model = presets.build("mnist")
    batch = random_batch(presets.config("mnist"), n=16)
    model.loss(batch)  # update BatchNorm running statistics once
    model.eval()
    expected = model.encode(batch)[0]
    model.train()
    mu, _ = model.encode(batch)
    assert model.training and not mu.requires_grad
    torch.testing.assert_close(mu, expected)  # running statistics used, not the batch's
    one = model.encode({k: v[:1] for k, v in batch.items()})[0]
    torch.testing.assert_close(one, expected[:1])  # a batch of one works and agrees
