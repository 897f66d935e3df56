"""Tests of the results tables (paper beside ours) and of pretrain/reproduce.py (resume by default, --restart,
results written only for completed runs)."""
from __future__ import annotations

import json
import shutil
import math

import numpy as np
import torch

import pytest

from mhvae_perception import data, estimators
from pretrain import paper, reproduce, results_table
from pretrain import run as run_mod

from test_pretrain import synthetic_mnist


def test_paper_numbers_are_in_one_place_in_the_paper_order():
    assert paper.ROW_KEYS == tuple(k for k, _, _ in estimators.PAPER_ROWS)
    assert paper.paper_value("mnist", "mhvae", "log p(x1) | x1") == -89.050
    assert paper.paper_value("mnist", "jmvae", "log p(x1|x2) | x2") == -123.070
    assert paper.paper_value("fashionmnist", "mvae", "log p(x1,x2) | x2") == -557.582
    assert paper.paper_value("celeba", "mhvae", "log p(x1,x2) | x1,x2") == -6276.57
    assert paper.paper_value("mnist", "mvae", "log p(x1) | x1") is None  # not reported
    assert paper.paper_value("pendulum_sound", "mhvae", "log p(x1) | x1") is None
    assert "Table 3" in paper.source_of("celeba") and "K = 500" in paper.source_of("celeba")
    assert all(len(v) == 5 for d in paper.PAPER_RESULTS.values() for v in d.values() if v is not None)


def _ours(shift: float, se: float, extra: bool = False) -> dict:
    values = {k: paper.paper_value("mnist", "mhvae", k) + shift for k in paper.ROW_KEYS}
    rows = [{"row": k, "metric": m, "input": i} for k, m, i in estimators.PAPER_ROWS]
    if extra:
        values["log p(x1|x2) | tighter"] = -100.0
        rows.append({"row": "log p(x1|x2) | tighter", "metric": "log p(x1|x2)", "input": "x1,x2 and x2"})
    return {"values": values, "standard_errors": {k: se for k in values}, "rows": rows,
            "budget": {"epochs": 3, "eval_samples": 100, "test_points": 1000}}


def test_comparison_table_differences_and_standard_errors():
    ours = {"mhvae": _ours(+1.0, 0.3, extra=True), "jmvae": _ours(-0.5, 0.4)}
    lines = results_table.comparison_table("mnist", ours)
    assert lines[0] == ("| metric | input | paper JMVAE | paper MVAE | paper MHVAE | ours MHVAE (3 ep, K = 100, n = 1000) "
                        "| ours JMVAE (3 ep, K = 100, n = 1000) | ours MHVAE − paper MHVAE | ours MHVAE − ours JMVAE |")
    first = lines[2].split(" | ")
    assert first[:5] == ["| log p(x1)", "x1", "-90.19", "—", "-89.05"]  # MVAE MNIST: not reported
    assert first[5] == "-88.05 ± 0.30" and first[6] == "-89.55 ± 0.40"
    assert first[7] == "not comparable (K = 100)"  # the paper's K is 5000: no difference across K
    assert first[8] == "+1.50 ± 0.50 |"  # sqrt(0.3^2 + 0.4^2) = 0.5
    assert any("not comparable here: ours used K = 100" in line for line in lines)
    extra = [line for line in lines if "tighter" in line or "x1,x2 and x2" in line]
    assert len(extra) == 1 and extra[0].split(" | ")[2:5] == ["—", "—", "—"]
    assert any("Table 1" in line for line in lines) and any("could not train MVAE" in line for line in lines)


def test_ours_minus_paper_at_the_papers_k_and_paired_standard_errors():
    ours = {"mhvae": _ours(+1.0, 0.3), "jmvae": _ours(-0.5, 0.4)}
    for m in ours:
        ours[m]["budget"] = {**ours[m]["budget"], "eval_samples": 5000}
    paired = {k: 0.05 for k in paper.ROW_KEYS}
    lines = results_table.comparison_table("mnist", ours, paired)
    first = lines[2].split(" | ")
    assert first[7] == "+1.00 ± 0.30"  # at equal K, ours - paper carries our standard error
    assert first[8] == "+1.50 ± 0.05 |"  # the paired standard error replaces the unpaired 0.5
    assert any("paired over the test points" in line for line in lines)
    assert not any("not comparable" in line for line in lines)


