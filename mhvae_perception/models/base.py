"""The interface every multimodal VAE shares (MHVAE, JMVAE-kl, MVAE): input checking, encode/decode/sample,
cross-modal generation, and the importance-sampling query type.

The MHVAE (Vasco, Melo & Paiva 2020) itself is in :mod:`.mhvae`.

"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .distributions import Likelihood, reparameterise
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


def warmup_scale(epoch: float | torch.Tensor, warmup_epochs: float) -> float | torch.Tensor:
    """Linear warm-up from 0 at epoch 0 to 1 at ``warmup_epochs`` (1 throughout when it is 0).

    ``epoch`` may be a 0-d tensor (the weight is then one too): a compiled loss takes the epoch as a graph input
    instead of recompiling for every new value of a Python float (pretrain/run.py's ``precision=bf16``)."""
    if warmup_epochs <= 0:
        return 1.0
    if isinstance(epoch, torch.Tensor):
        return torch.clamp(epoch / warmup_epochs, 0.0, 1.0)
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
    def posterior(self, x: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the top latent's posterior given the modalities of a *prepared* (normalised) batch
        ``x``, in the model's current mode and with gradients: the differentiable path (e.g. a features extractor
        fine-tuned with a policy)."""
        raise NotImplementedError

    @inference
    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of the top latent's posterior given whichever modalities ``batch`` holds (raw units;
        inference mode: eval semantics, no gradients)."""
        return self.posterior(self.prepare(batch))

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
