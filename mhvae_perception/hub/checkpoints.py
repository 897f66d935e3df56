"""Checkpoints: one file holding the weights, the model description (JSON), the library version and,
when saved from training, the training state.

The file is written with ``torch.save`` and read with ``torch.load(weights_only=True)``, so loading never
executes code from it. Saving writes a temporary file beside the target, flushes it to disk and renames it
over the target (``os.replace`` is atomic), so a crash never leaves a half-written checkpoint in place of a
good one. Temporary files are named ``.<target>.pid<PID>-<host>.<random>.tmp``; one left behind by a writer
that was killed mid-save is removed by the next save to the same target once its process is gone (files of
a live writer are never touched; those of another host, whose processes cannot be checked, and legacy
temporary files without a pid only when older than :data:`STALE_TMP_SECONDS`).
A full disk gives a :class:`CheckpointError` saying so, with the temporary file removed and the previous
checkpoint intact. Loading refuses non-finite weights and corrupt model descriptions.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import re
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..models.base import MultimodalVAE
from ..models.registry import build_model
from ..models.specs import ModelConfig
from ..version import __version__

FORMAT = "mhvae-perception-checkpoint"
FORMAT_VERSION = 1
STALE_TMP_SECONDS = 3600.0  # temp files whose writer cannot be checked are leftovers when older than this
_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated, of another format, or does not match a model."""


@dataclass
class Checkpoint:
    model: MultimodalVAE
    config: dict
    version: str
    training_state: dict[str, Any] | None


def save_checkpoint(path: str | os.PathLike, model: MultimodalVAE, training_state: dict[str, Any] | None = None,
                    weights_dtype: torch.dtype | None = None) -> Path:
    """Atomically write ``model`` (and optional ``training_state``: tensors, numbers, strings, lists, dicts).

    ``weights_dtype`` (e.g. ``torch.float16``) stores the floating-point weights in that type, which halves a
    shipped file; loading copies them back into the model's float32 parameters. A weight the type cannot hold
    is refused before anything is written."""
    path = Path(path)
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if weights_dtype is not None:
        limit = torch.finfo(weights_dtype).max
        too_big = [k for k, v in state_dict.items() if v.is_floating_point() and v.numel() and v.abs().max() > limit]
        if too_big:
            raise CheckpointError(f"weights {too_big[:5]} exceed the largest {weights_dtype} ({limit:g}); "
                                  f"save them in float32 (weights_dtype=None)")
        state_dict = {k: v.to(weights_dtype) if v.is_floating_point() else v for k, v in state_dict.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "config_json": json.dumps(model.config.to_dict()),
        "state_dict": state_dict,
        "training_state": training_state,
    }
    remove_stale_temp_files(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_writer_tag()}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
                handle.flush()
                os.fsync(handle.fileno())
        except (OSError, RuntimeError) as err:  # torch's writer may wrap the OSError in a RuntimeError
            if isinstance(err.__context__, KeyboardInterrupt):  # Ctrl-C mid-write: torch's zip writer then fails
                _unlink_quietly(tmp)                             # with "unexpected pos"; the Ctrl-C is what happened
                raise err.__context__ from None
            if _disk_full(err) or _no_room_left(err, path.parent, state_dict):
                _unlink_quietly(tmp)
                previous = (f"the previous checkpoint {path} is intact" if path.exists()
                            else f"no checkpoint existed at {path} before")
                raise CheckpointError(f"disk full while saving {path} ({getattr(err, 'strerror', None) or err}): nothing was replaced, "
                                      f"{previous}, and the temporary file was removed; free space on "
                                      f"{path.parent} and save again") from err
            raise
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return path