def test_paired_standard_errors_from_per_point_files(tmp_path):
    rng = np.random.default_rng(0)
    common = rng.normal(size=400) * 10  # a shared per-point difficulty: unpaired SEs are large, paired small
    folders = []
    for name, shift in (("a", 1.0), ("b", 0.0)):
        run = tmp_path / name
        (run / "eval").mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"split_seed": 0}))
        values = np.stack([common + shift + 0.1 * rng.normal(size=400)])
        np.savez(run / "eval" / "per_point.npz", rows=np.array(["log p(x1) | x1"]), values=values)
        folders.append(run / "eval")
    se = reproduce.paired_standard_errors(*folders)["log p(x1) | x1"]
    assert se == pytest.approx(0.1 * np.sqrt(2) / np.sqrt(400), rel=0.15)
    (tmp_path / "b" / "config.json").write_text(json.dumps({"split_seed": 1}))  # other points: no pairing
    assert reproduce.paired_standard_errors(*folders) == {}


def test_comparison_table_outside_the_paper_and_without_standard_errors():
    ours = {"mvae": {"values": {"log p(x1) | x1": -5.0}}}
    lines = results_table.comparison_table("hyperhot", ours)
    assert lines[0] == "| metric | input | ours MVAE |"
    assert lines[2].startswith("| log p(x1) | x1 | -5.00 |")
    lines = results_table.comparison_table("fashionmnist", {"mvae": {"values": {"log p(x1) | x1": -236.0}}})
    assert "ours MVAE − paper MVAE" in lines[0] and "+0.61 |" in lines[2] and " ± " not in lines[2]


@pytest.fixture
def fake_mnist(monkeypatch):
    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: synthetic_mnist())


ARGS = ["--dataset", "mnist", "--epochs", "1", "--max-train-batches", "2", "--eval-samples", "2",
        "--eval-points", "4", "--num-threads", "1"]


def test_reproduce_resumes_by_default_and_writes_only_completed_runs(tmp_path, fake_mnist, monkeypatch):
    results, runs = tmp_path / "RESULTS.md", tmp_path / "runs"
    args = ARGS + ["--models", "mhvae", "jmvae", "--results", str(results), "--runs", str(runs)]
    real = run_mod.train_one_epoch

    def crash_for_jmvae(model, *a, **k):
        if model.config.kind == "jmvae":
            raise KeyboardInterrupt  # the machine went away during JMVAE's epoch
        return real(model, *a, **k)

    monkeypatch.setattr(run_mod, "train_one_epoch", crash_for_jmvae)
    with pytest.raises(KeyboardInterrupt):
        reproduce.main(args)
    store = reproduce.load_store(results)
    assert set(store["mnist"]["models"]) == {"mhvae"}  # the completed run only
    mh = runs / "mnist-mhvae-e1b2-K2-n4"
    assert (mh / "metrics.json").is_file() and (runs / "mnist-jmvae-e1b2-K2-n4").is_dir()  # nothing deleted

    calls = []
    monkeypatch.setattr(run_mod, "train_one_epoch", lambda model, *a, **k: calls.append(model.config.kind)
                        or real(model, *a, **k))
    before = (mh / "metrics.json").stat().st_mtime_ns
    reproduce.main(args)  # the same command continues: MHVAE reused, JMVAE trained
    assert calls == ["jmvae"] and (mh / "metrics.json").stat().st_mtime_ns == before
    store = reproduce.load_store(results)
    assert set(store["mnist"]["models"]) == {"mhvae", "jmvae"}
    text = results.read_text()
    assert "ours MHVAE − ours JMVAE" in text and "paper MHVAE" in text and "Not run here yet." in text
    entry = store["mnist"]["models"]["mhvae"]
    assert entry["wall_s"] == pytest.approx(entry["train_wall_s"] + entry["eval_wall_s"])
    assert all(math.isfinite(v) for v in entry["standard_errors"].values())

    reproduce.main(args + ["--restart"])  # explicit: both folders start over
    assert calls == ["jmvae", "mhvae", "jmvae"]
    assert json.loads((mh / "metrics.json").read_text())["train_epochs"] == 1

    one = ARGS + ["--models", "jmvae", "--results", str(results), "--runs", str(runs)]
    reproduce.main(one)  # another command with the same budget keeps the other model's numbers
    assert calls == ["jmvae", "mhvae", "jmvae"] and set(reproduce.load_store(results)["mnist"]["models"]) == {
        "mhvae", "jmvae"}
    assert "Commands: " in results.read_text()


