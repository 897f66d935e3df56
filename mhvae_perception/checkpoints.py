"""Checkpoints: one file holding the weights, the model description (JSON), the library version and,
when saved from training, the training state.

The file is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, so loading never
executes code from it. Saving writes a temporary file beside the target, flushes it to disk and renames it
over the target (``os.replace`` is atomic), so a crash never leaves a half-written checkpoint in place of a
good one.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model import MultimodalVAE
from .registry import build_model
from .specs import ModelConfig
from .version import __version__

FORMAT = "mhvae-perception-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated, of another format, or does not match a model."""


@dataclass
class Checkpoint:
    model: MultimodalVAE
    config: dict
    version: str
    training_state: dict[str, Any] | None


def save_checkpoint(path: str | os.PathLike, model: MultimodalVAE, training_state: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model`` (and optional ``training_state``: tensors, numbers, strings, lists, dicts)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config_json": json.dumps(model.config.to_dict()),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "training_state": training_state,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _read(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}; check the path (a run folder keeps last.pt/best.pt)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt/unsafe files
        raise CheckpointError(f"cannot read checkpoint {path}: the file is corrupt, truncated or not a "
                              f"checkpoint ({type(err).__name__}: {str(err)[:200]})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mhvae-perception checkpoint (save one with save_checkpoint)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {payload.get('format_version')}, this library reads "
                              f"format {FORMAT_VERSION}; load it with the library version that wrote it "
                              f"({payload.get('library_version')})")
    return payload


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from its stored description and weights; the model is returned in eval mode."""
    path = Path(path)
    payload = _read(path)
    try:
        config = json.loads(payload["config_json"])
        model = build_model(ModelConfig.from_dict(config))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds an invalid model description: {err}") from err
    load_weights(model, payload["state_dict"], source=str(path))
    return Checkpoint(model.to(device).eval(), config, payload.get("library_version", "?"),
                      payload.get("training_state"))


def load_weights(model: MultimodalVAE, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy weights into ``model``, refusing any missing, unexpected or differently shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        details = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"shape mismatch {[(k, tuple(state_dict[k].shape), tuple(own[k].shape)) for k in wrong[:5]]}" if wrong else "",
        ) if part)
        raise CheckpointError(f"{source} does not match this model ({details}); build the model from the "
                              f"checkpoint's own description with load_checkpoint()")
    model.load_state_dict(state_dict)


def restore_into(model: MultimodalVAE, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load a checkpoint's weights into an existing ``model`` whose description must be identical;
    returns the stored training state (for resuming)."""
    payload = _read(Path(path))
    stored = json.loads(payload["config_json"])
    if stored != json.loads(json.dumps(model.config.to_dict())):
        diff = sorted(k for k in set(stored) | set(model.config.to_dict())
                      if stored.get(k) != json.loads(json.dumps(model.config.to_dict())).get(k))
        raise CheckpointError(f"{path} was saved from a different model description (differs in {diff}); "
                              f"resume with the same configuration or start a new run folder")
    load_weights(model, payload["state_dict"], source=str(path))
    return payload.get("training_state")
