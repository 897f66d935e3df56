"""Cross-modal coherence: known answers with a generator and a judge whose behaviour is fixed, and the classifier
file (round trip, refusals)."""
from __future__ import annotations

import json
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
    # float16 weights: half the file, loaded into float32 parameters, outputs within float16 rounding
    half = ship_classifier(path, "toy-classifier-f16", "mnist", "a note", weights_dir=weights, half=True)
    assert half["weights_dtype"] == "float16" and half["bytes"] < 0.6 * entry["bytes"]
    loaded_half = load_classifier("toy-classifier-f16")[0]
    assert all(p.dtype == torch.float32 for p in loaded_half.parameters())
    assert torch.allclose(loaded_half(x), classifier(x), atol=1e-2) and not torch.equal(loaded_half(x), classifier(x))


# --- multi-label (CelebA-style binary attributes) ------------------------------------------------------------------


class AttributeModel:
    """Generates, from attributes (N, 4), a 4x4 image whose row a is lit where attribute a is present; from an
    image, probability 0.55 for each lit row's attribute and 0.45 for a dark one. The attributes in ``flip`` are
    inverted both ways."""

    def __init__(self, flip: tuple[int, ...] = ()) -> None:
        self.flip = list(flip)
        specs = {"image": SimpleNamespace(shape=(1, 4, 4), likelihood="bernoulli"),
                 "attributes": SimpleNamespace(shape=(4,), likelihood="bernoulli")}
        self.config = SimpleNamespace(modality=lambda name: specs[name])

    def generate(self, given):
        if "attributes" in given:
            rows = given["attributes"].clone()
            rows[:, self.flip] = 1 - rows[:, self.flip]
            return {"image": rows[:, None, :, None].expand(-1, 1, 4, 4).clone()}
        lit = given["image"][:, 0].mean(-1)
        lit[:, self.flip] = 1 - lit[:, self.flip]
        return {"attributes": 0.45 + 0.1 * lit}


class RowAttributeJudge(nn.Module):
    """Says attribute a is present when row a is lit; its logits are +-0.5, so reading them as probabilities (a
    threshold at 0.5 instead of 0) sees nothing."""

    multi_label, shape, n_classes = True, (1, 4, 4), 4

    def forward(self, images):
        return images[:, 0].mean(-1) - 0.5


