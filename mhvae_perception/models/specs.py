"""Model descriptions: each modality is described once, and every model is built from these descriptions.

Descriptions are plain dataclasses that round-trip through JSON, so a checkpoint can hold the full model
description and rebuild the networks without executing code.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional, Sequence

Likelihood = Literal["bernoulli", "categorical", "gaussian"]
LIKELIHOODS = ("bernoulli", "categorical", "gaussian")


@dataclass(frozen=True)
class Normalisation:
    """Affine input normalisation ``(x - mean) / std`` applied before encoding.

    ``mean`` and ``std`` are nested lists broadcastable to the modality's shape (per-feature statistics, or a
    single number). Gaussian likelihoods are evaluated on the normalised values.
    """

    mean: Any
    std: Any

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class ModalitySpec:
    """One sensor or label source.

    Attributes:
        name: key of this modality in every batch dict (e.g. ``"image"``).
        shape: shape of one observation, without the batch dimension.
        likelihood: ``"bernoulli"`` (logits; binary images, multi-label attributes), ``"categorical"``
            (one-hot labels) or ``"gaussian"`` (continuous values; learned per-feature variance).
        latent_dim: size of the modality-specific latent z_i (of the modality network's code in baselines).
        network: name of a builder in :data:`mhvae_perception.models.networks.NETWORKS`.
        network_kwargs: keyword arguments of that builder (JSON values only).
        recon_weight: λ_i, the weight of the reconstruction term.
        kl_weight: β_i^m, the weight of KL(q(z_i|x_i) || p(z_i|z_c)).
        dropout: w_i, probability that modality representation dropout drops h_i in training.
        normalisation: optional input normalisation stored with the model.
    """

    name: str
    shape: tuple[int, ...]
    likelihood: Likelihood
    latent_dim: int
    network: str = "mlp"
    network_kwargs: dict = field(default_factory=dict)
    recon_weight: float = 1.0
    kl_weight: float = 1.0
    dropout: float = 0.5
    normalisation: Optional[Normalisation] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if isinstance(self.normalisation, dict):
            object.__setattr__(self, "normalisation", Normalisation(**self.normalisation))
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"modality name must be a non-empty string, got {self.name!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(
                f"modality {self.name!r}: unknown likelihood {self.likelihood!r}; choose one of {LIKELIHOODS}"
            )
        if self.likelihood == "categorical" and len(self.shape) != 1:
            raise ValueError(f"modality {self.name!r}: a categorical modality is a one-hot vector, shape (C,)")
        if self.latent_dim < 1 or any(s < 1 for s in self.shape):
            raise ValueError(f"modality {self.name!r}: latent_dim and shape entries must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"modality {self.name!r}: dropout probability must lie in [0, 1), got {self.dropout}")
        for key in ("recon_weight", "kl_weight"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"modality {self.name!r}: {key} must be finite and >= 0, got {value}")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class CoreSpec:
    """The core latent z_c and the core encoder/decoder MLPs (for baselines: the fusion network and z)."""

    latent_dim: int = 10
    hidden: tuple[int, ...] = (64, 64, 64)
    activation: str = "leaky_relu"
    batchnorm: bool = True
    kl_weight: float = 1.0  # β^c

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if isinstance(self.latent_dim, bool) or not isinstance(self.latent_dim, numbers.Integral) or self.latent_dim < 1:
            raise ValueError(f"core latent_dim must be an integer >= 1, got {self.latent_dim!r}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"core hidden sizes must be >= 1, got {self.hidden}")
        if not isinstance(self.batchnorm, bool):
            raise ValueError(f"core batchnorm must be True or False, got {self.batchnorm!r}")
        if not isinstance(self.kl_weight, numbers.Real) or not math.isfinite(self.kl_weight) or self.kl_weight < 0:
            raise ValueError(f"core kl_weight (beta^c) must be finite and >= 0, got {self.kl_weight!r}")


#: The key of :meth:`ModelConfig.with_overrides` that changes every modality (e.g. β^m of every sensor).
EVERY_MODALITY = "*"


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: its kind, modalities, core and training-loss schedule.

    ``kind`` names a model of :data:`mhvae_perception.models.registry.MODEL_KINDS` (``"mhvae"``, ``"jmvae"``,
    ``"mvae"``), checked when the model is built. Warm-ups are in epochs: the β^m terms rise linearly
    from 0 over ``warmup_modality_epochs`` (U_m), the β^c term over ``warmup_core_epochs`` (U_c); baselines
    use ``warmup_core_epochs`` as U_b for their single KL term. ``jmvae_alpha`` is JMVAE-kl's α.
    ``agreement_weight`` γ (MHVAE only; 0 = the paper's loss) weights an optional cross-modal agreement term,
    an extension beyond the paper (see :meth:`mhvae_perception.models.mhvae.MHVAE.loss`). Descriptions written
    before a field existed load with its default.
    """

    kind: str
    modalities: tuple[ModalitySpec, ...]
    core: CoreSpec = CoreSpec()
    warmup_modality_epochs: float = 0.0
    warmup_core_epochs: float = 0.0
    jmvae_alpha: float = 0.01
    logvar_clamp: tuple[float, float] = (-12.0, 8.0)
    agreement_weight: float = 0.0

    def __post_init__(self) -> None:
        mods = tuple(m if isinstance(m, ModalitySpec) else ModalitySpec(**m) for m in self.modalities)
        object.__setattr__(self, "modalities", mods)
        if isinstance(self.core, dict):
            object.__setattr__(self, "core", CoreSpec(**self.core))
        object.__setattr__(self, "logvar_clamp", tuple(float(v) for v in self.logvar_clamp))
        # Which kinds exist is the registry's business (mhvae_perception.models.registry, checked by build_model):
        # specs.py sits below the models and must not import them.
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"model kind must be a non-empty string such as 'mhvae', got {self.kind!r}")
        if not mods:
            raise ValueError("a model needs at least one modality")
        for key in ("jmvae_alpha", "agreement_weight"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0 (0 switches the term off), got {value!r}")
            object.__setattr__(self, key, float(value))
        if self.agreement_weight > 0 and self.kind != "mhvae":
            raise ValueError(f"agreement_weight is an MHVAE loss term; a {self.kind!r} model needs agreement_weight=0")
        names = [m.name for m in mods]
        if len(set(names)) != len(names):
            raise ValueError(f"modality names must be unique, got {names}")

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def modality(self, name: str) -> ModalitySpec:
        for m in self.modalities:
            if m.name == name:
                return m
        raise KeyError(f"unknown modality {name!r}; this model has {self.modality_names}")

    def replace_modality(self, name: str, **changes: Any) -> "ModelConfig":
        """A copy with one modality's fields changed, e.g. ``normalisation=Normalisation(mean, std)``."""
        self.modality(name)
        mods = tuple(dataclasses.replace(m, **changes) if m.name == name else m for m in self.modalities)
        return dataclasses.replace(self, modalities=mods)

    def with_overrides(self, overrides: Mapping[str, Any]) -> "ModelConfig":
        """A copy with ``{"modalities": {name: {ModalitySpec field: value}}, "core": {CoreSpec field: value},
        <ModelConfig field>: value}`` applied (e.g. ``{"modalities": {"sound": {"recon_weight": 100.0}}}``);
        the name ``"*"`` (:data:`EVERY_MODALITY`) changes every modality, before the named ones, so that one override
        fits any environment's sensors. Unknown modalities or fields raise ValueError naming them."""
        overrides = dict(overrides)
        config = self
        per_modality = dict(overrides.pop("modalities", {}))
        every = per_modality.pop(EVERY_MODALITY, {})
        try:
            for name, changes in [*((m.name, every) for m in self.modalities if every), *per_modality.items()]:
                config = config.replace_modality(name, **changes)
            if "core" in overrides:
                config = dataclasses.replace(config, core=dataclasses.replace(config.core, **overrides.pop("core")))
            return dataclasses.replace(config, **overrides)
        except TypeError as err:  # dataclasses.replace with an unknown field
            raise ValueError(f"cannot apply overrides: {err}") from None

    def to_dict(self) -> dict:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known keys are {sorted(known)}")
        data = dict(data)
        data["modalities"] = tuple(_modality_from_dict(m) for m in data["modalities"])
        if "core" in data:
            data["core"] = CoreSpec(**data["core"])
        return cls(**data)


def _modality_from_dict(data: dict) -> ModalitySpec:
    known = {f.name for f in dataclasses.fields(ModalitySpec)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown modality keys {sorted(unknown)}; known keys are {sorted(known)}")
    data = dict(data)
    if data.get("normalisation") is not None:
        data["normalisation"] = Normalisation(**data["normalisation"])
    return ModalitySpec(**data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and tensors
        return value.tolist()
    return value


def check_subset(names: Sequence[str], available: Sequence[str], what: str = "modalities") -> tuple[str, ...]:
    """Validate a non-empty subset of modality names and return it in the model's order."""
    if isinstance(names, str):
        names = (names,)
    names = tuple(names)
    if not names:
        raise ValueError(f"empty subset of {what}: give at least one of {tuple(available)}")
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r} in {what}; this model has {tuple(available)}")
    return tuple(n for n in available if n in names)
