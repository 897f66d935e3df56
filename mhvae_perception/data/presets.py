"""Model descriptions: the paper's networks (MNIST, FashionMNIST, CelebA) and environment presets.

``config("mnist", model="mhvae")`` returns a :class:`ModelConfig`; ``build`` builds it
(``mhvae_perception.build_model`` builds any description). Baselines get the same modality networks around
one latent (26 for MNIST/FashionMNIST, 64 for CelebA, and z_c's size for the environments) fused by a single
linear layer (``core.hidden = ()``).

Environments bring their own hand-tuned networks with :func:`register_env_preset` (this project's
``envs/`` package registers PendulumSound-v0 and Hyperhot-v0 when imported); any other environment gets a
description inferred from its observation space and data (:mod:`mhvae_perception.data.describe`).
:func:`config_for_env` picks the registered preset if there is one, else the inferred description.
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from ..models.base import MultimodalVAE
from ..models.registry import build_model as _build
from ..models.specs import CoreSpec, ModalitySpec, ModelConfig, Normalisation
from .describe import apply_overrides, infer_model_config
from .spaces import space_from_json

MLP3 = lambda width, act="leaky_relu": {"hidden": [width] * 3, "activation": act, "batchnorm": True}  # noqa: E731

_MODALITIES: dict[str, tuple[ModalitySpec, ...]] = {
    "mnist": (
        ModalitySpec("image", (1, 28, 28), "bernoulli", 16, "mlp", MLP3(512)),
        ModalitySpec("label", (10,), "categorical", 16, "mlp", MLP3(128)),
    ),
    "fashionmnist": (
        ModalitySpec("image", (1, 28, 28), "bernoulli", 16, "conv",
                     {"conv_layers": [[32, 4, 2, 1], [64, 4, 2, 1]], "hidden": 128, "activation": "swish"}),
        ModalitySpec("label", (10,), "categorical", 16, "mlp", MLP3(128)),
    ),
    "celeba": (
        ModalitySpec("image", (3, 64, 64), "bernoulli", 48, "conv",
                     {"conv_layers": [[32, 4, 2, 1], [64, 4, 2, 1], [128, 4, 2, 1], [256, 4, 2, 1]],
                      "hidden": 512, "activation": "swish"}),
        ModalitySpec("attributes", (18,), "bernoulli", 48, "mlp", MLP3(512)),
    ),
}

_CORES: dict[str, CoreSpec] = {
    "mnist": CoreSpec(10, (64, 64, 64)),
    "fashionmnist": CoreSpec(10, (64, 64, 64)),
    "celeba": CoreSpec(16, (256, 256, 256)),
}

_BASELINE_LATENT = {"mnist": 26, "fashionmnist": 26, "celeba": 64}

#: the paper's datasets (environment presets are looked up with :func:`env_preset`)
PAPER_DATASETS = tuple(_MODALITIES)
DATASETS = PAPER_DATASETS  # kept name


# --------------------------------------------------------------------------------------------------
# environment presets
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvPreset:
    """Hand-tuned networks for one environment's sensors, registered by the package providing the environment.

    ``alias``: an optional short dataset name (e.g. ``"pendulum_sound"``); ``figure_hints``: extra
    :attr:`DatasetSplits.figure_hints <mhvae_perception.data.DatasetSplits.figure_hints>` (e.g.
    ``feature_names``); ``dataset_sizes``: default (n_train, n_test) for :func:`mhvae_perception.data.collect.collect`.
    """

    env_id: str
    modalities: tuple[ModalitySpec, ...]
    core: CoreSpec
    baseline_latent: int
    alias: Optional[str] = None
    figure_hints: Mapping[str, Any] = field(default_factory=dict)
    dataset_sizes: tuple[int, int] = (10_000, 1_000)


_ENV_PRESETS: dict[str, EnvPreset] = {}
_ALIASES: dict[str, str] = {}
#: The short names of this project's environments (those older commands and checkpoints use among them), in
#: Gymnasium's ``"module:EnvId"`` form: resolving one imports the module that registers the environment and its preset.
LEGACY_ENV_ALIASES = {"pendulum_sound": "envs:PendulumSound-v0", "hyperhot": "envs:Hyperhot-v0",
                      "hyperhot_spectrum": "envs:HyperhotSpectrum-v0"}


def register_env_preset(env_id: str, modalities: tuple[ModalitySpec, ...], core: CoreSpec, baseline_latent: int,
                        alias: Optional[str] = None, figure_hints: Optional[Mapping[str, Any]] = None,
                        dataset_sizes: tuple[int, int] = (10_000, 1_000)) -> EnvPreset:
    """Register hand-tuned networks for ``env_id`` (idempotent for an identical preset; a different preset for
    an id or alias already taken raises ``ValueError``)."""
    preset = EnvPreset(env_id, tuple(modalities), core, int(baseline_latent), alias, dict(figure_hints or {}),
                       (int(dataset_sizes[0]), int(dataset_sizes[1])))
    old = _ENV_PRESETS.get(env_id)
    if old is not None and old != preset:
        raise ValueError(f"a different preset is already registered for {env_id!r}")
    if alias is not None:
        if alias in _MODALITIES or _ALIASES.get(alias, env_id) != env_id:
            raise ValueError(f"alias {alias!r} is already taken")
        _ALIASES[alias] = env_id
    _ENV_PRESETS[env_id] = preset
    return preset


def resolve_env_name(name: str) -> str:
    """The Gymnasium id behind a preset alias, a ``"module:EnvId"`` (the module is imported, registering its
    environments and presets) or a plain id. For a plain id whose preset is not registered yet, the package
    providing the environment is imported first: the module of its Gymnasium entry point, or for this
    project's environments the module named in :data:`LEGACY_ENV_ALIASES`."""
    if name in _ALIASES:
        return _ALIASES[name]
    name = LEGACY_ENV_ALIASES.get(name, name)
    if ":" in name:
        module, name = name.split(":", 1)
        importlib.import_module(module)
    if name not in _ENV_PRESETS:
        _import_provider(name)
    return _ALIASES.get(name, name)


