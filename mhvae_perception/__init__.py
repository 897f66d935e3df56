"""mhvae-perception: a multimodal hierarchical VAE (MHVAE) that gives RL agents a perception model
surviving a lost sensor, with JMVAE-kl and MVAE baselines and importance-sampled likelihoods."""
from . import checkpoints, estimators, presets, registry
from .baselines import JMVAE, MVAE
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .model import MHVAE, LossOutput, MultimodalVAE, Query, warmup_scale
from .registry import MODEL_KINDS, build_model
from .specs import CoreSpec, ModalitySpec, ModelConfig, Normalisation
from .version import __version__

__all__ = [
    "MHVAE", "JMVAE", "MVAE", "MultimodalVAE", "Query", "LossOutput", "MODEL_KINDS", "build_model", "warmup_scale",
    "ModalitySpec", "CoreSpec", "ModelConfig", "Normalisation", "CheckpointError", "save_checkpoint",
    "load_checkpoint", "checkpoints", "estimators", "presets", "registry", "__version__",
]
