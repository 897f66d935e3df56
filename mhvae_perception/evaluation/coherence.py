"""Cross-modal coherence, as multimodal VAE papers and libraries (MoPoE, MMVAE+, MultiVae) report it beside
likelihoods: generate one modality from another through the model and let an independent classifier say whether
the result is of the right class.

* label -> image: for each class c, images generated from the one-hot label c (z ~ q(z | label), then the image
  decoded; for the MHVAE z_c, then z_image ~ p(z_image | z_c)) are classified; coherence is the fraction
  classified as c, averaged over classes.
* image -> label: the label generated from each test image (its most probable class) is compared with the true
  label; coherence is the fraction that agree.

The classifier's own test accuracy is the ceiling of the label -> image number and belongs beside it.

Multi-label (CelebA's 18 binary attributes), judged by a ``multi_label`` classifier (attribute present when its
logit > 0, i.e. p > 0.5):

* attributes -> image: from each test point's true attribute vector one image is generated and classified; per
  attribute, the fraction of points whose classified value equals the conditioning one, and the mean over
  attributes.
* image -> attributes: the attribute probabilities generated from each test image are thresholded at 0.5 and
  compared with the true attributes, per attribute and the mean.

Attributes are imbalanced (2 % bald, 48 % smiling), so each comes with its balanced accuracy ((TPR + TNR) / 2,
0.5 for any constant guess) and F1, and the majority-class baseline (always the training split's more frequent
value) belongs beside the agreement, as the classifier on the real test images (the ceiling) does.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models.base import MultimodalVAE
from ..models.classifier import ImageClassifier


def train_classifier(batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], shape: tuple[int, int, int], n_classes: int, epochs: int = 2,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True, multi_label: bool = False
                     ) -> ImageClassifier:
    """A classifier trained with Adam on ``batches(epoch) -> iterator of (images in [0, 1], class indices)``, or
    with ``multi_label`` of (images, 0/1 attributes (B, n_classes)) with a binary cross-entropy per attribute."""
    torch.manual_seed(seed)
    classifier = ImageClassifier(shape, n_classes, multi_label=multi_label)
    loss_fn = F.binary_cross_entropy_with_logits if multi_label else F.cross_entropy
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    classifier.train()
    for epoch in range(epochs):
        for images, targets in tqdm(batches(epoch), desc=f"classifier epoch {epoch + 1}/{epochs}", disable=not progress):
            loss = loss_fn(classifier(images), targets.float() if multi_label else targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return classifier.eval()


@torch.no_grad()
def accuracy(classifier: ImageClassifier, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Fraction of correctly classified images over ``batches`` of (images, class indices)."""
    right = total = 0
    for images, targets in batches:
        right += int((classifier(images).argmax(-1) == targets).sum())
        total += len(targets)
    return right / max(total, 1)


def check_judge(model: MultimodalVAE, classifier: ImageClassifier, image: str, target: str, multi_label: bool) -> None:
    """Refuse, before any generation, a judge of the other kind (single- vs multi-label) or one whose image shape or
    number of outputs is not the model's: its numbers would be meaningless rather than wrong-looking."""
    kind = bool(getattr(classifier, "multi_label", False))
    if kind != multi_label:
        need, got = ("multi-label", "single-label") if multi_label else ("single-label", "multi-label")
        raise ValueError(f"{target!r} needs a {need} classifier (one output per {'attribute' if multi_label else 'class'}"
                         f"), got a {got} one: use the judge trained on this dataset (e.g. celeba-classifier for "
                         f"CelebA's attributes, mnist-classifier for MNIST's labels)")
    if multi_label and model.config.modality(target).likelihood != "bernoulli":
        raise ValueError(f"modality {target!r} has a {model.config.modality(target).likelihood!r} likelihood, not "
                         f"'bernoulli': it is not a vector of binary attributes")
    shape, outputs = tuple(model.config.modality(image).shape), model.config.modality(target).shape[0]
    if tuple(getattr(classifier, "shape", shape)) != shape or getattr(classifier, "n_classes", outputs) != outputs:
        raise ValueError(f"the classifier takes images of shape {tuple(classifier.shape)} with "
                         f"{classifier.n_classes} outputs, but the model's {image!r} is {shape} and its {target!r} "
                         f"has {outputs}: a judge of another dataset?")


@torch.no_grad()
def label_to_image(model: MultimodalVAE, classifier: ImageClassifier, image: str, label: str,
                   n_per_class: int = 1000, seed: int = 0) -> dict:
    """Per class and mean: the fraction of images generated from the one-hot label that the classifier assigns
    to that class."""
    check_judge(model, classifier, image, label, multi_label=False)
    torch.manual_seed(seed)
    n_classes = model.config.modality(label).shape[0]
    per_class = []
    for c in range(n_classes):
        onehot = F.one_hot(torch.full((n_per_class,), c), n_classes).float()
        generated = model.generate({label: onehot})[image].clamp(0, 1)
        per_class.append(float((classifier(generated).argmax(-1) == c).float().mean()))
    return {"per_class": per_class, "mean": sum(per_class) / n_classes, "n_per_class": n_per_class}


