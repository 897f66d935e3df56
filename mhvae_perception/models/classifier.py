"""An independent image classifier: the judge of cross-modal coherence (is a generated image of the class it was
generated from? has it the attributes it was generated from?). A small CNN, described by a JSON dict so that a file
holds only tensors and that dict. Single-label (one class of ``n_classes``, softmax) or, with ``multi_label``,
``n_classes`` independent binary attributes (sigmoid each, e.g. CelebA's 18)."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Two conv blocks (3x3, ReLU, 2x2 max-pool: 32 then 64 channels), a dense layer of 128 and the class logits
    (with ``multi_label``: one logit per attribute, present when > 0)."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10, multi_label: bool = False
                 ) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in shape)
        if height < 4 or width < 4 or n_classes < 2:
            raise ValueError(f"ImageClassifier needs (C, H, W) images of at least 4x4 and >= 2 classes, got "
                             f"shape {tuple(shape)} and {n_classes} classes")
        self.shape, self.n_classes, self.multi_label = (channels, height, width), int(n_classes), bool(multi_label)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class (or attribute) logits for a batch of images in [0, 1], shape (B, C, H, W)."""
        return self.net(images)

    def description(self) -> dict[str, Any]:
        out = {"kind": "image_classifier", "shape": list(self.shape), "n_classes": self.n_classes}
        return {**out, "multi_label": True} if self.multi_label else out  # single-label files stay as they were

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "ImageClassifier":
        if description.get("kind") != "image_classifier":
            raise ValueError(f"not an image classifier description: {description!r}")
        return cls(tuple(description["shape"]), int(description["n_classes"]), bool(description.get("multi_label")))
