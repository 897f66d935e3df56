"""Cross-modal coherence of trained models beside their likelihoods, judged by an independent classifier.

    # 1. train the judge on the training split and keep its test accuracy (shipped as <dataset>-classifier)
    python pretrain/coherence.py train --dataset mnist --epochs 2 --out runs/classifiers/mnist.pt
    python pretrain/coherence.py ship runs/classifiers/mnist.pt mnist-classifier --dataset mnist --note "..."
    # 2. label -> image and image -> label coherence of each model, as JSON and a Markdown table
    python pretrain/coherence.py evaluate --dataset mnist --classifier mnist-classifier \
        --models mnist-mhvae-e50 mnist-jmvae-e50 --out docs/coherence_mnist.json

MNIST and FashionMNIST (image + label). See mhvae_perception.evaluation.coherence for the definitions.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from mhvae_perception import data
from mhvae_perception.evaluation import coherence
from mhvae_perception.hub import resolve_model
from mhvae_perception.hub.classifiers import load_classifier, save_classifier, ship_classifier

DATASETS = ("mnist", "fashionmnist")


def labelled(dataset, batch_size: int, shuffle: bool = False, generator=None):
    """(images, class indices) batches of a split."""
    for batch in dataset.iter_batches(batch_size, shuffle=shuffle, generator=generator):
        yield batch["image"], batch["label"].argmax(-1)


def train(args) -> None:
    splits = data.load_dataset(args.dataset)
    started = time.time()
    classifier = coherence.train_classifier(
        lambda epoch: labelled(splits.train, 128, shuffle=True,
                               generator=torch.Generator().manual_seed(args.seed * 1000 + epoch)),
        shape=(1, 28, 28), n_classes=10, epochs=args.epochs, seed=args.seed)
    test_accuracy = coherence.accuracy(classifier, labelled(splits.test, 500))
    info = {"test_accuracy": test_accuracy, "epochs": args.epochs, "seed": args.seed, "dataset": args.dataset,
            "train_wall_s": round(time.time() - started, 1),
            "command": "python pretrain/coherence.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    save_classifier(args.out, classifier, info)
    print(f"wrote {args.out}: test accuracy {test_accuracy:.4f} ({info['train_wall_s']:.0f} s)")


def evaluate(args) -> None:
    classifier, info = load_classifier(args.classifier)  # names are checked before any work
    models = {name: resolve_model(name)[0] for name in args.models}
    splits = data.load_dataset(args.dataset)
    results = {}
    for name, model in models.items():
        started = time.time()
        l2i = coherence.label_to_image(model, classifier, "image", "label", n_per_class=args.per_class,
                                       seed=args.seed)
        i2l = coherence.image_to_label(model, splits.test.iter_batches(500, limit=args.points), "image", "label",
                                       seed=args.seed)
        results[name] = {"kind": model.config.kind, "label_to_image": l2i, "image_to_label": i2l,
                         "wall_s": round(time.time() - started, 1)}
        print(f"{name}: label -> image {l2i['mean']:.4f}, image -> label {i2l['mean']:.4f}")
    record = {"command": "python pretrain/coherence.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "dataset": args.dataset, "classifier": args.classifier,
              "classifier_test_accuracy": info.get("test_accuracy"), "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(markdown(record)))


def markdown(record: dict) -> list[str]:
    lines = ["| model | label → image | image → label |", "|---|---|---|"]
    for name, r in record["models"].items():
        lines.append(f"| {name} ({r['kind']}) | {r['label_to_image']['mean']:.3f} | {r['image_to_label']['mean']:.3f} |")
    lines.append(f"| classifier's own test accuracy | {record['classifier_test_accuracy']:.3f} | — |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the judge classifier on a dataset's training split")
    t.add_argument("--dataset", choices=DATASETS, default="mnist")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("ship", help="ship a trained classifier by name (weights + SHA-256 in the manifest)")
    s.add_argument("file", type=Path)
    s.add_argument("name")
    s.add_argument("--dataset", choices=DATASETS, required=True)
    s.add_argument("--note", default="")
    e = sub.add_parser("evaluate", help="label -> image and image -> label coherence of models")
    e.add_argument("--dataset", choices=DATASETS, default="mnist")
    e.add_argument("--classifier", required=True, help="a classifier file or a shipped classifier's name")
    e.add_argument("--models", nargs="+", required=True, help="checkpoint paths or shipped model names")
    e.add_argument("--per-class", type=int, default=1000, help="images generated per label")
    e.add_argument("--points", type=int, default=None, help="test images for image -> label (default: all)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if getattr(args, "epochs", 1) < 1 or getattr(args, "per_class", 1) < 1:
        p.error("--epochs and --per-class must be >= 1")
    torch.set_num_threads(1)
    {"train": train, "ship": lambda a: print(ship_classifier(a.file, a.name, a.dataset, a.note)),
     "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