def test_render_only_keeps_old_entries_and_appended_sections(tmp_path):
    results = tmp_path / "RESULTS.md"
    old = {"mnist": {"command": "python pretrain/reproduce.py --dataset mnist", "date": "2026-11-25", "full": False,
                     "machine": "x86_64", "budget": {"epochs": 3, "eval_samples": 100, "test_points": 1000,
                                                     "test_split_size": 10500},
                     "models": {"mhvae": {"values": {"log p(x1) | x1": -121.84}, "wall_s": 84.0}}}}
    reproduce.write_results(old, results)
    results.write_text(results.read_text() + "\n## Another section\n\nkept\n")
    reproduce.main(["--render-only", "--results", str(results)])
    text = results.read_text()
    assert "| log p(x1) | x1 | -90.19 | — | -89.05 | -121.84 | not comparable (K = 100) |" in text
    assert text.rstrip().endswith("kept") and reproduce.load_store(results) == old


def test_numbers_live_in_a_json_file_beside_the_markdown(tmp_path):
    """No JSON inside the Markdown; a results file in the older layout (JSON block) is read and migrated."""
    results = tmp_path / "RESULTS.md"
    store = {"mnist": {"command": "c", "date": "d", "full": False, "machine": "m",
                       "budget": {"epochs": 1, "eval_samples": 10, "test_points": 5, "test_split_size": 10500},
                       "models": {"mhvae": {"values": {"log p(x1) | x1": -100.0}, "wall_s": 1.0}}}}
    legacy = reproduce.render(store) + f"{reproduce.LEGACY_DATA_MARK}\n{json.dumps(store)}\n-->\n\n## Appended\n\nkept\n"
    results.write_text(legacy)
    assert reproduce.load_store(results) == store
    reproduce.write_results(reproduce.load_store(results), results)
    text = results.read_text()
    assert "reproduce-data" not in text and '"models"' not in text
    assert json.loads(reproduce.store_path(results).read_text()) == store
    assert text.rstrip().endswith("kept") and text.count("## Appended") == 1
    reproduce.write_results(store, results)  # a second write keeps the appended section once
    assert results.read_text().count("## Appended") == 1


