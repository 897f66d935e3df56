"""The shared "at least one survives" sampler: exact conditional law, bounded time at p -> 1, the parser."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mhvae_perception.models.subsets import (keep_thresholds, parse_failure_probs, sample_keep, sample_keep_mask,
                                      subset_probabilities)


def empirical(mask: np.ndarray) -> dict[tuple[int, ...], float]:
    codes = (mask.astype(np.int64) << np.arange(mask.shape[1])).sum(1)
    freq = np.bincount(codes, minlength=1 << mask.shape[1]) / len(mask)
    return {tuple(i for i in range(mask.shape[1]) if c >> i & 1): f for c, f in enumerate(freq)}


@pytest.mark.parametrize("probs", [[0.3, 0.6, 0.9], [0.5, 0.5], [0.0, 0.7, 0.95, 0.2], [1.0, 0.2], [1.0, 1.0, 1.0],
                                   [1 - 1e-12, 1 - 1e-12]])
def test_subset_frequencies_match_the_closed_form(probs):
    n_draws = 200_000
    closed = subset_probabilities(probs)
    for mask in (sample_keep_mask(torch.tensor(probs), n_draws, generator=torch.Generator().manual_seed(0)).numpy(),
                 sample_keep(probs, np.random.default_rng(0), n_draws)):
        emp = empirical(mask)
        assert emp[()] == 0.0  # never everything dropped
        for subset, p in closed.items():
            # 4.5 binomial standard errors (+ a floor for p = 0): a wrong law misses by far more
            tol = 4.5 * np.sqrt(max(p * (1 - p), 1e-12) / n_draws) + 1e-9
            assert abs(emp[subset] - p) <= tol, (probs, subset, emp[subset], p)


def test_closed_form_marginals():
    p = [0.3, 0.6, 0.9]
    closed = subset_probabilities(p)
    assert sum(closed.values()) == pytest.approx(1.0)
    any_kept = 1 - np.prod(p)
    for i in range(3):
        marginal = sum(v for s, v in closed.items() if i in s)
        assert marginal == pytest.approx((1 - p[i]) / any_kept)


def test_near_one_is_bounded_and_exact():
    # p = 1 - 1e-12 for both: a rejection loop would need ~5e11 draws per step; here one row of uniforms each
    rng = np.random.default_rng(1)
    masks = np.stack([sample_keep([1 - 1e-12, 1 - 1e-12], rng) for _ in range(1000)])
    assert masks.sum(1).min() == 1 and masks.sum(1).max() == 1  # P(both kept) ~ 5e-13
    assert 0.4 < masks[:, 0].mean() < 0.6
    keep, first = keep_thresholds([1 - 1e-12, 1 - 1e-12])
    assert first[0].item() == pytest.approx(0.5, rel=1e-9) and first[1].item() == 1.0


def test_every_probability_one_keeps_exactly_one_uniformly():
    mask = sample_keep([1.0, 1.0, 1.0, 1.0], np.random.default_rng(2), 40_000)
    assert (mask.sum(1) == 1).all()
    np.testing.assert_allclose(mask.mean(0), 0.25, atol=0.01)


def test_draws_consume_one_uniform_per_modality():
    # bounded time: exactly n uniforms per row, whatever the probabilities
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    sample_keep([0.999999, 0.999999, 1.0], a, 10)
    b.random((10, 3))
    assert a.random() == b.random()


def test_model_dropout_uses_the_sampler_on_its_device():
    mask = sample_keep_mask(torch.tensor([0.5, 0.5], dtype=torch.float32), 7)
    assert mask.dtype == torch.bool and mask.shape == (7, 2) and mask.any(1).all()


def test_parser():
    np.testing.assert_array_equal(parse_failure_probs(0.25, ("image", "sound")), [0.25, 0.25])
    np.testing.assert_array_equal(parse_failure_probs({"sound": 1.0}, ("image", "sound")), [0.0, 1.0])
    with pytest.raises(ValueError, match="unknown sensor 'lidar'"):
        parse_failure_probs({"lidar": 0.1}, ("image", "sound"))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        parse_failure_probs(1.5, ("image", "sound"))
    with pytest.raises(TypeError, match="number"):
        parse_failure_probs("0.1", ("image", "sound"))
    with pytest.warns(UserWarning, match="no effect with a single sensor"):
        parse_failure_probs(0.3, ("image",))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        keep_thresholds([0.5, -0.1])
