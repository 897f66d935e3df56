"""The ground layer: model descriptions, distributions, networks, the MHVAE, its baselines and the one registry
of model kinds. Nothing here imports another package of the library."""
from .base import LossOutput, MultimodalVAE, Query, warmup_scale
from .baselines import JMVAE, MVAE
from .mhvae import MHVAE
from .registry import MODEL_KINDS, build_model, model_class
from .specs import CoreSpec, ModalitySpec, ModelConfig, Normalisation

__all__ = ["MHVAE", "JMVAE", "MVAE", "MultimodalVAE", "LossOutput", "Query", "warmup_scale", "MODEL_KINDS",
           "build_model", "model_class", "CoreSpec", "ModalitySpec", "ModelConfig", "Normalisation"]
