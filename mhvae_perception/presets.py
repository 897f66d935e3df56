"""The paper's networks (MNIST, FashionMNIST, CelebA) and the project's environments, as model descriptions.

``config("mnist", model="mhvae")`` returns a :class:`ModelConfig`; ``build_model`` builds it. Baselines get
the same modality networks around one latent (26 for MNIST/FashionMNIST, 64 for CelebA, and z_c's size for
the environments) fused by a single linear layer (``core.hidden = ()``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .model import MultimodalVAE
from .registry import build_model as _build
from .specs import CoreSpec, ModalitySpec, ModelConfig, Normalisation

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
    "pendulum_sound": (
        ModalitySpec("image", (2, 60, 60), "bernoulli", 16, "conv",
                     {"conv_layers": [[32, 4, 2, 1], [64, 4, 2, 1]], "hidden": 128, "activation": "swish"}),
        ModalitySpec("sound", (2, 3, 2), "gaussian", 8, "mlp",
                     {"hidden": [50, 50], "activation": "swish", "batchnorm": False}),
    ),
    "hyperhot": (
        ModalitySpec("image", (2, 80, 80), "bernoulli", 64, "conv",
                     {"conv_layers": [[32, 8, 4, 0], [64, 4, 2, 0], [64, 3, 1, 0]], "hidden": 512,
                      "activation": "swish"}),
        ModalitySpec("sound", (2, 4, 1047), "gaussian", 64, "mlp",
                     {"hidden": [512, 512], "activation": "swish", "batchnorm": False}),
    ),
}

_CORES: dict[str, CoreSpec] = {
    "mnist": CoreSpec(10, (64, 64, 64)),
    "fashionmnist": CoreSpec(10, (64, 64, 64)),
    "celeba": CoreSpec(16, (256, 256, 256)),
    "pendulum_sound": CoreSpec(10, (256, 256, 256)),
    "hyperhot": CoreSpec(40, (512, 512, 512)),
}

_BASELINE_LATENT = {"mnist": 26, "fashionmnist": 26, "celeba": 64, "pendulum_sound": 10, "hyperhot": 40}

DATASETS = tuple(_MODALITIES)


def config(dataset: str, model: str = "mhvae", warmup_modality_epochs: float = 0.0,
           warmup_core_epochs: float = 0.0, normalisation: Mapping[str, Mapping[str, Any]] | None = None,
           **overrides: Any) -> ModelConfig:
    """The description of ``model`` ("mhvae", "jmvae", "mvae") with the networks of ``dataset``.

    ``normalisation`` maps modality names to ``{"mean": ..., "std": ...}`` (e.g. sound statistics of the
    training split); ``overrides`` are other :class:`ModelConfig` fields (e.g. ``jmvae_alpha``).
    For baselines ``warmup_core_epochs`` is U_b.
    """
    if dataset not in _MODALITIES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    core = _CORES[dataset]
    if model != "mhvae":
        core = dataclasses.replace(core, latent_dim=_BASELINE_LATENT[dataset], hidden=())
    cfg = ModelConfig(model, _MODALITIES[dataset], core, warmup_modality_epochs, warmup_core_epochs, **overrides)
    for name, stats in (normalisation or {}).items():
        cfg = cfg.replace_modality(name, normalisation=Normalisation(_listify(stats["mean"]), _listify(stats["std"])))
    return cfg


def build_model(dataset: str, model: str = "mhvae", **kwargs: Any) -> MultimodalVAE:
    """Build ``model`` with the networks of ``dataset`` (see :func:`config` for the keyword arguments)."""
    return _build(config(dataset, model, **kwargs))


def _listify(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else value
