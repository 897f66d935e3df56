"""The MHVAE (Vasco, Melo & Paiva 2020) and the interface it shares with the baselines.

Generative model:  p(z_c) prod_i p(z_i | z_c) p(x_i | z_i),  p(z_c) = N(0, I).
Inference model:   q(z_c | h^d) prod_i q(z_i | x_i),  h^d = d * h  (modality representation dropout).

Mask convention: ``keep[b, i] == True`` means modality i's hidden representation h_i is kept for data point
b; ``False`` means it is *dropped*, i.e. replaced by zeros before the core encoder. Encoding from a subset of
modalities is exactly the same operation with the absent modalities dropped.
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .distributions import (Likelihood, gaussian_kl, gaussian_log_prob, reparameterise,
                            standard_normal_kl, standard_normal_log_prob)
from .networks import build_modality_networks, mlp, mlp_with_head
from .specs import ModelConfig, check_subset

Batch = Mapping[str, "torch.Tensor | np.ndarray"]


class Query(NamedTuple):
    """One importance-sampling question: estimate log p(x_targets) with a proposal that sees ``inputs``."""

    inputs: tuple[str, ...]
    targets: tuple[str, ...]


def canonical_queries(queries: Sequence[Query], names: Sequence[str]) -> list[Query]:
    """Checked queries with their subsets in the model's modality order."""
    return [Query(check_subset(q[0], names, "inputs"), check_subset(q[1], names, "targets")) for q in queries]


@dataclass
class LossOutput:
    """What a training loss returns, its parts kept apart.

    ``loss``: the scalar to minimise. ``terms``: detached batch means of the unweighted pieces
    (``rec/<m>``, ``kl/<m>``, ``kl/core``, ``elbo``, ...), never multiplied by a warm-up weight.
    ``schedule``: the warm-up weights in force, by name (``beta_m``, ``beta_c`` for the MHVAE; ``beta`` for
    the baselines).
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    schedule: dict[str, float] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """Everything as floats for a logger: ``{"loss", **terms, "schedule/<name>": ...}``."""
        out = {"loss": float(self.loss.detach())}
        out.update({k: float(v) for k, v in self.terms.items()})
        out.update({f"schedule/{k}": float(v) for k, v in self.schedule.items()})
        return out


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside the block; afterwards every submodule gets back its own mode
    (a model partly frozen in eval mode stays so)."""
    # Only the modules in training mode are switched (and switched back): an eval-mode model costs one walk.
    training = [m for m in module.modules() if m.training]
    for m in training:
        m.training = False
    try:
        yield module
    finally:
        for m in training:
            m.training = True


def evaluation(method):
    """Run a model method with eval-mode semantics (BatchNorm running statistics, no modality dropout)
    whatever mode the model is in, restoring the mode afterwards; gradients still flow."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with eval_mode(self):
            return method(self, *args, **kwargs)

    return wrapper


def inference(method):
    """:func:`evaluation` under ``torch.no_grad``: for encoding, decoding, sampling and estimation."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with eval_mode(self), torch.no_grad():
            return method(self, *args, **kwargs)

    return wrapper


def warmup_scale(epoch: float, warmup_epochs: float) -> float:
    """Linear warm-up from 0 at epoch 0 to 1 at ``warmup_epochs`` (1 throughout when it is 0)."""
    if warmup_epochs <= 0:
        return 1.0
    return float(min(1.0, max(0.0, epoch / warmup_epochs)))