def test_record_stores_evaluations_made_by_run_py(tmp_path, fake_mnist):
    """--record puts runs trained and evaluated with pretrain/run.py (own warm-ups, own K) into RESULTS.md:
    each model's own budget, U_b from the baseline, REDUCED unless every setting is the paper's."""
    results, evals = tmp_path / "RESULTS.md", []
    base = {"dataset": "mnist", "epochs": 1, "max_train_batches": 2, "eval_samples": 2, "eval_points": 4,
            "progress": False, "tensorboard": False, "figures": False, "device": "cpu"}
    for kind, warmups in (("mhvae", {"warmup_modality_epochs": 3, "warmup_core_epochs": 4}),
                          ("jmvae", {"warmup_epochs": 5})):
        rd = tmp_path / f"{kind}-run"
        run_mod.ex.run("main", config_updates=dict(base, model=kind, run_dir=str(rd), evaluate_after=False,
                                                   **warmups), options={"--loglevel": "ERROR"})
        evals.append(rd / "eval")
        run_mod.ex.run("evaluate", config_updates=dict(base, checkpoint=str(rd / "checkpoints" / "best.pt"),
                                                       eval_dir=str(rd / "eval")), options={"--loglevel": "ERROR"})
    with pytest.raises(SystemExit, match="one command"):
        reproduce.main(["--record", *map(str, evals), "--commands", "only one", "--results", str(results)])
    assert not results.exists()  # refused before anything was written
    reproduce.main(["--record", *map(str, evals), "--commands", "train mhvae", "train jmvae",
                    "--results", str(results), "--machine", "test machine"])
    entry = reproduce.load_store(results)["mnist"]
    assert set(entry["models"]) == {"mhvae", "jmvae"} and entry["full"] is False
    assert entry["models"]["mhvae"]["budget"]["warmup_core_epochs"] == 4
    assert entry["models"]["jmvae"]["budget"]["eval_samples"] == 2
    text = results.read_text()
    assert "U_m = 3, U_c = 4, U_b = 5" in text and "Budget (REDUCED)" in text and "test machine" in text
    assert "`train mhvae`; `train jmvae`" in text
    values = json.loads((evals[0] / "metrics.json").read_text())["values"]
    assert entry["models"]["mhvae"]["values"] == values

    # the same models at another K (e.g. the paper's, merged from shards): a second table under the first
    with pytest.raises(SystemExit, match="needs --command"):
        reproduce.main(["--record-at-k", *map(str, evals), "--results", str(results)])
    reproduce.main(["--record-at-k", *map(str, evals), "--command", "evaluate at K", "--results", str(results)])
    at_k = reproduce.load_store(results)["mnist"]["at_k"]["2"]
    assert at_k["models"]["mhvae"]["values"] == values and at_k["models"]["jmvae"]["budget"]["warmup_epochs"] == 5
    assert set(at_k["paired_se"]) == set(values)
    text = results.read_text()
    assert "### The same models at K = 2" in text and "`evaluate at K`" in text
    assert text.index("### The same models at K = 2") < text.index("## Table 2")
    entry_before = reproduce.load_store(results)
    with pytest.raises(SystemExit, match="each must be one of the table's models, once"):
        reproduce.main(["--record-at-k", str(evals[0]), str(evals[0]), "--command", "x", "--results", str(results)])
    assert reproduce.load_store(results) == entry_before

    # a third model at the same budget, its table-mates' folders gone: added beside them, nothing of theirs lost
    rd = tmp_path / "mvae-run"
    run_mod.ex.run("main", config_updates=dict(base, model="mvae", run_dir=str(rd), evaluate_after=False,
                                               warmup_epochs=5), options={"--loglevel": "ERROR"})
    run_mod.ex.run("evaluate", config_updates=dict(base, checkpoint=str(rd / "checkpoints" / "best.pt"),
                                                   eval_dir=str(rd / "eval")), options={"--loglevel": "ERROR"})
    for folder in (tmp_path / "mhvae-run", tmp_path / "jmvae-run"):
        shutil.rmtree(folder)
    reproduce.main(["--record", str(rd / "eval"), "--commands", "train mvae", "--results", str(results)])
    merged = reproduce.load_store(results)["mnist"]
    assert set(merged["models"]) == {"mhvae", "jmvae", "mvae"}
    assert {k: merged["models"][k] for k in ("mhvae", "jmvae")} == {k: entry["models"][k] for k in ("mhvae", "jmvae")}
    assert merged["at_k"] == entry_before["mnist"]["at_k"] and "`train mvae`" in results.read_text()

    # a longer budget (the paper's 500 epochs after 50): its table comes first, the earlier one stays below it;
    # its training time from the run's summary.json when the evaluation (of a shipped file) has no history
    rd = tmp_path / "long-run"
    run_mod.ex.run("main", config_updates=dict(base, model="mhvae", epochs=2, run_dir=str(rd), evaluate_after=False),
                   options={"--loglevel": "ERROR"})
    run_mod.ex.run("evaluate", config_updates=dict(base, checkpoint=str(rd / "checkpoints" / "best.pt"),
                                                   eval_dir=str(rd / "eval")), options={"--loglevel": "ERROR"})
    metrics = json.loads((rd / "eval" / "metrics.json").read_text())
    (rd / "eval" / "metrics.json").write_text(json.dumps({**metrics, "train_wall_s": None}))
    reproduce.main(["--record", str(rd / "eval"), "--commands", "train longer", "--results", str(results)])
    longer = reproduce.load_store(results)["mnist"]
    assert set(longer["models"]) == {"mhvae"} and longer["models"]["mhvae"]["budget"]["epochs"] == 2
    assert longer["earlier"] == [merged]  # nothing of the earlier table lost
    train_s = json.loads((rd / "summary.json").read_text())["train_wall_s"]
    assert train_s > 0 and longer["models"]["mhvae"]["train_wall_s"] == train_s
    text = results.read_text()
    assert text.index("`train longer`") < text.index("at an earlier budget: 1 epochs") \
        < text.index("#### The same models at K = 2") < text.index("## Table 2")
    reproduce.main(["--record", str(tmp_path / "mvae-run" / "eval"), "--commands", "train mvae again",
                    "--results", str(results)])  # back to the earlier budget: merged there, the longer one kept
    again = reproduce.load_store(results)["mnist"]
    assert set(again["models"]) == {"mhvae", "jmvae", "mvae"} and again["earlier"][0]["models"] == longer["models"]