def attribute_points():
    """Eight points in which every attribute is present in some and absent in others (balanced accuracy defined)."""
    attributes = torch.tensor([[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 0, 1], [0, 1, 1, 1],
                               [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)
    images = attributes[:, None, :, None].expand(-1, 1, 4, 4).clone()
    return images, attributes


def test_attribute_metrics_are_per_attribute_then_averaged():
    # by hand: attribute 0 has tp 1, fp 0, fn 1, tn 2 -> accuracy 3/4, TPR 1/2, TNR 1, balanced 3/4, F1 2/3;
    # attribute 1 has tp 0, fp 1, fn 1, tn 2 -> accuracy 1/2, TPR 0, TNR 2/3, balanced 1/3, F1 0.
    target = torch.tensor([[1, 0], [1, 0], [0, 0], [0, 1]], dtype=torch.float32)
    predicted = torch.tensor([[1, 0], [0, 0], [0, 1], [0, 0]], dtype=torch.float32)
    counts = coherence.attribute_counts(predicted, target)
    assert counts.tolist() == [[1, 0, 1, 2], [0, 1, 1, 2]]
    m = coherence.attribute_metrics(counts)
    assert m["accuracy"] == [0.75, 0.5] and m["mean"] == 0.625 and m["points"] == 4
    assert m["balanced_accuracy"] == pytest.approx([0.75, 1 / 3])
    assert m["mean_balanced_accuracy"] == pytest.approx((0.75 + 1 / 3) / 2)  # pooled TPR/TNR would give 17/30
    assert m["f1"] == pytest.approx([2 / 3, 0.0]) and m["mean_f1"] == pytest.approx(1 / 3)
    # summed over batches = computed at once
    halves = coherence.attribute_counts(predicted[:2], target[:2]) + coherence.attribute_counts(predicted[2:], target[2:])
    assert torch.equal(halves, counts)
    # an attribute no point has: balanced accuracy undefined (None) and left out of the mean
    m = coherence.attribute_metrics(coherence.attribute_counts(torch.zeros(3, 2), torch.tensor([[0., 1], [0, 0], [0, 1]])))
    assert m["balanced_accuracy"] == [None, 0.5] and m["mean_balanced_accuracy"] == 0.5 and m["f1"] == [None, 0.0]


def test_majority_baseline_answers_the_training_majority():
    train = torch.tensor([[1, 0], [1, 0], [0, 0], [1, 1]], dtype=torch.float32)  # majority: present, absent
    test = torch.tensor([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=torch.float32)
    m = coherence.majority_baseline(train, test)
    assert m["majority"] == [1.0, 0.0] and m["accuracy"] == [0.75, 0.5] and m["mean"] == 0.625
    assert m["balanced_accuracy"] == [0.5, 0.5] and m["f1"] == pytest.approx([6 / 7, 0.0])


@pytest.mark.parametrize("flip,expected", [((), [1.0, 1.0, 1.0, 1.0]), ((2,), [1.0, 1.0, 0.0, 1.0])])
def test_attribute_coherence_is_the_per_attribute_agreement(flip, expected):
    images, attributes = attribute_points()
    batches = [{"image": images[:5], "attributes": attributes[:5]}, {"image": images[5:], "attributes": attributes[5:]}]
    model = AttributeModel(flip)
    a2i = coherence.attributes_to_image(model, RowAttributeJudge(), batches, "image", "attributes")
    i2a = coherence.image_to_attributes(model, batches, "image", "attributes")  # probabilities 0.45 / 0.55
    for m in (a2i, i2a):
        assert m["accuracy"] == expected and m["mean"] == sum(expected) / 4 and m["points"] == 8
        assert m["balanced_accuracy"] == expected  # an inverted attribute: TPR = TNR = 0
    assert coherence.classifier_attributes(RowAttributeJudge(), [(images, attributes)])["mean"] == 1.0


def test_multi_label_classifier_trains_and_round_trips(tmp_path):
    images, attributes = attribute_points()
    images, attributes = images.repeat(8, 1, 1, 1), attributes.repeat(8, 1)
    classifier = coherence.train_classifier(lambda epoch: [(images, attributes)], shape=(1, 4, 4), n_classes=4,
                                            epochs=150, lr=1e-2, progress=False, multi_label=True)
    assert classifier.multi_label
    assert coherence.classifier_attributes(classifier, [(images, attributes)])["mean"] == 1.0
    loaded, info = load_classifier(save_classifier(tmp_path / "c.pt", classifier, {"test_accuracy": 1.0}))
    assert loaded.multi_label and torch.equal(loaded(images), classifier(images))
    assert "multi_label" not in ImageClassifier((1, 4, 4), 4).description()  # single-label files as before


def test_a_judge_of_the_wrong_kind_or_shape_is_refused_before_any_work():
    images, attributes = attribute_points()
    batches = [{"image": images, "attributes": attributes}]
    with pytest.raises(ValueError, match="needs a multi-label classifier.*got a single-label"):
        coherence.attributes_to_image(AttributeModel(), ImageClassifier((1, 4, 4), 4), batches, "image", "attributes")
    with pytest.raises(ValueError, match="needs a single-label classifier.*got a multi-label"):
        coherence.label_to_image(StripeModel(), ImageClassifier((1, 10, 10), 10, multi_label=True), "image", "label")
    with pytest.raises(ValueError, match="3 outputs.*has 4"):
        coherence.attributes_to_image(AttributeModel(), ImageClassifier((1, 4, 4), 3, multi_label=True), batches,
                                      "image", "attributes")
    with pytest.raises(ValueError, match="needs a multi-label classifier"):
        coherence.classifier_attributes(ImageClassifier((1, 4, 4), 4), [(images, attributes)])
    with pytest.raises(ValueError, match="must be 0/1"):
        coherence.attribute_counts(torch.full((2, 4), 0.55), attributes[:2])
    categorical = AttributeModel()
    categorical.config = SimpleNamespace(modality=lambda name: SimpleNamespace(shape=(4,), likelihood="categorical"))
    with pytest.raises(ValueError, match="not a vector of binary attributes"):
        coherence.image_to_attributes(categorical, batches, "image", "attributes")


def test_the_command_refuses_a_classifier_of_the_other_kind_before_loading_models_or_data(tmp_path, monkeypatch):
    from pretrain import coherence as command

    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "w")  # were the ship refusal broken: not the real weights

    single = save_classifier(tmp_path / "single.pt", ImageClassifier((1, 28, 28), 10))
    multi = save_classifier(tmp_path / "multi.pt", ImageClassifier((3, 64, 64), 18, multi_label=True))
    out = tmp_path / "out.json"
    # the model name does not exist: reaching it would raise FileNotFoundError instead
    with pytest.raises(SystemExit, match="single-label classifier cannot judge celeba"):
        command.main(["evaluate", "--dataset", "celeba", "--classifier", str(single), "--models", "no-such-model",
                      "--out", str(out)])
    with pytest.raises(SystemExit, match="multi-label classifier cannot judge mnist"):
        command.main(["evaluate", "--dataset", "mnist", "--classifier", str(multi), "--models", "no-such-model",
                      "--out", str(out)])
    with pytest.raises(SystemExit, match="single-label classifier cannot judge celeba"):
        command.main(["ship", str(single), "toy-classifier", "--dataset", "celeba"])
    assert not out.exists()


def test_the_command_evaluates_attributes_end_to_end_and_writes_the_record(tmp_path, monkeypatch):
    from pretrain import coherence as command
    from mhvae_perception.data.tensors import DictTensorDataset

    images, attributes = attribute_points()
    test = DictTensorDataset({"image": images, "attributes": attributes})
    train = DictTensorDataset({"image": images[:4], "attributes": torch.tensor([[1., 1, 0, 0]] * 3 + [[0., 0, 1, 1]])})
    splits = SimpleNamespace(train=train, test=test, info={"attributes": ("A", "B", "C", "D")})
    model = AttributeModel(flip=(2,))
    model.config.kind = "toy"
    monkeypatch.setattr(command, "load_classifier", lambda source: (RowAttributeJudge(), {"test_accuracy": 1.0}))
    monkeypatch.setattr(command, "resolve_model", lambda name: (model, None))
    monkeypatch.setattr(command.data, "load_dataset", lambda name: splits)
    out = tmp_path / "coherence.json"
    command.main(["evaluate", "--dataset", "celeba", "--classifier", "judge", "--models", "toy", "--out", str(out)])
    record = json.loads(out.read_text())
    assert record["attributes"] == ["A", "B", "C", "D"] and record["points"] == 8
    assert record["classifier_test"]["mean"] == 1.0 and record["classifier_info"] == {"test_accuracy": 1.0}
    assert record["majority_baseline"]["majority"] == [1.0, 1.0, 0.0, 0.0]
    toy = record["models"]["toy"]
    assert toy["attributes_to_image"]["accuracy"] == toy["image_to_attributes"]["accuracy"] == [1.0, 1.0, 0.0, 1.0]