@torch.no_grad()
def image_to_label(model: MultimodalVAE, batches: Iterator[Mapping[str, torch.Tensor]], image: str, label: str,
                   seed: int = 0) -> dict:
    """The fraction of test images whose generated label (most probable class) is the true one."""
    torch.manual_seed(seed)
    right = total = 0
    for batch in batches:
        generated = model.generate({image: batch[image]})[label]
        right += int((generated.argmax(-1) == batch[label].argmax(-1)).sum())
        total += len(generated)
    return {"mean": right / max(total, 1), "points": total}


def attribute_counts(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per attribute (true positives, false positives, false negatives, true negatives), shape (A, 4), from 0/1
    tensors of shape (N, A); summed over batches, they give the metrics of the whole set."""
    if predicted.shape != target.shape or predicted.dim() != 2:
        raise ValueError(f"predicted and target attributes must both be (N, A), got {tuple(predicted.shape)} and "
                         f"{tuple(target.shape)}")
    for name, t in (("predicted", predicted), ("target", target)):
        if not bool(((t == 0) | (t == 1)).all()):
            raise ValueError(f"{name} attributes must be 0/1 (threshold probabilities first)")
    p, t = predicted.bool(), target.bool()
    return torch.stack([(p & t).sum(0), (p & ~t).sum(0), (~p & t).sum(0), (~p & ~t).sum(0)], -1)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _mean(values: list[float | None]) -> float | None:
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None


def attribute_metrics(counts: torch.Tensor) -> dict:
    """Per attribute and averaged over attributes (each attribute weighs the same, however rare): accuracy (the
    agreement), balanced accuracy and F1; None (and left out of the mean) where undefined, e.g. the balanced
    accuracy of an attribute no point has."""
    if not isinstance(counts, torch.Tensor):  # the sum of no batches
        raise ValueError("no points to evaluate: the batches were empty")
    accuracy, balanced, f1 = [], [], []
    for tp, fp, fn, tn in counts.tolist():
        accuracy.append((tp + tn) / (tp + fp + fn + tn))
        tpr, tnr = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
        balanced.append(None if tpr is None or tnr is None else (tpr + tnr) / 2)
        f1.append(_ratio(2 * tp, 2 * tp + fp + fn))
    return {"accuracy": accuracy, "mean": _mean(accuracy), "balanced_accuracy": balanced,
            "mean_balanced_accuracy": _mean(balanced), "f1": f1, "mean_f1": _mean(f1),
            "points": int(counts[0].sum()) if len(counts) else 0}


def majority_baseline(train_attributes: torch.Tensor, test_attributes: torch.Tensor) -> dict:
    """The metrics of always answering each attribute's more frequent value in the training split (ties: absent):
    what an agreement must beat to say anything about the image."""
    majority = (train_attributes.float().mean(0) > 0.5).float()
    return {"majority": majority.tolist(),
            **attribute_metrics(attribute_counts(majority.expand_as(test_attributes), test_attributes))}


def predict_attributes(classifier: ImageClassifier, images: torch.Tensor) -> torch.Tensor:
    """0/1 attributes (N, A) a multi-label classifier sees in images: logit > 0, i.e. probability > 0.5."""
    return (classifier(images) > 0).float()


@torch.no_grad()
def classifier_attributes(classifier: ImageClassifier, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """A multi-label classifier's metrics on ``batches`` of (images, 0/1 attributes): on the real test images, the
    ceiling of attributes -> image."""
    if not getattr(classifier, "multi_label", False):
        raise ValueError("classifier_attributes needs a multi-label classifier; use accuracy() for a single-label one")
    counts = sum(attribute_counts(predict_attributes(classifier, images), targets) for images, targets in batches)
    return attribute_metrics(counts)


@torch.no_grad()
def attributes_to_image(model: MultimodalVAE, classifier: ImageClassifier, batches: Iterable[Mapping[str, torch.Tensor]],
                        image: str, attributes: str, seed: int = 0) -> dict:
    """One image generated from each test point's true attributes, classified: per attribute and mean, the
    agreement of the classified attributes with the conditioning ones (with balanced accuracy and F1)."""
    check_judge(model, classifier, image, attributes, multi_label=True)
    torch.manual_seed(seed)
    counts = 0
    for batch in batches:
        generated = model.generate({attributes: batch[attributes]})[image].clamp(0, 1)
        counts = counts + attribute_counts(predict_attributes(classifier, generated), batch[attributes])
    return attribute_metrics(counts)


@torch.no_grad()
def image_to_attributes(model: MultimodalVAE, batches: Iterable[Mapping[str, torch.Tensor]], image: str,
                        attributes: str, seed: int = 0) -> dict:
    """The attribute probabilities generated from each test image, thresholded at 0.5: per attribute and mean, the
    agreement with the true attributes (with balanced accuracy and F1)."""
    if model.config.modality(attributes).likelihood != "bernoulli":
        raise ValueError(f"modality {attributes!r} is not a vector of binary attributes (likelihood "
                         f"{model.config.modality(attributes).likelihood!r}); use image_to_label for a class")
    torch.manual_seed(seed)
    counts = 0
    for batch in batches:
        probabilities = model.generate({image: batch[image]})[attributes]
        counts = counts + attribute_counts((probabilities > 0.5).float(), batch[attributes])
    return attribute_metrics(counts)