def test_k_curve_writes_each_rows_mean_at_every_k_and_a_figure(tmp_path, monkeypatch):
    from mhvae_perception import presets, save_checkpoint
    from pretrain import k_curve

    splits = synthetic_mnist()
    monkeypatch.setattr(data, "load_dataset", lambda name, split_seed=0, root=None, path=None: splits)
    ck = save_checkpoint(tmp_path / "m.pt", presets.build("mnist"))
    out = tmp_path / "curve.png"
    k_curve.main(["--models", str(ck), "--points", "4", "--batch", "2", "--ks", "5", "2", "--out", str(out)])
    record = json.loads(out.with_suffix(".json").read_text())
    assert out.is_file() and record["ks"] == [2, 5] and record["points"] == 4
    curve = record["models"][str(ck)]
    model = load_model(ck)  # building a model draws random numbers: before the seed
    torch.manual_seed(12345)
    expected = [estimators.paper_rows_at(model, b, [2, 5]) for b in splits.test.iter_batches(2, limit=4)]
    for k in (2, 5):
        mean = float(torch.cat([e[k]["log p(x1,x2) | x2"] for e in expected]).double().mean())
        assert curve[str(k)]["log p(x1,x2) | x2"]["mean"] == pytest.approx(mean, rel=1e-9)


def load_model(path):
    from mhvae_perception.hub import resolve_model

    return resolve_model(path)[0]


def test_dataset_all_runs_tables_1_to_3_in_turn(tmp_path, monkeypatch):
    """--dataset all: each of the paper's datasets with the same arguments, each stored under its own name."""
    seen = []

    def fake_run_model(args, model):
        seen.append((args.dataset, model))
        metrics = {"values": {"log p(x1) | x1": -1.0}, "num_samples": 2, "test_points": 4, "test_split_size": 4}
        return metrics, {"run_dir": f"runs/{args.dataset}-{model}"}

    monkeypatch.setattr(reproduce, "run_model", fake_run_model)
    results = tmp_path / "RESULTS.md"
    reproduce.main(["--dataset", "all", "--models", "mhvae", "--epochs", "1", "--results", str(results)])
    assert seen == [(d, "mhvae") for d in paper.TABLES]
    assert set(reproduce.load_store(results)) == set(paper.TABLES)
