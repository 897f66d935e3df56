"""The MHVAE (Vasco, Melo & Paiva 2020): a latent z_i per modality and a core latent z_c above them.

Generative model:  p(z_c) prod_i p(z_i | z_c) p(x_i | z_i),  p(z_c) = N(0, I).
Inference model:   q(z_c | h^d) prod_i q(z_i | x_i),  h^d = d * h  (modality representation dropout).

Mask convention: ``keep[b, i] == True`` means modality i's hidden representation h_i is kept for data point
b; ``False`` means it is *dropped*, i.e. replaced by zeros before the core encoder. Encoding from a subset of
modalities is exactly the same operation with the absent modalities dropped.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .base import Batch, LossOutput, MultimodalVAE, Query, canonical_queries, evaluation, inference, warmup_scale
from .distributions import gaussian_kl, gaussian_log_prob, reparameterise, standard_normal_kl, standard_normal_log_prob
from .networks import build_modality_networks, mlp, mlp_with_head
from .specs import ModelConfig
from .subsets import keep_mask_from_thresholds, keep_thresholds, mask_dtype


class MHVAE(MultimodalVAE):
    """Multimodal hierarchical VAE with modality representation dropout (any number of modalities)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.top_latent_dim = config.core.latent_dim
        core = config.core
        self.encoders = nn.ModuleDict()
        self.posterior_heads = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.prior_heads = nn.ModuleDict()
        hidden_total = 0
        for m in config.modalities:
            nets = build_modality_networks(m.network, m.shape, m.network_kwargs)
            self.encoders[m.name] = nets.encoder
            self.posterior_heads[m.name] = nn.Linear(nets.hidden_dim, 2 * m.latent_dim)
            self.decoders[m.name] = nets.make_decoder(m.latent_dim)
            hidden_total += nets.hidden_dim
        self.core_encoder = mlp_with_head(hidden_total, core.hidden, 2 * core.latent_dim, core.activation,
                                          core.batchnorm)
        self.core_decoder = (mlp([core.latent_dim, *core.hidden[::-1]], core.activation, core.batchnorm)
                             if core.hidden else nn.Identity())
        for m in config.modalities:
            self.prior_heads[m.name] = nn.Linear(core.hidden[0] if core.hidden else core.latent_dim, 2 * m.latent_dim)
        self.hidden_dims = {n: self.posterior_heads[n].in_features for n in self.modality_names}
        self.register_buffer("drop_probs", torch.tensor([m.dropout for m in config.modalities]))
        self._place_keep_thresholds()

    def _place_keep_thresholds(self) -> None:
        """MRD's sampler thresholds, computed from the configuration on the model's device (not in the state dict):
        a training step then draws its mask without a check on tensor values (a graph break when compiled) and
        without a copy from the host (which makes a GPU step wait)."""
        device = self.drop_probs.device
        self._keep_thresholds = tuple(t.to(device=device, dtype=mask_dtype(device))
                                      for t in keep_thresholds([m.dropout for m in self.config.modalities]))

    def _apply(self, fn, recurse: bool = True):
        """``Module.to`` / ``cuda`` / ...: the thresholds follow the model's device."""
        super()._apply(fn, recurse)
        self._place_keep_thresholds()
        return self

    # ------------------------------------------------------------ pieces
    def modality_posterior(self, name: str, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """h_i and (mu, logvar) of q(z_i | x_i) for a normalised batch ``x``."""
        h = self.encoders[name](x)
        return h, self._split(self.posterior_heads[name](h))

    def core_posterior(self, hidden: Mapping[str, torch.Tensor], keep: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z_c | h^d): absent modalities and those with ``keep[:, i] == False`` contribute zeros."""
        return self._split(self.core_encoder(self._core_input(hidden, keep)))

    def _core_input(self, hidden: Mapping[str, torch.Tensor], keep: torch.Tensor | None = None) -> torch.Tensor:
        """h^d, the core encoder's input: the h_i in modality order, absent or dropped ones zeroed."""
        ref = next(iter(hidden.values()))
        parts = []
        for i, name in enumerate(self.modality_names):
            if name in hidden:
                h = hidden[name]
                if keep is not None:
                    h = h * keep[:, i:i + 1].to(h.dtype)
            else:
                h = ref.new_zeros(ref.shape[0], self.hidden_dims[name])
            parts.append(h)
        return torch.cat(parts, dim=-1)

    def modality_priors(self, z_c: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """(mu, logvar) of p(z_i | z_c) for every modality; ``z_c`` may have extra leading dimensions."""
        lead = z_c.shape[:-1]
        features = self.core_decoder(z_c.reshape(-1, z_c.shape[-1]))
        out = {}
        for name in self.modality_names:
            mu, logvar = self._split(self.prior_heads[name](features))
            out[name] = (mu.reshape(*lead, -1), logvar.reshape(*lead, -1))
        return out

    def sample_keep_mask(self, batch_size: int) -> torch.Tensor:
        """Modality representation dropout mask (True = kept): each h_i dropped with probability w_i,
        conditioned on at least one kept, sampled exactly in bounded time (the shared sampler of
        :mod:`mhvae_perception.models.subsets`; marginal keep rate (1 - w_i) / P(at least one kept))."""
        return keep_mask_from_thresholds(self._keep_thresholds, batch_size, self.drop_probs.device)

    # ------------------------------------------------------------ interface
    def posterior(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z_c | h^d) with the modalities absent from the prepared batch ``x`` dropped."""
        return self.core_posterior({n: self.encoders[n](v) for n, v in x.items()})

    def decode_params(self, z: torch.Tensor, sample_modality_latents: bool = False) -> dict[str, torch.Tensor]:
        out = {}
        for name, (mu, logvar) in self.modality_priors(z).items():
            z_i = reparameterise(mu, logvar) if sample_modality_latents else mu
            out[name] = self.decoders[name](z_i)
        return out

    @inference
    def generate(self, batch: Batch, n_per_input: int = 1) -> dict[str, torch.Tensor]:
        """z_c ~ q(z_c | given), z_i ~ p(z_i | z_c), decode every modality (cross-modal generation)."""
        mu, logvar = self.encode(batch)
        z_c = reparameterise(mu, logvar, n_per_input).reshape(-1, mu.shape[-1])
        params = self.decode_params(z_c, sample_modality_latents=True)
        return {n: self.denormalise(n, self.likelihoods[n].mean(p)) for n, p in params.items()}

    def _terms(self, x: dict[str, torch.Tensor], keep: torch.Tensor | None, agreement: bool = False
               ) -> dict[str, torch.Tensor]:
        """Per-data-point ELBO pieces with one reparameterised sample each (all modalities present).

        With ``agreement``, also ``agree/<m>`` = KL(stopgrad(q(z_c | all h)) || q(z_c | h_m only)). The core
        encoder then runs once on the MRD input, the N single-modality inputs and the all-modality input
        stacked along the batch, so that BatchNorm sees one batch and updates its statistics once per step.
        """
        hidden, terms = {}, {}
        posteriors = {}
        for name in self.modality_names:
            hidden[name], posteriors[name] = self.modality_posterior(name, x[name])
        if agreement:
            inputs = [self._core_input(hidden, keep), *(self._core_input({n: hidden[n]}) for n in self.modality_names),
                      self._core_input(hidden)]
            mus, logvars = (t.split(inputs[0].shape[0]) for t in self._split(self.core_encoder(torch.cat(inputs))))
            mu_c, logvar_c = mus[0], logvars[0]
            target = (mus[-1].detach(), logvars[-1].detach())  # the all-modality posterior is a fixed target
            for i, name in enumerate(self.modality_names):
                terms[f"agree/{name}"] = gaussian_kl(*target, mus[1 + i], logvars[1 + i])
        else:
            mu_c, logvar_c = self.core_posterior(hidden, keep)
        z_c = reparameterise(mu_c, logvar_c)
        priors = self.modality_priors(z_c)
        for name in self.modality_names:
            mu, logvar = posteriors[name]
            z = reparameterise(mu, logvar)
            terms[f"rec/{name}"] = self.likelihoods[name].log_prob(self.decoders[name](z), x[name])
            terms[f"kl/{name}"] = gaussian_kl(mu, logvar, *priors[name])
        terms["kl/core"] = standard_normal_kl(mu_c, logvar_c)
        return terms

    def loss(self, batch: Batch, epoch: float = 0.0) -> LossOutput:
        """Negative weighted ELBO (paper eq. 13), batch mean, with MRD in training mode and linear warm-ups.

        With ``config.agreement_weight`` γ > 0 (an extension beyond the paper, in the spirit of the authors'
        follow-up alignment term; off by default) the loss adds
        γ · Σ_i KL(stopgrad(q(z_c | all h)) ‖ q(z_c | h_i only)), batch mean, logged as ``agree/<m>``: it pulls
        each single-modality core posterior towards the all-modality one without moving the latter. The
        direction is JMVAE-kl's (the single-sensor posterior must cover the joint one): the reverse,
        KL(q(z_c | h_i) ‖ q(z_c | all h)), was measured to explode (10^4 nats) as the joint posterior sharpens and
        to ruin the cross-sensor agreement it was meant to give (docs/TRANSFER.md, sweep).
        """
        x = self.prepare(batch, self.modality_names)
        keep = self.sample_keep_mask(next(iter(x.values())).shape[0]) if self.training else None
        gamma = self.config.agreement_weight
        terms = self._terms(x, keep, agreement=gamma > 0)
        beta_m = warmup_scale(epoch, self.config.warmup_modality_epochs)
        beta_c = warmup_scale(epoch, self.config.warmup_core_epochs)
        objective = -self.config.core.kl_weight * beta_c * terms["kl/core"]
        for m in self.config.modalities:
            objective = objective + m.recon_weight * terms[f"rec/{m.name}"] - m.kl_weight * beta_m * terms[f"kl/{m.name}"]
        if gamma > 0:
            objective = objective - gamma * sum(terms[f"agree/{n}"] for n in self.modality_names)
        logged = {k: v.mean().detach() for k, v in terms.items()}
        logged["elbo"] = sum(terms[f"rec/{n}"] - terms[f"kl/{n}"] for n in self.modality_names).mean().detach() \
            - logged["kl/core"]
        return LossOutput(-objective.mean(), logged, {"beta_m": beta_m, "beta_c": beta_c})

    @evaluation
    def elbo(self, batch: Batch) -> torch.Tensor:
        """Unweighted single-sample ELBO of log p(x_1..x_N) per data point, every modality kept
        (evaluated in eval mode whatever the model's mode)."""
        terms = self._terms(self.prepare(batch, self.modality_names), None)
        return sum(terms[f"rec/{n}"] - terms[f"kl/{n}"] for n in self.modality_names) - terms["kl/core"]

    @inference
    def log_importance_weights(self, batch: Batch, queries: Sequence[Query], num_samples: int
                               ) -> dict[Query, torch.Tensor]:
        """Two-level importance weights for every query, sharing samples and decoder passes.

        Proposal for inputs S and targets T: z_c ~ q(z_c | h_S) (absent h zeroed, as under MRD);
        z_i ~ q(z_i | x_i) for i in T ∩ S; z_i ~ p(z_i | z_c) for i in T \\ S. Weight:
        log p(z_c) - log q(z_c|S) + sum_{i in T∩S} [log p(z_i|z_c) + log p(x_i|z_i) - log q(z_i|x_i)]
        + sum_{i in T\\S} log p(x_i|z_i)   (p(z_i|z_c) of the model and of the proposal cancel exactly).
        Samples z_i ~ q(z_i | x_i) and their log p(x_i|z_i) are drawn once and shared by every query that
        uses them, so the decoder runs once per modality and input set.
        """
        K = num_samples
        originals, queries = list(queries), canonical_queries(queries, self.modality_names)
        # Every loop below runs in the model's modality order (never in set order, which follows
        # PYTHONHASHSEED): the random draws, and so the estimates, are the same in every process.
        order = self.modality_names
        needed = [n for n in order if any(n in q.inputs or n in q.targets for q in queries)]
        x = self.prepare(batch, needed)
        encoded = {n: self.modality_posterior(n, x[n]) for n in order if any(n in q.inputs for q in queries)}
        shared: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        for name in (n for n in order if any(n in q.targets and n in q.inputs for q in queries)):
            mu, logvar = encoded[name][1]
            z = reparameterise(mu, logvar, K)
            shared[name] = (z, gaussian_log_prob(z, mu, logvar), self._recon_log_prob(name, z, x[name], self.decoders[name]))
        results: dict[Query, torch.Tensor] = {}
        for inputs in dict.fromkeys(q.inputs for q in queries):
            mu_c, logvar_c = self.core_posterior({n: encoded[n][0] for n in inputs})
            z_c = reparameterise(mu_c, logvar_c, K)
            base = standard_normal_log_prob(z_c) - gaussian_log_prob(z_c, mu_c, logvar_c)
            priors = self.modality_priors(z_c)
            from_prior: dict[str, torch.Tensor] = {}
            for q in (q for q in queries if q.inputs == inputs):
                w = base
                for name in q.targets:
                    if name in inputs:
                        z, log_q, log_px = shared[name]
                        w = w + gaussian_log_prob(z, *priors[name]) + log_px - log_q
                    else:
                        if name not in from_prior:
                            z = reparameterise(*priors[name])
                            from_prior[name] = self._recon_log_prob(name, z, x[name], self.decoders[name])
                        w = w + from_prior[name]
                results[q] = w
        return {o: results[q] for o, q in zip(originals, queries)}
