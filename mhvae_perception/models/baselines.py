"""Single-latent baselines with the MHVAE's interface: JMVAE-kl (Suzuki et al. 2016) and MVAE (Wu & Goodman 2018).

Both use the same modality networks as the MHVAE (``ModalitySpec.network``) around one latent z of size
``config.core.latent_dim``; the modality ``latent_dim`` fields are not used. The KL terms warm up linearly
over ``config.warmup_core_epochs`` epochs (U_b).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .distributions import gaussian_kl, gaussian_log_prob, reparameterise, standard_normal_kl, standard_normal_log_prob
from .base import (Batch, LossOutput, MultimodalVAE, Query, canonical_queries, evaluation, inference,
                    warmup_scale)
from .networks import build_modality_networks, mlp_with_head
from .specs import ModelConfig


class SingleLatentVAE(MultimodalVAE):
    """Shared parts: one decoder per modality from z, and the importance weights of a one-level model."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.top_latent_dim = config.core.latent_dim
        self.decoders = nn.ModuleDict()
        for m in config.modalities:
            self.decoders[m.name] = build_modality_networks(m.network, m.shape, m.network_kwargs).make_decoder(
                config.core.latent_dim)

    def decode_params(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: self.decoders[n](z) for n in self.modality_names}

    def subset_elbo(self, x: dict[str, torch.Tensor], kl_scale: float = 1.0, weighted: bool = False
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """ELBO of the modalities in ``x`` (one sample), its terms, and the posterior used. ``weighted``
        applies λ_i and β to the terms (the training objective); ``kl_scale`` is the warm-up factor."""
        mu, logvar = self.posterior(x)
        z = reparameterise(mu, logvar)
        terms = {f"rec/{n}": self.likelihoods[n].log_prob(self.decoders[n](z), v) for n, v in x.items()}
        terms["kl"] = standard_normal_kl(mu, logvar)
        recon_weights = {n: (self.config.modality(n).recon_weight if weighted else 1.0) for n in x}
        kl_weight = kl_scale * (self.config.core.kl_weight if weighted else 1.0)
        value = sum(recon_weights[n] * terms[f"rec/{n}"] for n in x) - kl_weight * terms["kl"]
        return value, terms, (mu, logvar)

    @evaluation
    def elbo(self, batch: Batch) -> torch.Tensor:
        """Unweighted single-sample ELBO per data point (eval mode whatever the model's mode)."""
        return self.subset_elbo(self.prepare(batch, self.modality_names))[0]

    @inference
    def log_importance_weights(self, batch: Batch, queries: Sequence[Query], num_samples: int
                               ) -> dict[Query, torch.Tensor]:
        """z ~ q(z | inputs); log w = log p(z) + sum_{i in targets} log p(x_i | z) - log q(z | inputs).
        Decoder passes are shared between queries with the same inputs."""
        originals, canon = list(queries), canonical_queries(queries, self.modality_names)
        x = self.prepare(batch, [n for n in self.modality_names if any(n in q.inputs or n in q.targets for q in canon)])
        results: dict[Query, torch.Tensor] = {}
        for inputs in dict.fromkeys(q.inputs for q in canon):
            mu, logvar = self.posterior({n: x[n] for n in inputs})
            z = reparameterise(mu, logvar, num_samples)
            base = standard_normal_log_prob(z) - gaussian_log_prob(z, mu, logvar)
            recon: dict[str, torch.Tensor] = {}
            for q in (q for q in canon if q.inputs == inputs):
                w = base
                for name in q.targets:
                    if name not in recon:
                        recon[name] = self._recon_log_prob(name, z, x[name], self.decoders[name])
                    w = w + recon[name]
                results[q] = w
        return {o: results[q] for o, q in zip(originals, canon)}


class JMVAE(SingleLatentVAE):
    """JMVAE-kl: joint encoder q(z | x_1..x_N), unimodal encoders q(z | x_i) pulled towards it with weight α.

    Subsets that are neither one modality nor all of them are encoded as the product of the unimodal
    experts (the JMVAE paper defines only the joint and the unimodal encoders).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        core = config.core
        self.joint_features = nn.ModuleDict()
        self.unimodal_encoders = nn.ModuleDict()
        total = 0
        for m in config.modalities:
            joint = build_modality_networks(m.network, m.shape, m.network_kwargs)
            self.joint_features[m.name] = joint.encoder
            total += joint.hidden_dim
            single = build_modality_networks(m.network, m.shape, m.network_kwargs)
            self.unimodal_encoders[m.name] = nn.Sequential(single.encoder,
                                                           nn.Linear(single.hidden_dim, 2 * core.latent_dim))
        self.joint_head = mlp_with_head(total, core.hidden, 2 * core.latent_dim, core.activation, core.batchnorm)

    def unimodal_posterior(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split(self.unimodal_encoders[name](x))

    def posterior(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(x) == len(self.modality_names):
            h = torch.cat([self.joint_features[n](x[n]) for n in self.modality_names], dim=-1)
            return self._split(self.joint_head(h))
        if len(x) == 1:
            name, value = next(iter(x.items()))
            return self.unimodal_posterior(name, value)
        experts = [self.unimodal_posterior(n, v) for n, v in x.items()]
        return product_of_experts(experts, self.config.logvar_clamp, prior=False)

    def loss(self, batch: Batch, epoch: float = 0.0) -> LossOutput:
        """-(joint ELBO with warmed-up KL) + α sum_i KL(q(z | x) || q(z | x_i)), batch mean."""
        x = self.prepare(batch, self.modality_names)
        scale = warmup_scale(epoch, self.config.warmup_core_epochs)
        value, terms, (mu, logvar) = self.subset_elbo(x, scale, weighted=True)
        penalty = 0.0
        for name in self.modality_names:
            kl = gaussian_kl(mu, logvar, *self.unimodal_posterior(name, x[name]))
            terms[f"kl_unimodal/{name}"] = kl
            penalty = penalty + kl
        logged = {k: v.mean().detach() for k, v in terms.items()}
        logged["elbo"] = (sum(terms[f"rec/{n}"] for n in self.modality_names) - terms["kl"]).mean().detach()
        return LossOutput((-value + self.config.jmvae_alpha * penalty).mean(), logged, {"beta": scale})


class MVAE(SingleLatentVAE):
    """MVAE: product of Gaussian experts (with a N(0, I) prior expert) computed in precision space with
    clamped log-variances; trained on the joint ELBO plus every unimodal ELBO."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.experts = nn.ModuleDict()
        for m in config.modalities:
            nets = build_modality_networks(m.network, m.shape, m.network_kwargs)
            self.experts[m.name] = nn.Sequential(nets.encoder, nn.Linear(nets.hidden_dim, 2 * config.core.latent_dim))

    def posterior(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        experts = [self._split(self.experts[n](v)) for n, v in x.items()]
        return product_of_experts(experts, self.config.logvar_clamp, prior=True)

    def loss(self, batch: Batch, epoch: float = 0.0) -> LossOutput:
        x = self.prepare(batch, self.modality_names)
        scale = warmup_scale(epoch, self.config.warmup_core_epochs)
        joint, terms, _ = self.subset_elbo(x, scale, weighted=True)
        total = joint
        logged = {k: v.mean().detach() for k, v in terms.items()}
        logged["elbo"] = (sum(terms[f"rec/{n}"] for n in self.modality_names) - terms["kl"]).mean().detach()
        if len(self.modality_names) > 1:
            for name in self.modality_names:
                value, uni, _ = self.subset_elbo({name: x[name]}, scale, weighted=True)
                logged[f"elbo_unimodal/{name}"] = (uni[f"rec/{name}"] - uni["kl"]).mean().detach()  # unweighted
                total = total + value
        return LossOutput(-total.mean(), logged, {"beta": scale})


def product_of_experts(experts: Sequence[tuple[torch.Tensor, torch.Tensor]], clamp: tuple[float, float],
                       prior: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of diagonal Gaussians in precision space: T = sum T_i, mu = sum(T_i mu_i) / T.

    Log-variances are clamped to ``clamp`` first, so precisions stay finite and positive; ``prior`` adds
    the N(0, I) expert (precision 1, mean 0)."""
    lo, hi = clamp
    precisions = [torch.exp(-lv.clamp(lo, hi)) for _, lv in experts]
    total = sum(precisions) + (1.0 if prior else 0.0)
    mu = sum(p * m for p, (m, _) in zip(precisions, experts)) / total
    return mu, -torch.log(total)
