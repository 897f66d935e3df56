"""Shards of one evaluation (``eval_first_point``) and their merge (pretrain/shards.py)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mhvae_perception import checkpoints, estimators
from pretrain import shards
from pretrain.settings import SettingsError
from tests.test_pretrain import FAST, fake_mnist, run, synthetic_mnist  # noqa: F401 (a fixture)

EVAL = {"eval_samples": 3, "eval_batch_size": 4, "progress": False, "figures": False, "tensorboard": False,
        "device": "cpu"}


@pytest.fixture
def trained(tmp_path, fake_mnist):
    """A checkpoint of one tiny epoch on the 32-point synthetic test split."""
    rd = tmp_path / "run"
    run(dict(FAST, epochs=1, batch_size=32, max_train_batches=2, run_dir=str(rd)))
    return rd / "checkpoints" / "best.pt"


def evaluate_shard(checkpoint, out, first, points):
    run(dict(EVAL, checkpoint=str(checkpoint), eval_first_point=first, eval_points=points, eval_dir=str(out)),
        command="evaluate")
    return json.loads((out / "metrics.json").read_text())


def test_a_shard_scores_its_own_points_with_samples_seeded_from_its_first_point(tmp_path, trained):
    metrics = evaluate_shard(trained, tmp_path / "s", first=10, points=7)
    assert metrics["first_test_point"] == 10 and metrics["test_points"] == 7
    model = checkpoints.load_checkpoint(trained).model.eval()
    torch.manual_seed(12345 + 10)  # eval_seed + the first point
    test = synthetic_mnist().test
    per_point = {}
    for batch in test.iter_batches(4, limit=7, start=10):
        for k, v in estimators.paper_rows(model, batch, num_samples=3).items():
            per_point.setdefault(k, []).append(v.double())
    for r in metrics["rows"]:
        assert math.isclose(r["value"], float(torch.cat(per_point[r["row"]]).mean()), rel_tol=1e-9)
    assert metrics["elbo_terms"]["test"]["points"] == 7


def test_merged_shards_give_the_mean_and_standard_error_over_all_their_points(tmp_path, trained):
    a = evaluate_shard(trained, tmp_path / "a", first=0, points=20)
    b = evaluate_shard(trained, tmp_path / "b", first=20, points=50)  # capped at the split's end: 12 points
    assert b["test_points"] == 12
    out = tmp_path / "merged"
    shards.main([str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(out)])  # any order
    merged = json.loads((out / "metrics.json").read_text())
    assert merged["complete"] and merged["test_points"] == 32 and [s["points"] for s in merged["shards"]] == [[0, 20], [20, 32]]
    with np.load(tmp_path / "a" / "per_point.npz") as za, np.load(tmp_path / "b" / "per_point.npz") as zb:
        values = np.concatenate([za["values"], zb["values"]], axis=1)
    for i, r in enumerate(merged["rows"]):
        assert math.isclose(r["value"], values[i].mean(), rel_tol=1e-12)
        assert math.isclose(r["se"], values[i].std(ddof=1) / math.sqrt(32), rel_tol=1e-12)
        # the merged mean is the points-weighted mean of the shards' means
        assert math.isclose(r["value"], (20 * a["values"][r["row"]] + 12 * b["values"][r["row"]]) / 32, rel_tol=1e-9)
    assert "Merged from 2 shard(s) of test points [0, 20), [20, 32)" in (out / "results.md").read_text()


def test_shards_that_overlap_or_differ_are_refused(tmp_path, trained):
    evaluate_shard(trained, tmp_path / "a", first=0, points=20)
    evaluate_shard(trained, tmp_path / "b", first=16, points=8)
    with pytest.raises(SystemExit, match="inside the previous shard"):
        shards.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    run(dict(EVAL, checkpoint=str(trained), eval_samples=2, eval_first_point=20, eval_points=4,
             eval_dir=str(tmp_path / "k2")), command="evaluate")
    with pytest.raises(SystemExit, match="differs .* in num_samples"):
        shards.main([str(tmp_path / "a"), str(tmp_path / "k2"), "--out", str(tmp_path / "m")])
    with pytest.raises(SystemExit, match="has no metrics.json"):
        shards.main([str(tmp_path / "a"), str(tmp_path / "nothing"), "--out", str(tmp_path / "m")])
    assert not (tmp_path / "m").exists()  # nothing written when refused


def test_a_first_point_past_the_split_is_refused(tmp_path, trained):
    with pytest.raises(SettingsError, match="eval_first_point=40 is past the test split's last point"):
        evaluate_shard(trained, tmp_path / "x", first=40, points=4)
    with pytest.raises(SettingsError, match="eval_first_point"):
        evaluate_shard(trained, tmp_path / "y", first=-1, points=4)


def test_compare_pairs_two_evaluations_on_the_points_both_scored(tmp_path, trained, capsys):
    evaluate_shard(trained, tmp_path / "a0", first=0, points=16)
    evaluate_shard(trained, tmp_path / "a1", first=16, points=16)
    shards.main([str(tmp_path / "a0"), str(tmp_path / "a1"), "--out", str(tmp_path / "a")])
    run(dict(EVAL, checkpoint=str(trained), eval_seed=7, eval_first_point=8, eval_points=16,
             eval_dir=str(tmp_path / "b")), command="evaluate")
    result = shards.compare(tmp_path / "a", tmp_path / "b")
    assert result["points"] == 16  # points 8..23
    with np.load(tmp_path / "a" / "per_point.npz") as za, np.load(tmp_path / "b" / "per_point.npz") as zb:
        diff = za["values"][0, 8:24] - zb["values"][0]
    first = next(iter(result["rows"].values()))
    assert math.isclose(first["difference"], diff.mean(), rel_tol=1e-12)
    assert math.isclose(first["se"], diff.std(ddof=1) / math.sqrt(16), rel_tol=1e-12)
    shards.main(["compare", str(tmp_path / "a"), str(tmp_path / "b")])
    assert "on the 16 test points both scored (paired)" in capsys.readouterr().out
    run(dict(EVAL, checkpoint=str(trained), eval_samples=2, eval_points=4, eval_dir=str(tmp_path / "k2")),
        command="evaluate")
    with pytest.raises(SystemExit, match="differ in dataset or K"):
        shards.main(["compare", str(tmp_path / "a"), str(tmp_path / "k2")])
