"""Importance-sampled log-likelihoods against closed forms, and their basic properties for every model."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal

from mhvae_perception import MHVAE, CoreSpec, ModalitySpec, ModelConfig, Query, build_model, estimators
from mhvae_perception.models.distributions import gaussian_log_prob

from test_model import random_batch, small_config


class CountingModel(nn.Module):
    """Returns known log-weights 0, 1, 2, ... in the order they are requested, to check the chunking."""

    modality_names = ("x",)

    def __init__(self):
        super().__init__()
        self.next = 0
        self.requested = []

    def log_importance_weights(self, batch, queries, num_samples):
        self.requested.append(num_samples)
        w = torch.arange(self.next, self.next + num_samples, dtype=torch.float64)[:, None].expand(num_samples, 2)
        self.next += num_samples
        return {q: w for q in queries}


def test_chunked_accumulation_is_exact_logsumexp():
    model = CountingModel()
    q = Query(("x",), ("x",))
    out = estimators.log_likelihoods(model, {"x": torch.zeros(2, 1)}, [q], num_samples=10, chunk_size=3)
    assert model.requested == [3, 3, 3, 1]
    expected = math.log(sum(math.exp(k) for k in range(10)) / 10)
    np.testing.assert_allclose(out[q].numpy(), [expected, expected], rtol=1e-12)


class LinearGaussianPosteriorModel(nn.Module):
    """z ~ N(0, 1), x | z ~ N(a z, s^2): the proposal is the exact posterior, so every weight is log p(x)."""

    modality_names = ("x",)
    a, s = 1.7, 0.6

    def log_importance_weights(self, batch, queries, num_samples):
        x = batch["x"]
        post_var = 1 / (1 + self.a ** 2 / self.s ** 2)
        post_mu = post_var * self.a * x / self.s ** 2
        z = post_mu + post_var ** 0.5 * torch.randn(num_samples, *x.shape, dtype=x.dtype)
        log_joint = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z)) + \
            gaussian_log_prob(x, self.a * z, torch.full_like(z, 2 * math.log(self.s)))
        log_q = gaussian_log_prob(z, post_mu, torch.full_like(z, math.log(post_var)))
        return {q: log_joint - log_q for q in queries}


def test_estimator_is_exact_when_the_proposal_is_the_true_posterior():
    torch.manual_seed(0)
    x = torch.tensor([[-2.0], [0.3], [1.9]], dtype=torch.float64)
    model = LinearGaussianPosteriorModel()
    q = Query(("x",), ("x",))
    exact = gaussian_log_prob(x, torch.zeros_like(x), torch.full_like(x, math.log(model.a ** 2 + model.s ** 2)))
    for k in (1, 7, 100):
        torch.testing.assert_close(estimators.log_likelihoods(model, {"x": x}, [q], k, chunk_size=4)[q], exact)


def linear_mhvae():
    """An MHVAE whose networks are linear maps and whose likelihoods are Gaussian: log p(x_T) is closed-form."""
    mods = (ModalitySpec("a", (3,), "gaussian", 2, "linear", dropout=0.5),
            ModalitySpec("b", (2,), "gaussian", 1, "linear", dropout=0.5))
    model = MHVAE(ModelConfig("mhvae", mods, CoreSpec(2, (), batchnorm=False)))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, head in model.prior_heads.items():  # p(z_i | z_c) = N(A z_c + b, diag(exp(c)))
            d = head.out_features // 2
            head.weight.copy_(torch.cat([torch.randn(d, 2, generator=g), torch.zeros(d, 2)]))
            head.bias.copy_(torch.cat([0.3 * torch.randn(d, generator=g), torch.full((d,), -0.5)]))
        for name, dec in model.decoders.items():  # p(x_i | z_i) = N(C z_i + d, diag(exp(s)))
            lin = dec[0]
            lin.weight.copy_(torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g))
            model.likelihoods[name].logvar.fill_(-1.0)
        # broad proposals: q(z_c | .) = N(0, 2 I), q(z_i | x_i) = N(0, 2 I)
        for lin in [model.core_encoder[-1], *model.posterior_heads.values()]:
            lin.weight.zero_()
            lin.bias.copy_(torch.cat([torch.zeros(lin.out_features // 2), torch.full((lin.out_features // 2,), math.log(2.0))]))
    return model.eval()


def closed_form_log_p(model, x, targets):
    """log p(x_T) of the linear-Gaussian hierarchy, from its joint Gaussian over all observed features."""
    means, blocks_a, noise = [], [], []
    with torch.no_grad():
        for name in model.modality_names:
            head, dec = model.prior_heads[name], model.decoders[name][0]
            d = head.out_features // 2
            A, b, c = head.weight[:d].double(), head.bias[:d].double(), head.bias[d:].double()
            C, dd = dec.weight.double(), dec.bias.double()
            s = model.likelihoods[name].logvar.double()
            means.append(C @ b + dd)
            blocks_a.append(C @ A)
            noise.append(C @ torch.diag(c.exp()) @ C.T + torch.diag(s.exp()))
    sizes = [m.shape[0] for m in means]
    mean = torch.cat(means)
    load = torch.cat(blocks_a)
    cov = load @ load.T + torch.block_diag(*noise)
    index = torch.cat([torch.arange(sum(sizes[:i]), sum(sizes[:i + 1])) for i, n in enumerate(model.modality_names)
                       if n in targets])
    value = torch.cat([x[n].double() for n in model.modality_names if n in targets], dim=-1)
    return MultivariateNormal(mean[index], cov[index][:, index]).log_prob(value)


@pytest.mark.parametrize("inputs,targets", [(("a",), ("a",)), (("a",), ("a", "b")), (("b",), ("a", "b")),
                                            (("a", "b"), ("a", "b")), (("b",), ("a",))])
def test_mhvae_estimator_converges_to_the_closed_form(inputs, targets):
    torch.manual_seed(0)
    model = linear_mhvae()
    z = torch.randn(6, 2)
    with torch.no_grad():  # draw data from the model itself
        x = {}
        for name, (mu, logvar) in model.modality_priors(z).items():
            zi = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            mean = model.decoders[name](zi)
            x[name] = mean + (0.5 * model.likelihoods[name].logvar).exp() * torch.randn_like(mean)
    exact = closed_form_log_p(model, x, targets).float()
    q = Query(inputs, targets)
    errors = {k: (estimators.log_likelihoods(model, x, [q], k)[q] - exact).abs().mean().item()
              for k in (10, 200_000)}
    assert errors[200_000] < 0.05, errors
    assert errors[200_000] < errors[10], errors


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
def test_estimate_is_above_the_elbo_and_grows_with_k(kind):
    torch.manual_seed(0)
    model = build_model(small_config(kind))
    batch = random_batch(model.config, n=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(100):  # a little training, so that the posterior is informative
        opt.zero_grad()
        model.loss(batch, epoch=1.0).loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        elbo = torch.stack([model.elbo(batch) for _ in range(50)]).mean(0)
    q = Query(("image", "label"), ("image", "label"))
    est = {k: estimators.log_likelihoods(model, batch, [q], k)[q].mean().item() for k in (1, 10, 1000)}
    assert abs(est[1] - elbo.mean().item()) < 1.0  # K = 1 is an unbiased estimate of the ELBO
    assert est[10] > elbo.mean().item()
    assert est[1000] > est[10]


def test_paper_rows_share_samples_and_relate_consistently():
    torch.manual_seed(0)
    model = build_model(small_config("mhvae")).eval()
    batch = random_batch(model.config, n=8)
    rows = estimators.paper_rows(model, batch, num_samples=200)
    assert [r[0] for r in estimators.PAPER_ROWS + estimators.EXTRA_ROWS] == list(rows)
    for value in rows.values():
        assert value.shape == (8,) and torch.isfinite(value).all()
    # log p(x1 | x2) <= 0 is not guaranteed for a density, but for binary x1 (a pmf) it is
    assert (rows["log p(x1|x2) | x2"] < 0).all()
    # the order of subsets in a query does not matter
    a = Query(("label", "image"), ("label", "image"))
    b = Query(("image", "label"), ("image", "label"))
    torch.manual_seed(1)
    ra = estimators.log_likelihoods(model, batch, [a], 50)[a]
    torch.manual_seed(1)
    rb = estimators.log_likelihoods(model, batch, [b], 50)[b]
    torch.testing.assert_close(ra, rb)


def test_estimator_memory_is_bounded_by_the_chunk():
    model = build_model(small_config("mhvae")).eval()
    batch = random_batch(model.config, n=4)
    calls = []
    original = model.log_importance_weights

    def spy(b, q, k):
        calls.append(k)
        return original(b, q, k)

    model.log_importance_weights = spy
    estimators.log_likelihoods(model, batch, [Query(("image",), ("image",))], num_samples=5000, chunk_size=256)
    assert max(calls) == 256 and sum(calls) == 5000


def test_paper_rows_refuse_questions_they_cannot_answer():
    one = build_model(small_config("mhvae", n_modalities=1)).eval()
    with pytest.raises(ValueError, match="needs a model with two modalities"):
        estimators.paper_rows(one, random_batch(one.config, n=2), num_samples=2)
    two = build_model(small_config("mhvae")).eval()
    batch = random_batch(two.config, n=2)
    for x1, x2 in (("image", "image"), ("image", "sound")):
        with pytest.raises(ValueError, match="two different modalities"):
            estimators.paper_rows(two, batch, num_samples=2, x1=x1, x2=x2)
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        estimators.paper_rows(two, batch, num_samples=0)


def _modes(model):
    return [m.training for m in model.modules()]


@pytest.mark.parametrize("kind", ["mhvae", "jmvae", "mvae"])
def test_estimators_and_inference_methods_give_back_the_callers_mode(kind):
    """In training mode, in eval mode and partly frozen, every estimator and inference method leaves each
    submodule in the mode it found it (and the estimate does not depend on the mode)."""
    torch.manual_seed(0)
    model = build_model(small_config(kind))
    batch = random_batch(model.config, 6)
    names = model.modality_names
    query = Query(names, names)
    first = next(m for m in model.modules() if m is not model)
    estimates = []
    for setup in (lambda: model.train(), lambda: model.eval(), lambda: (model.train(), first.eval())):
        setup()
        before = _modes(model)
        torch.manual_seed(1)
        estimates.append(estimators.log_likelihoods(model, batch, [query], num_samples=8)[query])
        assert _modes(model) == before
        model.log_importance_weights(batch, [query], 4)
        model.encode(batch)
        model.reconstruct(batch)
        model.generate({names[0]: batch[names[0]]})
        model.sample(3)
        model.elbo(batch)
        estimators.paper_rows(model, batch, num_samples=4) if len(names) == 2 else None
        assert _modes(model) == before
    torch.testing.assert_close(estimates[0], estimates[1])


def test_estimates_at_several_k_are_the_prefixes_of_one_stream():
    """Known log-weights 0, 1, 2, ...: the estimate at K is log mean exp of the stream's first K weights, chunks
    end at every K asked for, and one K gives exactly the plain call's chunks."""
    model = CountingModel()
    q = Query(("x",), ("x",))
    curve = estimators.log_likelihoods_at(model, {"x": torch.zeros(2, 1)}, [q], [10, 3], chunk_size=4)
    assert model.requested == [3, 4, 3]
    for k in (3, 10):
        expected = math.log(sum(math.exp(i) for i in range(k)) / k)
        np.testing.assert_allclose(curve[k][q].numpy(), [expected, expected], rtol=1e-12)
    plain = CountingModel()
    estimators.log_likelihoods(plain, {"x": torch.zeros(2, 1)}, [q], num_samples=10, chunk_size=4)
    assert plain.requested == [4, 4, 2]


def test_paper_rows_at_k_match_paper_rows():
    model = build_model(small_config("mhvae")).eval()
    batch = random_batch(model.config, 5)
    torch.manual_seed(4)
    curve = estimators.paper_rows_at(model, batch, [6], chunk_size=3)
    torch.manual_seed(4)
    plain = estimators.paper_rows(model, batch, 6, chunk_size=3)
    assert set(curve[6]) == set(plain)
    for row in plain:
        torch.testing.assert_close(curve[6][row], plain[row])
