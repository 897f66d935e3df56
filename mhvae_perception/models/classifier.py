"""An independent image classifier: the judge of cross-modal coherence (is a generated image of the class it was
generated from?). A small CNN, described by a JSON dict so that a file holds only tensors and that dict."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ImageClassifier(nn.Module):
    """Two conv blocks (3x3, ReLU, 2x2 max-pool: 32 then 64 channels), a dense layer of 128 and the class logits."""

    def __init__(self, shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10) -> None:
        super().__init__()
        channels, height, width = (int(s) for s in shape)
        if height < 4 or width < 4 or n_classes < 2:
            raise ValueError(f"ImageClassifier needs (C, H, W) images of at least 4x4 and >= 2 classes, got "
                             f"shape {tuple(shape)} and {n_classes} classes")
        self.shape, self.n_classes = (channels, height, width), int(n_classes)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), 128), nn.ReLU(), nn.Linear(128, n_classes))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of images in [0, 1], shape (B, C, H, W)."""
        return self.net(images)

    def description(self) -> dict[str, Any]:
        return {"kind": "image_classifier", "shape": list(self.shape), "n_classes": self.n_classes}

    @classmethod
    def from_description(cls, description: dict[str, Any]) -> "ImageClassifier":
        if description.get("kind") != "image_classifier":
            raise ValueError(f"not an image classifier description: {description!r}")
        return cls(tuple(description["shape"]), int(description["n_classes"]))
