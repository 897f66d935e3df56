"""The one registry of model kinds: name -> class, above ``model.py`` and ``baselines.py``.

Adding a model = one class with the :class:`~mhvae_perception.models.base.MultimodalVAE` interface + one line in
:data:`MODELS`. ``ModelConfig.kind`` names an entry here; :func:`build_model` checks it and builds the model.
"""
from __future__ import annotations

from typing import Mapping

from .baselines import JMVAE, MVAE
from .base import MultimodalVAE
from .mhvae import MHVAE
from .specs import ModelConfig

MODELS: Mapping[str, type[MultimodalVAE]] = {
    "mhvae": MHVAE,
    "jmvae": JMVAE,
    "mvae": MVAE,
}
MODEL_KINDS: tuple[str, ...] = tuple(MODELS)


def model_class(kind: str) -> type[MultimodalVAE]:
    """The class registered as ``kind``; a ValueError lists the known kinds otherwise."""
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r}; choose one of {MODEL_KINDS} "
                         f"(or register a new class in mhvae_perception.models.registry.MODELS)")
    return MODELS[kind]


def build_model(config: ModelConfig | dict) -> MultimodalVAE:
    """The model a description asks for (``config.kind``: one of :data:`MODEL_KINDS`)."""
    if isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model needs a ModelConfig or its dict, got {type(config).__name__}")
    return model_class(config.kind)(config)
