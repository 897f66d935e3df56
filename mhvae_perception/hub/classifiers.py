"""Classifier files: the coherence judges, saved and shipped like the models (tensors + a JSON description, read
with ``weights_only=True``, shipped ones checked against the manifest's SHA-256)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch

from ..hashing import file_sha256
from ..models.classifier import ImageClassifier
from . import pretrained
from .checkpoints import CheckpointError

FORMAT = "mhvae-perception-classifier"


def save_classifier(path: str | os.PathLike, classifier: ImageClassifier, info: dict | None = None,
                    half: bool = False) -> Path:
    """Atomically write the classifier's weights and description (and ``info``: JSON values, e.g. its accuracy);
    ``half``: floating-point weights stored as float16 (half the file; they load into float32 parameters)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in classifier.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {"format": FORMAT, "description_json": json.dumps(classifier.description()),
               "info_json": json.dumps(info or {}), "state_dict": state}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; a shipped file must be readable by all
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_classifier(source: str | os.PathLike) -> tuple[ImageClassifier, dict]:
    """(classifier in eval mode, its info) from a file or a shipped classifier's name (SHA-256 checked)."""
    path = pretrained.path(source) if isinstance(source, str) and source in pretrained.available() else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"classifier {str(source)!r}: no such file or shipped classifier; "
                                f"{pretrained.did_you_mean(str(source))}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
        raise CheckpointError(f"{path} is not a readable classifier file: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a classifier file of this project (format {FORMAT!r})")
    classifier = ImageClassifier.from_description(json.loads(payload["description_json"]))
    classifier.load_state_dict(payload["state_dict"])
    return classifier.eval(), json.loads(payload["info_json"])


def ship_classifier(path: str | os.PathLike, name: str, dataset: str, note: str,
                    weights_dir: Path | None = None, half: bool = False) -> dict:
    """Copy a classifier file into the shipped weights as ``name`` with its SHA-256 and provenance (``half``:
    float16 weights, see :func:`save_classifier`)."""
    weights_dir = Path(weights_dir or pretrained.WEIGHTS_DIR)
    classifier, info = load_classifier(path)
    if half:
        info = {**info, "weights_dtype": "float16"}
    file = save_classifier(weights_dir / f"{name}.pt", classifier, info, half=half)
    manifest_path = weights_dir / "manifest.json"
    models = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    models[name] = {"file": file.name, "sha256": file_sha256(file), "bytes": file.stat().st_size, "dataset": dataset,
                    "env_id": None, "kind": "classifier", "note": note, **{k: info[k] for k in info if k != "note"}}
    manifest_path.write_text(json.dumps(dict(sorted(models.items())), indent=2) + "\n")
    return models[name]
