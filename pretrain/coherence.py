"""Cross-modal coherence of trained models beside their likelihoods, judged by an independent classifier.

    # 1. train the judge on the training split and keep its test accuracy (shipped as <dataset>-classifier)
    python pretrain/coherence.py train --dataset mnist --epochs 2 --out runs/classifiers/mnist.pt
    python pretrain/coherence.py ship runs/classifiers/mnist.pt mnist-classifier --dataset mnist --note "..."
    # 2. label -> image and image -> label coherence of each model, as JSON and a Markdown table
    python pretrain/coherence.py evaluate --dataset mnist --classifier mnist-classifier \
        --models mnist-mhvae-e50 mnist-jmvae-e50 --out docs/coherence_mnist.json

MNIST and FashionMNIST (image + label). See mhvae_perception.evaluation.coherence for the definitions.

CelebA (image + 18 binary attributes): the judge is multi-label (one sigmoid per attribute, BCE), and the
directions are attributes -> image and image -> attributes, per attribute, beside the majority-class baseline:

    python pretrain/coherence.py train --dataset celeba --epochs 10 --out runs/classifiers/celeba-e10.pt
    python pretrain/coherence.py ship runs/classifiers/celeba-e10.pt celeba-classifier --dataset celeba --note "..."
    python pretrain/coherence.py evaluate --dataset celeba --classifier celeba-classifier \
        --models celeba-mhvae celeba-jmvae --out docs/coherence_celeba.json
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

DATASETS = ("mnist", "fashionmnist", "celeba")
MULTI_LABEL = ("celeba",)  # datasets whose second modality is binary attributes, not a class
IMAGE, ATTRIBUTES = "image", "attributes"


def labelled(dataset, batch_size: int, shuffle: bool = False, generator=None):
    """(images, class indices) batches of a split."""
    for batch in dataset.iter_batches(batch_size, shuffle=shuffle, generator=generator):
        yield batch["image"], batch["label"].argmax(-1)


def attributed(dataset, batch_size: int, shuffle: bool = False, generator=None, limit: int | None = None):
    """(images, 0/1 attributes) batches of a split."""
    for batch in dataset.iter_batches(batch_size, shuffle=shuffle, generator=generator, limit=limit):
        yield batch[IMAGE], batch[ATTRIBUTES]


def train(args) -> None:
    if args.dataset in MULTI_LABEL:
        return train_multi_label(args)
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


def train_multi_label(args) -> None:
    """The attribute judge: the same CNN with one sigmoid output per attribute, BCE; its test metrics per attribute
    are printed beside the majority-class baseline (the means are kept with the file)."""
    splits = data.load_dataset(args.dataset)
    shape, n_attributes = splits.train.shapes[IMAGE], splits.train.shapes[ATTRIBUTES][0]
    started = time.time()
    classifier = coherence.train_classifier(
        lambda epoch: attributed(splits.train, 128, shuffle=True,
                                 generator=torch.Generator().manual_seed(args.seed * 1000 + epoch)),
        shape=shape, n_classes=n_attributes, epochs=args.epochs, seed=args.seed, multi_label=True)
    train_wall_s = round(time.time() - started, 1)
    valid = coherence.classifier_attributes(classifier, attributed(splits.valid, 500))
    test = coherence.classifier_attributes(classifier, attributed(splits.test, 500))
    majority = coherence.majority_baseline(splits.train.tensors[ATTRIBUTES], splits.test.tensors[ATTRIBUTES])
    info = {"test_accuracy": test["mean"], "test_balanced_accuracy": test["mean_balanced_accuracy"],
            "test_f1": test["mean_f1"], "majority_test_accuracy": majority["mean"],
            "valid_accuracy": valid["mean"], "valid_balanced_accuracy": valid["mean_balanced_accuracy"],
            "multi_label": True, "epochs": args.epochs, "seed": args.seed, "dataset": args.dataset,
            "train_wall_s": train_wall_s,
            "command": "python pretrain/coherence.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])}
    save_classifier(args.out, classifier, info)
    names = splits.info.get("attributes") or [str(i) for i in range(n_attributes)]
    print("\n".join(attribute_table(names, {"classifier (test)": test, "majority baseline": majority})))
    print(f"wrote {args.out}: mean test accuracy {test['mean']:.4f} (majority {majority['mean']:.4f}), balanced "
          f"{test['mean_balanced_accuracy']:.4f}, valid {valid['mean']:.4f} ({train_wall_s:.0f} s)")


def check_models(models: dict, classifier, dataset: str) -> None:
    """Every model against the judge (kind, shapes), before the data are read and anything is generated."""
    for name, model in models.items():
        try:
            if dataset in MULTI_LABEL:
                coherence.check_judge(model, classifier, IMAGE, ATTRIBUTES, multi_label=True)
            else:
                coherence.check_judge(model, classifier, "image", "label", multi_label=False)
        except (KeyError, ValueError) as err:
            raise SystemExit(f"model {name!r} cannot be judged on {dataset}: {err}") from None


def check_kind(classifier, source, dataset: str) -> None:
    """A multi-label judge for CelebA's attributes, a single-label one for a class: refused otherwise."""
    if getattr(classifier, "multi_label", False) != (dataset in MULTI_LABEL):
        what = "binary attributes" if dataset in MULTI_LABEL else "one class per image"
        raise SystemExit(f"classifier {str(source)!r}: a {'multi' if classifier.multi_label else 'single'}-label "
                         f"classifier cannot judge {dataset} ({what}); use one trained with "
                         f"'train --dataset {dataset}' (shipped: {dataset}-classifier)")


