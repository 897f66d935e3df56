"""Cross-modal coherence, as multimodal VAE papers and libraries (MoPoE, MMVAE+, MultiVae) report it beside
likelihoods: generate one modality from another through the model and let an independent classifier say whether
the result is of the right class.

* label -> image: for each class c, images generated from the one-hot label c (z ~ q(z | label), then the image
  decoded; for the MHVAE z_c, then z_image ~ p(z_image | z_c)) are classified; coherence is the fraction
  classified as c, averaged over classes.
* image -> label: the label generated from each test image (its most probable class) is compared with the true
  label; coherence is the fraction that agree.

The classifier's own test accuracy is the ceiling of the label -> image number and belongs beside it.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..models.base import MultimodalVAE
from ..models.classifier import ImageClassifier


def train_classifier(batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], shape: tuple[int, int, int], n_classes: int, epochs: int = 2,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True) -> ImageClassifier:
    """A classifier trained with Adam on ``batches(epoch) -> iterator of (images in [0, 1], class indices)``."""
    torch.manual_seed(seed)
    classifier = ImageClassifier(shape, n_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    classifier.train()
    for epoch in range(epochs):
        for images, targets in tqdm(batches(epoch), desc=f"classifier epoch {epoch + 1}/{epochs}", disable=not progress):
            loss = F.cross_entropy(classifier(images), targets)
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


@torch.no_grad()
def label_to_image(model: MultimodalVAE, classifier: ImageClassifier, image: str, label: str,
                   n_per_class: int = 1000, seed: int = 0) -> dict:
    """Per class and mean: the fraction of images generated from the one-hot label that the classifier assigns
    to that class."""
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