class MultimodalVAE(nn.Module):
    """What every model offers: input checking and normalisation, encode any subset, decode, sample,
    cross-modal generation, a training loss, an ELBO and importance weights for the estimators."""

    top_latent_dim: int

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.modality_names: tuple[str, ...] = config.modality_names
        self.likelihoods = nn.ModuleDict({m.name: Likelihood(m.likelihood, m.shape) for m in config.modalities})
        for m in config.modalities:
            mean, std = (0.0, 1.0) if m.normalisation is None else (m.normalisation.mean, m.normalisation.std)
            mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).expand(m.shape).clone()
            std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).expand(m.shape).clone()
            if not torch.all(std_t > 0):
                raise ValueError(f"modality {m.name!r}: normalisation std must be > 0 everywhere")
            self.register_buffer(f"norm_mean_{m.name}", mean_t)
            self.register_buffer(f"norm_std_{m.name}", std_t)

    # ----------------------------------------------------------------- inputs
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prepare(self, batch: Batch, subset: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Check a batch dict and return it normalised, as float tensors on the model's device.

        Raises a ValueError/TypeError naming the problem for unknown or missing modalities, an empty batch
        dict, wrong shapes or dtypes, mismatched batch sizes and NaN/inf values.
        """
        if not isinstance(batch, Mapping):
            raise TypeError(f"expected a dict of modality name -> batch tensor, got {type(batch).__name__}")
        names = check_subset(tuple(batch), self.modality_names, "the batch")
        if subset is not None:
            missing = [n for n in subset if n not in batch]
            if missing:
                raise ValueError(f"the batch lacks modality {missing[0]!r}, which this call needs")
        out: dict[str, torch.Tensor] = {}
        batch_size = None
        for name in names:
            spec = self.config.modality(name)
            x = batch[name]
            if isinstance(x, np.ndarray):
                x = torch.from_numpy(x)
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"modality {name!r}: expected a tensor or numpy array, got {type(x).__name__}")
            if not x.is_floating_point():
                raise TypeError(f"modality {name!r}: expected floating-point values, got dtype {x.dtype}; "
                                f"convert it with .float() (images in [0, 1], labels one-hot)")
            if tuple(x.shape[1:]) != spec.shape or x.dim() != len(spec.shape) + 1:
                raise ValueError(f"modality {name!r}: expected shape (batch, {', '.join(map(str, spec.shape))}), "
                                 f"got {tuple(x.shape)}; add a batch dimension with x[None] for one observation")
            if batch_size is None:
                batch_size = x.shape[0]
            elif x.shape[0] != batch_size:
                raise ValueError(f"modality {name!r} has batch size {x.shape[0]}, others have {batch_size}")
            if not torch.isfinite(x).all():
                raise ValueError(f"modality {name!r} contains NaN or inf values; clean the input before encoding")
            x = x.to(device=self.device, dtype=torch.float32)
            if spec.normalisation is not None:
                x = (x - getattr(self, f"norm_mean_{name}")) / getattr(self, f"norm_std_{name}")
            out[name] = x
        return out

    def denormalise(self, name: str, value: torch.Tensor) -> torch.Tensor:
        return value * getattr(self, f"norm_std_{name}") + getattr(self, f"norm_mean_{name}")

    # ------------------------------------------------------- model interface
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the top latent's posterior given whichever modalities ``batch`` holds."""
        raise NotImplementedError

    def decode_params(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Likelihood parameters (normalised scale) of every modality for top latents ``z``."""
        raise NotImplementedError

    def loss(self, batch: Batch, epoch: float = 0.0) -> LossOutput:
        raise NotImplementedError

    def elbo(self, batch: Batch) -> torch.Tensor:
        """Unweighted single-sample ELBO per data point; implementations evaluate in eval mode."""
        raise NotImplementedError

    def log_importance_weights(self, batch: Batch, queries: Sequence[Query], num_samples: int
                               ) -> dict[Query, torch.Tensor]:
        """log w of ``num_samples`` proposals per data point, shape (K, B), for each query (eval mode,
        no gradients, random draws in the model's modality order)."""
        raise NotImplementedError

    # ------------------------------------------------------ shared helpers
    @inference
    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean of p(x_i | z) for every modality, in raw (un-normalised) units."""
        params = self.decode_params(z)
        return {n: self.denormalise(n, self.likelihoods[n].mean(p)) for n, p in params.items()}

    @inference
    def reconstruct(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every modality decoded from the posterior mean given the modalities in ``batch``."""
        mu, _ = self.encode(batch)
        return self.decode(mu)

    @inference
    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """Decoded means for ``n`` top latents drawn from the prior N(0, I)."""
        return self.decode(torch.randn(n, self.top_latent_dim, device=self.device))

    @inference
    def generate(self, batch: Batch, n_per_input: int = 1) -> dict[str, torch.Tensor]:
        """Cross-modal generation: z ~ q(z | given modalities), decode all; shape (n_per_input * B, ...)."""
        mu, logvar = self.encode(batch)
        z = reparameterise(mu, logvar, n_per_input).reshape(-1, mu.shape[-1])
        return self.decode(z)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A head's output split into (mu, logvar), the log-variance clamped to ``config.logvar_clamp``."""
        lo, hi = self.config.logvar_clamp
        mu, logvar = params.chunk(2, dim=-1)
        return mu, logvar.clamp(lo, hi)

    def _recon_log_prob(self, name: str, z: torch.Tensor, x: torch.Tensor, decoder: nn.Module) -> torch.Tensor:
        """log p(x | z) for z of shape (..., B, d): decodes all leading dims in one pass."""
        lead = z.shape[:-1]
        params = decoder(z.reshape(-1, z.shape[-1]))
        params = params.reshape(*lead, *params.shape[1:])
        return self.likelihoods[name].log_prob(params, x)


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
        :mod:`mhvae_perception.subsets`; marginal keep rate (1 - w_i) / P(at least one kept))."""
        from .subsets import sample_keep_mask

        return sample_keep_mask(self.drop_probs, batch_size)

    # ------------------------------------------------------------ interface
    @inference
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z_c | h^d) with the modalities absent from ``batch`` dropped (inference mode)."""
        x = self.prepare(batch)
        hidden = {n: self.encoders[n](v) for n, v in x.items()}
        return self.core_posterior(hidden)

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