def _disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` or an exception it was raised from/during is ENOSPC (or EDQUOT)."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _DISK_FULL:
            return True
        err = err.__cause__ or err.__context__
    return False


def _no_room_left(err: BaseException, folder: Path, state_dict: dict[str, torch.Tensor]) -> bool:
    """Whether a write error without an errno (torch's own writer raises a bare ``RuntimeError`` such as
    "unexpected pos" or "file write failed" when the disk fills) came from a full disk: the folder's free space
    is smaller than the weights being written."""
    if not isinstance(err, RuntimeError):
        return False
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    needed = sum(v.numel() * v.element_size() for v in state_dict.values())
    return stats.f_bavail * stats.f_frsize < max(needed, 1 << 20)


def _unlink_quietly(path: str | os.PathLike) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _host() -> str:
    """This machine's name, reduced to letters, digits and dashes (safe in a file name)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _writer_tag() -> str:
    """``pid<PID>-<host>``: who writes a temporary file, so that a later save can tell whether it is alive."""
    return f"pid{os.getpid()}-{_host()}"


def _process_alive(pid: int) -> bool:
    """Whether a process with id ``pid`` exists on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True  # cannot tell: assume alive, never delete what might be in use
    return True


def remove_stale_temp_files(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that earlier, killed saves to ``path`` left beside it; returns them.

    A file written on this host is removed only if its writer's process no longer exists (never this
    process's own); a file of another host or without a writer tag (older versions) only when older than
    :data:`STALE_TMP_SECONDS`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    name = re.escape(path.name)
    tagged = re.compile(rf"^\.{name}\.pid(\d+)-([A-Za-z0-9-]*)\.[A-Za-z0-9_]+\.tmp$")
    legacy = re.compile(rf"^\.{name}\.[A-Za-z0-9_]+\.tmp$")
    removed = []
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        match = tagged.match(candidate.name)
        try:
            if match and match.group(2) == _host():
                pid = int(match.group(1))
                stale = not _process_alive(pid)  # this process counts as alive: its own files stay
            elif match or legacy.match(candidate.name):
                stale = time.time() - candidate.stat().st_mtime > STALE_TMP_SECONDS
            else:
                stale = False
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except FileNotFoundError:  # another process cleaned it up first
            continue
    return removed


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


def _description(payload: dict, path: Path) -> dict:
    """The stored model description as a dict; CheckpointError if it is missing or not valid JSON."""
    try:
        config = json.loads(payload["config_json"])
    except (KeyError, TypeError, ValueError) as err:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{path} holds a corrupt model description ({type(err).__name__}: {str(err)[:200]}); "
                              f"the file was damaged or not written by save_checkpoint") from err
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} holds a model description that is not a JSON object")
    return config


def _normalised(config: dict) -> dict:
    """A description after a round trip through ModelConfig: fields added since it was written get their
    defaults, so descriptions from older library versions compare equal to today's."""
    return json.loads(json.dumps(ModelConfig.from_dict(config).to_dict()))


def read_description(path: str | os.PathLike) -> dict:
    """The model description stored in checkpoint ``path``, without building the model."""
    path = Path(path)
    return _description(_read(path), path)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from its stored description and weights; the model is returned in eval mode.

    Descriptions written before a config field existed load with that field's default."""
    path = Path(path)
    payload = _read(path)
    config = _description(payload, path)
    try:
        model = build_model(ModelConfig.from_dict(config))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds an invalid model description: {err}") from err
    load_weights(model, payload.get("state_dict"), source=str(path))
    return Checkpoint(model.to(device).eval(), config, payload.get("library_version", "?"),
                      payload.get("training_state"))


def load_weights(model: MultimodalVAE, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy weights into ``model``, refusing any missing, unexpected, differently shaped or non-finite tensor."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{source} holds no weights (state_dict is {type(state_dict).__name__})")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = sorted(k for k in set(own) & set(state_dict)
                   if not isinstance(state_dict[k], torch.Tensor) or own[k].shape != state_dict[k].shape)
    if missing or unexpected or wrong:
        shape = lambda v: tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__  # noqa: E731
        details = "; ".join(part for part in (
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"shape mismatch {[(k, shape(state_dict[k]), tuple(own[k].shape)) for k in wrong[:5]]}" if wrong else "",
        ) if part)
        raise CheckpointError(f"{source} does not match this model ({details}); build the model from the "
                              f"checkpoint's own description with load_checkpoint()")
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source} holds non-finite weights (NaN or inf) in {bad[:5]}"
                              f"{f' and {len(bad) - 5} more tensors' if len(bad) > 5 else ''}; the training "
                              f"diverged before this save: use an earlier checkpoint (e.g. best.pt)")
    model.load_state_dict(state_dict)


def restore_into(model: MultimodalVAE, path: str | os.PathLike) -> dict[str, Any] | None:
    """Load a checkpoint's weights into an existing ``model`` whose description must be identical (fields
    added since the checkpoint was written count with their defaults); returns the stored training state."""
    path = Path(path)
    payload = _read(path)
    stored = _description(payload, path)
    try:
        stored = _normalised(stored)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} holds an invalid model description: {err}") from err
    own = _normalised(model.config.to_dict())
    if stored != own:
        diff = sorted(k for k in set(stored) | set(own) if stored.get(k) != own.get(k))
        raise CheckpointError(f"{path} was saved from a different model description (differs in {diff}); "
                              f"resume with the same configuration or start a new run folder")
    load_weights(model, payload.get("state_dict"), source=str(path))
    return payload.get("training_state")