def _import_provider(env_id: str) -> None:
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    if spec is not None and isinstance(spec.entry_point, str) and ":" in spec.entry_point:
        importlib.import_module(spec.entry_point.split(":", 1)[0])
        return
    for target in LEGACY_ENV_ALIASES.values():
        module, legacy_id = target.split(":", 1)
        if legacy_id == env_id:
            importlib.import_module(module)


def env_preset(name: str) -> Optional[EnvPreset]:
    """The preset registered for an environment id or alias (or ``module:id``), or None."""
    return _ENV_PRESETS.get(resolve_env_name(name))


def env_presets() -> dict[str, EnvPreset]:
    """All registered environment presets by id."""
    return dict(_ENV_PRESETS)


def _env_config(preset: EnvPreset, model: str, warmup_modality_epochs: float, warmup_core_epochs: float,
                **overrides: Any) -> ModelConfig:
    core = preset.core
    if model != "mhvae":
        core = dataclasses.replace(core, latent_dim=preset.baseline_latent, hidden=())
    return ModelConfig(model, preset.modalities, core, warmup_modality_epochs, warmup_core_epochs, **overrides)


def config_for_env(env_id: str, splits: Any, kind: str = "mhvae", **overrides: Any) -> ModelConfig:
    """The model description for an environment's dataset: its registered preset (with the normalisation of
    ``splits``, a :class:`~mhvae_perception.data.DatasetSplits`) if any, else one inferred from the
    observation space and the training statistics recorded in ``splits.info`` (printing every choice).

    ``overrides``: :class:`ModelConfig` fields (``warmup_modality_epochs``, ``jmvae_alpha``, ...),
    ``{sensor: {ModalitySpec field: value}}`` and ``core={CoreSpec field: value}`` (for a preset too; for
    baselines the core's latent size is the preset's ``baseline_latent``).
    """
    preset = env_preset(env_id)
    normalisation = getattr(splits, "normalisation", None) or {}
    if preset is not None:
        modalities, core, rest = apply_overrides(list(preset.modalities), preset.core, overrides, lambda _m: None)
        preset = dataclasses.replace(preset, modalities=tuple(modalities), core=core)
        cfg = _env_config(preset, kind, rest.pop("warmup_modality_epochs", 0.0), rest.pop("warmup_core_epochs", 0.0),
                          **rest)
        for name, stats in normalisation.items():
            cfg = cfg.replace_modality(name, normalisation=Normalisation(_listify(stats["mean"]), _listify(stats["std"])))
        return cfg
    info = getattr(splits, "info", {}) or {}
    meta = info.get("metadata") or {}
    if "observation_space" not in meta or "statistics" not in info:
        raise ValueError(f"{env_id}: no registered preset and the dataset records no observation space / "
                         f"statistics; load it with mhvae_perception.data.load_env_splits")
    space = space_from_json(meta["observation_space"])
    return infer_model_config(space, kind=kind, overrides=overrides, statistics=info["statistics"])


def config(dataset: str, model: str = "mhvae", warmup_modality_epochs: float = 0.0,
           warmup_core_epochs: float = 0.0, normalisation: Mapping[str, Mapping[str, Any]] | None = None,
           **overrides: Any) -> ModelConfig:
    """The description of ``model`` ("mhvae", "jmvae", "mvae") with the networks of ``dataset`` (a paper
    dataset, or a registered environment preset's id or alias).

    ``normalisation`` maps modality names to ``{"mean": ..., "std": ...}`` (e.g. sound statistics of the
    training split); ``overrides`` are other :class:`ModelConfig` fields (e.g. ``jmvae_alpha``).
    For baselines ``warmup_core_epochs`` is U_b.
    """
    if dataset in _MODALITIES:
        core = _CORES[dataset]
        if model != "mhvae":
            core = dataclasses.replace(core, latent_dim=_BASELINE_LATENT[dataset], hidden=())
        cfg = ModelConfig(model, _MODALITIES[dataset], core, warmup_modality_epochs, warmup_core_epochs, **overrides)
    else:
        preset = env_preset(dataset)
        if preset is None:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {PAPER_DATASETS}, a registered "
                             f"environment preset {sorted(_ENV_PRESETS)} (or its alias {sorted(_ALIASES)}), or use "
                             f"config_for_env for any other environment")
        cfg = _env_config(preset, model, warmup_modality_epochs, warmup_core_epochs, **overrides)
    for name, stats in (normalisation or {}).items():
        cfg = cfg.replace_modality(name, normalisation=Normalisation(_listify(stats["mean"]), _listify(stats["std"])))
    return cfg


def build(dataset: str, model: str = "mhvae", **kwargs: Any) -> MultimodalVAE:
    """Build ``model`` with the networks of ``dataset`` (see :func:`config` for the keyword arguments)."""
    return _build(config(dataset, model, **kwargs))


def _listify(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value
