"""Cross-modal coherence: known answers with a generator and a judge whose behaviour is fixed, and the classifier
file (round trip, refusals)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mhvae_perception.evaluation import coherence
from mhvae_perception.hub import checkpoints, pretrained
from mhvae_perception.hub.classifiers import load_classifier, save_classifier, ship_classifier
from mhvae_perception.models.classifier import ImageClassifier


class StripeModel:
    """Generates, from label c, an image whose row (c + shift) % 10 is lit; from an image, the label of its lit row."""

    def __init__(self, shift: int = 0) -> None:
        self.shift = shift
        self.config = SimpleNamespace(modality=lambda name: SimpleNamespace(shape=(10,)))

    def generate(self, given):
        if "label" in given:
            rows = (given["label"].argmax(-1) + self.shift) % 10
            images = torch.zeros(len(rows), 1, 10, 10)
            images[torch.arange(len(rows)), 0, rows] = 1.0
            return {"image": images}
        rows = given["image"][:, 0].sum(-1).argmax(-1)
        return {"label": F.one_hot((rows + self.shift) % 10, 10).float()}


class RowJudge(nn.Module):
    """Says the class of an image is the index of its brightest row."""

    def forward(self, images):
        return images[:, 0].sum(-1)


def stripes(n: int = 30):
    classes = torch.arange(n) % 10
    images = torch.zeros(n, 1, 10, 10)
    images[torch.arange(n), 0, classes] = 1.0
    return [{"image": images, "label": F.one_hot(classes, 10).float()}]


@pytest.mark.parametrize("shift,expected", [(0, 1.0), (1, 0.0)])
def test_coherence_is_the_fraction_the_judge_agrees_with(shift, expected):
    model = StripeModel(shift)
    l2i = coherence.label_to_image(model, RowJudge(), "image", "label", n_per_class=7)
    assert l2i["mean"] == expected and l2i["per_class"] == [expected] * 10 and l2i["n_per_class"] == 7
    i2l = coherence.image_to_label(model, stripes(), "image", "label")
    assert i2l == {"mean": expected, "points": 30}


def test_accuracy_counts_correct_classifications():
    images = stripes()[0]["image"]
    targets = torch.arange(30) % 10
    assert coherence.accuracy(RowJudge(), [(images, targets)]) == 1.0
    assert coherence.accuracy(RowJudge(), [(images, (targets + 1) % 10)]) == 0.0


def test_classifier_files_round_trip_ship_by_name_and_refuse_other_files(tmp_path, monkeypatch):
    torch.manual_seed(0)
    classifier = ImageClassifier((1, 12, 12), 4).eval()
    path = save_classifier(tmp_path / "c.pt", classifier, {"test_accuracy": 0.5})
    loaded, info = load_classifier(path)
    x = torch.rand(3, 1, 12, 12)
    assert info == {"test_accuracy": 0.5} and torch.equal(loaded(x), classifier(x))
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(checkpoints.CheckpointError, match="not a classifier file"):
        load_classifier(tmp_path / "other.pt")
    weights = tmp_path / "w"
    weights.mkdir()
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(pretrained, "MANIFEST", weights / "manifest.json")
    entry = ship_classifier(path, "toy-classifier", "mnist", "a note", weights_dir=weights)
    assert entry["kind"] == "classifier" and entry["test_accuracy"] == 0.5
    assert torch.equal(load_classifier("toy-classifier")[0](x), classifier(x))
    with pytest.raises(checkpoints.CheckpointError, match="coherence classifier.*load_classifier"):
        pretrained.load("toy-classifier")
