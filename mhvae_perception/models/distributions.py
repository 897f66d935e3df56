"""Closed-form Gaussian densities and KLs, and the observation likelihoods, all summed per data point."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dimension (broadcasts over leading ones)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (LOG_2PI + z.pow(2)).sum(-1)


def gaussian_kl(mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) for diagonal Gaussians, summed over the last dimension."""
    return 0.5 * (logvar_p - logvar_q + (torch.exp(logvar_q) + (mu_q - mu_p).pow(2)) * torch.exp(-logvar_p)
                  - 1.0).sum(-1)


def standard_normal_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, var) || N(0, I)), summed over the last dimension."""
    return 0.5 * (torch.exp(logvar) + mu.pow(2) - 1.0 - logvar).sum(-1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor, num_samples: int | None = None) -> torch.Tensor:
    """mu + sigma * eps; with ``num_samples`` a leading sample dimension is added."""
    std = torch.exp(0.5 * logvar)
    shape = mu.shape if num_samples is None else (num_samples, *mu.shape)
    return mu + std * torch.randn(shape, dtype=mu.dtype, device=mu.device)


class Likelihood(nn.Module):
    """p(x | decoder output): ``log_prob`` sums over all of a data point's features; ``mean`` gives E[x].

    ``params`` has shape ``(..., *shape)``, ``x`` broadcasts against it (e.g. ``(B, *shape)`` against
    ``(K, B, *shape)``).
    """

    def __init__(self, kind: str, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.kind = kind
        self.event_dims = len(shape)
        if kind == "gaussian":
            # Learned per-feature log-variance on the normalised scale, clamped to keep the density finite.
            self.logvar = nn.Parameter(torch.zeros(shape))

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(-self.event_dims, 0))
        if self.kind == "bernoulli":
            # log Bern(x; sigmoid(l)) = x l - softplus(l), also for x in [0, 1] (= -BCE with logits); written
            # this way the data x broadcasts over the sample dimension without being copied.
            return (x * params).sum(dims) - F.softplus(params).sum(dims)
        if self.kind == "categorical":
            return (x * F.log_softmax(params, dim=-1)).sum(-1)
        logvar = self.logvar.clamp(-7.0, 5.0)
        return -0.5 * (LOG_2PI + logvar + (x - params).pow(2) * torch.exp(-logvar)).sum(dims)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        if self.kind == "bernoulli":
            return torch.sigmoid(params)
        if self.kind == "categorical":
            return torch.softmax(params, dim=-1)
        return params
