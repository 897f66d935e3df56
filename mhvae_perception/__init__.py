"""mhvae-perception: a multimodal hierarchical VAE (MHVAE) that gives RL agents a perception model
surviving a lost sensor, with JMVAE-kl and MVAE baselines and importance-sampled likelihoods.

Layers, each importing only those below it (``tests/test_layers.py`` checks it):
``models`` (ground) < ``data`` < ``evaluation``, ``hub`` < ``wrappers``; ``version`` and ``hashing`` are leaves.
"""
from . import _deprecated
from .data import presets
from .evaluation import estimators, probes
from .hub import checkpoints, pretrained
from .hub.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .hub.resolve import resolve_model
from .models import (JMVAE, MHVAE, MODEL_KINDS, MVAE, CoreSpec, LossOutput, ModalitySpec, ModelConfig,
                     MultimodalVAE, Normalisation, Query, build_model, registry, warmup_scale)
from .version import __version__

_deprecated.install()

__all__ = [
    "MHVAE", "JMVAE", "MVAE", "MultimodalVAE", "Query", "LossOutput", "MODEL_KINDS", "build_model", "warmup_scale",
    "ModalitySpec", "CoreSpec", "ModelConfig", "Normalisation", "CheckpointError", "save_checkpoint",
    "load_checkpoint", "resolve_model", "checkpoints", "estimators", "presets", "pretrained", "probes", "registry",
    "__version__",
]
