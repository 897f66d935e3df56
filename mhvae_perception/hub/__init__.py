"""Models on disk: atomic checkpoints, the shipped models (SHA-256 checked) and :func:`resolve_model`, the one
way wrappers, agents and scripts get a model from a name, a path or an object."""
from . import checkpoints, pretrained
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .resolve import ModelLike, resolve_model, shipped_or_path

__all__ = ["checkpoints", "pretrained", "CheckpointError", "load_checkpoint", "save_checkpoint", "ModelLike",
           "resolve_model", "shipped_or_path"]
