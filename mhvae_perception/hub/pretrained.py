"""Trained models shipped with the project, loadable by name and checked against a stored SHA-256.

>>> from mhvae_perception import pretrained
>>> pretrained.available()                      # name -> what it is (dataset, kind, budget, source run)
>>> model = pretrained.load("mnist-mhvae")       # eval mode; weights + model description only

Each shipped file is a weights-only checkpoint (``save_checkpoint`` without training state: no optimizer state)
under ``mhvae_perception/weights/``; ``weights/manifest.json`` lists name -> file, SHA-256 and provenance. Files
are read with ``torch.load(weights_only=True)`` after the hash check, so loading never executes code.

Ship a new model (maintainers): ``python -m mhvae_perception.hub export runs/<run>/checkpoints/best.pt
<name> --note "<budget, command>"``.
"""
from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

import torch

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from ..hashing import file_sha256
from ..models.base import MultimodalVAE

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"
#: models shipped once and removed since (replaced, to keep the repository small): name -> what replaced it and
#: the commit whose tree still holds the file
RETIRED = WEIGHTS_DIR / "retired.json"


def available() -> dict[str, dict[str, Any]]:
    """Every shipped model: ``{name: {"file", "sha256", "dataset", "kind", "note", ...}}``."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())


def did_you_mean(name: str) -> str:
    """A sentence for an error about an unknown shipped name: what replaced it when it was retired, else the
    closest names, then all of them."""
    retired = json.loads(RETIRED.read_text()) if RETIRED.is_file() else {}
    if name in retired:
        r = retired[name]
        return (f"{name!r} was retired on {r['date']} and replaced by {r['replaced_by']!r} ({r['why']}); use "
                f"{r['replaced_by']!r}, or get the old file from git: git show {r['last_commit']}:"
                f"mhvae_perception/weights/{r['file']} > {r['file']}")
    models = sorted(available())
    close = difflib.get_close_matches(str(name), models, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}shipped models: {', '.join(models) or 'none'} (python -m mhvae_perception.hub list)"


def _entry(name: str) -> dict[str, Any]:
    models = available()
    if name not in models:
        raise KeyError(f"no shipped model named {name!r}; {did_you_mean(name)}")
    return models[name]


def path(name: str) -> Path:
    """The verified file of shipped model ``name``: CheckpointError if it is missing or its SHA-256 differs."""
    entry = _entry(name)
    file = _contained(name, entry.get("file"))
    if not file.is_file():
        raise CheckpointError(f"shipped model {name!r}: {file} is missing; reinstall the package or fetch the "
                              f"repository's {file.relative_to(WEIGHTS_DIR.parent.parent)}")
    digest = file_sha256(file)
    if digest != entry["sha256"]:
        raise CheckpointError(f"shipped model {name!r}: {file} has SHA-256 {digest}, the manifest says "
                              f"{entry['sha256']}; the file is corrupt or was replaced: do not use it")
    return file


def _contained(name: str, file_name: object) -> Path:
    """The manifest's file name as a file directly inside :data:`WEIGHTS_DIR`: a name read from the manifest never
    leads elsewhere (no absolute path, no separator, no ``..``)."""
    ok = isinstance(file_name, str) and file_name not in ("", ".", "..") and Path(file_name).name == file_name \
        and "\\" not in file_name
    if not ok or (WEIGHTS_DIR / file_name).resolve().parent != WEIGHTS_DIR.resolve():
        raise CheckpointError(f"shipped model {name!r}: the manifest's file {file_name!r} lies outside "
                              f"{WEIGHTS_DIR}; a manifest entry must name a file in that folder")
    return WEIGHTS_DIR / file_name


def load(name: str, device: str | torch.device = "cpu") -> MultimodalVAE:
    """Shipped model ``name`` in eval mode, after its SHA-256 check."""
    if _entry(name).get("kind") == "classifier":
        raise CheckpointError(f"{name!r} is a coherence classifier, not a multimodal model: load it with "
                              f"mhvae_perception.hub.classifiers.load_classifier({name!r})")
    return load_checkpoint(path(name), device=device).model


def export(checkpoint: str | Path, name: str, note: str = "", weights_dir: Path = WEIGHTS_DIR,
           half: bool = False) -> dict[str, Any]:
    """Write the weights and description of ``checkpoint`` (no training state) as shipped model ``name``;
    ``half`` stores the weights as float16 (half the file; they load back into float32 parameters).

    The manifest entry keeps the provenance: source file, epoch and validation ELBO of the source run."""
    src = load_checkpoint(checkpoint)
    state = src.training_state or {}
    run = state.get("run_config", {})
    weights_dir = Path(weights_dir)
    file = weights_dir / f"{name}.pt"
    save_checkpoint(file, src.model, weights_dtype=torch.float16 if half else None)
    manifest_path = weights_dir / "manifest.json"
    models = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    models[name] = {
        "file": file.name, "sha256": file_sha256(file), "bytes": file.stat().st_size,
        # an environment model's run keeps the default dataset entry beside its env_id: only the env_id counts
        "dataset": None if run.get("env_id") else run.get("dataset"), "env_id": run.get("env_id"),
        "kind": src.config.get("kind"), "weights_dtype": "float16" if half else "float32",
        "trained_epochs": state.get("epoch"), "run_epochs": state.get("run_epochs", run.get("epochs")),
        "best_epoch": state.get("best_epoch"),
        "best_valid_elbo": state.get("best_valid_elbo"), "source": str(checkpoint), "note": note,
    }
    manifest_path.write_text(json.dumps(dict(sorted(models.items())), indent=2) + "\n")
    return models[name]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mhvae_perception.hub", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the shipped models")
    exp = sub.add_parser("export", help="ship a trained checkpoint (weights + description only)")
    exp.add_argument("checkpoint")
    exp.add_argument("name")
    exp.add_argument("--note", default="", help="budget and command that produced it")
    exp.add_argument("--half", action="store_true", help="store the weights as float16 (half the file size)")
    args = parser.parse_args(argv)
    if args.command == "export":
        print(json.dumps(export(args.checkpoint, args.name, args.note, half=args.half), indent=2))
    else:
        print("\n".join(list_table(available())))


def list_table(models: dict[str, dict[str, Any]]) -> list[str]:
    """One line per shipped model: name, kind, data, epochs (the checkpoint's, of the run's), size, the note's
    first sentence."""
    head = ("name", "kind", "env / dataset", "epochs", "MiB", "note")
    rows = []
    for name, e in sorted(models.items()):
        epochs = str(e.get("trained_epochs", "?")) + (f" of {e['run_epochs']}" if e.get("run_epochs") else "")
        note = str(e.get("note", "")).split("; ")[0].split(". ")[0]
        rows.append((name, str(e.get("kind")), str(e.get("env_id") or e.get("dataset")), epochs,
                     f"{e.get('bytes', 0) / 2 ** 20:.1f}", note[:90] + ("..." if len(note) > 90 else "")))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in [head, *rows]]


if __name__ == "__main__":
    main()