def ship(args) -> None:
    check_kind(load_classifier(args.file)[0], args.file, args.dataset)
    print(ship_classifier(args.file, args.name, args.dataset, args.note, half=args.half))


def evaluate(args) -> None:
    classifier, info = load_classifier(args.classifier)  # names are checked before any work
    check_kind(classifier, args.classifier, args.dataset)
    models = {name: resolve_model(name)[0] for name in args.models}
    check_models(models, classifier, args.dataset)
    if args.dataset in MULTI_LABEL:
        return evaluate_multi_label(args, classifier, info, models)
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


def evaluate_multi_label(args, classifier, info: dict, models: dict) -> None:
    """attributes -> image and image -> attributes on the test points (one generation each), beside the judge on
    the real test images (the ceiling) and the majority-class baseline, as JSON and Markdown."""
    splits = data.load_dataset(args.dataset)
    test = splits.test
    ceiling = coherence.classifier_attributes(classifier, attributed(test, 500, limit=args.points))
    targets = test.tensors[ATTRIBUTES][:args.points] if args.points else test.tensors[ATTRIBUTES]
    majority = coherence.majority_baseline(splits.train.tensors[ATTRIBUTES], targets)
    results = {}
    for name, model in models.items():
        started = time.time()
        a2i = coherence.attributes_to_image(model, classifier, test.iter_batches(250, limit=args.points), IMAGE,
                                            ATTRIBUTES, seed=args.seed)
        i2a = coherence.image_to_attributes(model, test.iter_batches(250, limit=args.points), IMAGE, ATTRIBUTES,
                                            seed=args.seed)
        results[name] = {"kind": model.config.kind, "attributes_to_image": a2i, "image_to_attributes": i2a,
                         "wall_s": round(time.time() - started, 1)}
        print(f"{name}: attributes -> image {a2i['mean']:.4f} (balanced {a2i['mean_balanced_accuracy']:.4f}), "
              f"image -> attributes {i2a['mean']:.4f} (balanced {i2a['mean_balanced_accuracy']:.4f})")
    record = {"command": "python pretrain/coherence.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
              "dataset": args.dataset, "classifier": args.classifier, "multi_label": True,
              "attributes": list(splits.info.get("attributes") or []), "points": ceiling["points"],
              "classifier_test": ceiling, "classifier_info": info, "majority_baseline": majority, "models": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("\n".join(markdown_multi_label(record)))


def attribute_table(names: list[str], columns: dict) -> list[str]:
    """Per-attribute accuracy (balanced accuracy) of each column's metrics, and their means."""
    lines = ["| attribute | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]

    def cell(metrics: dict, i: int | None) -> str:
        acc = metrics["mean"] if i is None else metrics["accuracy"][i]
        bal = metrics["mean_balanced_accuracy"] if i is None else metrics["balanced_accuracy"][i]
        return f"{acc:.3f} ({'—' if bal is None else f'{bal:.3f}'})"

    for i, name in enumerate(names):
        lines.append(f"| {name} | " + " | ".join(cell(m, i) for m in columns.values()) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{cell(m, None)}**" for m in columns.values()) + " |")
    return lines


def markdown_multi_label(record: dict) -> list[str]:
    """The summary table (means over attributes) and the per-attribute table."""
    lines = ["| model | attributes → image: agreement (balanced) | image → attributes: agreement (balanced) |",
             "|---|---|---|"]
    for name, r in record["models"].items():
        a2i, i2a = r["attributes_to_image"], r["image_to_attributes"]
        lines.append(f"| {name} ({r['kind']}) | {a2i['mean']:.3f} ({a2i['mean_balanced_accuracy']:.3f}) | "
                     f"{i2a['mean']:.3f} ({i2a['mean_balanced_accuracy']:.3f}) |")
    c, m = record["classifier_test"], record["majority_baseline"]
    lines.append(f"| the classifier on the real test images (the ceiling) | {c['mean']:.3f} "
                 f"({c['mean_balanced_accuracy']:.3f}) | — |")
    lines.append(f"| majority-class baseline | {m['mean']:.3f} (0.500) | {m['mean']:.3f} (0.500) |")
    columns = {"classifier, real images": c, "majority": m}
    for name, r in record["models"].items():
        columns[f"{name}: attr → image"] = r["attributes_to_image"]
        columns[f"{name}: image → attr"] = r["image_to_attributes"]
    names = record["attributes"] or [str(i) for i in range(len(c["accuracy"]))]
    return lines + [""] + attribute_table(names, columns)


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
    s.add_argument("--half", action="store_true", help="store the weights as float16 (half the file; check that "
                                                       "the evaluation does not change)")
    e = sub.add_parser("evaluate", help="label -> image and image -> label coherence of models")
    e.add_argument("--dataset", choices=DATASETS, default="mnist")
    e.add_argument("--classifier", required=True, help="a classifier file or a shipped classifier's name")
    e.add_argument("--models", nargs="+", required=True, help="checkpoint paths or shipped model names")
    e.add_argument("--per-class", type=int, default=1000, help="images generated per label (not CelebA)")
    e.add_argument("--points", type=int, default=None,
                   help="test images for image -> label, or for both directions on CelebA (default: all)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if getattr(args, "epochs", 1) < 1 or getattr(args, "per_class", 1) < 1:
        p.error("--epochs and --per-class must be >= 1")
    if getattr(args, "points", None) is not None and args.points < 1:
        p.error("--points must be >= 1")
    torch.set_num_threads(1)
    {"train": train, "ship": ship, "evaluate": evaluate}[args.command](args)


if __name__ == "__main__":
    main()
