"""Markdown tables of test log-likelihoods with the paper's numbers beside ours (run.py and reproduce.py).

Columns: the paper's JMVAE / MVAE / MHVAE (datasets of the paper only), then ours per model with its budget in
the header, then per row the differences ours MHVAE - paper MHVAE (ours - paper of the model when only one
non-MHVAE model is shown) and ours MHVAE - ours JMVAE. Our cells are ``mean ± standard error over test points``
(std / sqrt(n) of the per-point estimates) when the evaluation recorded it. Rows follow the paper's order; rows
only we have (e.g. a tighter log p(x1|x2) estimate) come after, with "—" in the paper columns.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from mhvae_perception.models.registry import MODEL_KINDS
from pretrain import paper

PAPER_MODELS = ("jmvae", "mvae", "mhvae")
LABEL = {"mhvae": "MHVAE", "jmvae": "JMVAE", "mvae": "MVAE"}


def md(text) -> str:
    """Escape a table cell for Markdown (the conditional rows contain '|')."""
    return str(text).replace("|", "\\|")


def _cell(value: Optional[float], se: Optional[float] = None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—" if value is None else str(value)
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text + (f" ± {se:.2f}" if se is not None and math.isfinite(se) else "")


def budget_text(budget: Mapping) -> str:
    """``"3 ep, K = 100, n = 1000"`` from a run's budget (epochs, max_train_batches, eval_samples, test_points)."""
    parts = [f"{budget['epochs']} ep" + (f" x {budget['max_train_batches']} batches"
                                         if budget.get("max_train_batches") else "")]
    if budget.get("eval_samples") is not None:
        parts.append(f"K = {budget['eval_samples']}")
    if budget.get("test_points") is not None:
        parts.append(f"n = {budget['test_points']}")
    return ", ".join(parts)


def table_rows(ours: Mapping[str, Mapping]) -> list[tuple[str, str, str]]:
    """(key, metric, input) of the paper's rows, then of the rows only our results have."""
    from mhvae_perception.evaluation.estimators import PAPER_ROWS

    rows = [tuple(r) for r in PAPER_ROWS]
    known = {r[0] for r in rows}
    for result in ours.values():
        for r in result.get("rows", []):
            if r["row"] not in known:
                rows.append((r["row"], r.get("metric", r["row"]), r.get("input", "")))
                known.add(r["row"])
        for key in result.get("values", {}):
            if key not in known:
                metric, _, inp = key.partition(" | ")
                rows.append((key, metric, inp))
                known.add(key)
    return rows


def comparison_table(dataset: str, ours: Mapping[str, Mapping], paired_se: Optional[Mapping[str, float]] = None
                     ) -> list[str]:
    """Markdown lines of the table for ``dataset``; ``ours[model]`` has ``values`` {row: mean}, optionally
    ``standard_errors`` {row: se}, ``rows`` (the evaluation's row records) and ``budget`` (see
    :func:`budget_text`). ``paired_se`` {row: se}: the standard errors of ours MHVAE - ours JMVAE paired over the
    test points both saw (else the unpaired √(SE₁² + SE₂²) is shown).

    "ours - paper" is filled only where our K equals the paper's: the estimates rise with K (by tens of nats on
    the rows proposed from the label), so a difference at another K measures K as much as the model."""
    in_paper = dataset in paper.PAPER_RESULTS
    models = [m for m in MODEL_KINDS if m in ours] + [m for m in ours if m not in MODEL_KINDS]
    header = ["metric", "input"]
    if in_paper:
        header += [f"paper {LABEL[m]}" for m in PAPER_MODELS]
    for m in models:
        b = ours[m].get("budget")
        header.append(f"ours {LABEL.get(m, m)}" + (f" ({budget_text(b)})" if b else ""))
    vs_paper = "mhvae" if "mhvae" in ours else (models[0] if len(models) == 1 else None)
    if not in_paper or vs_paper not in PAPER_MODELS or paper.PAPER_RESULTS[dataset].get(vs_paper) is None:
        vs_paper = None
    if vs_paper:
        header.append(f"ours {LABEL[vs_paper]} − paper {LABEL[vs_paper]}")
    both = "mhvae" in ours and "jmvae" in ours
    if both:
        header.append("ours MHVAE − ours JMVAE")
    lines = ["| " + " | ".join(md(h) for h in header) + " |", "|" + "---|" * len(header)]
    paper_k = paper.PROTOCOL.get(dataset, {}).get("eval_samples")
    our_k = (ours[vs_paper].get("budget") or {}).get("eval_samples") if vs_paper else None
    same_k = our_k is None or our_k == paper_k

    def ours_of(m: str, row: str) -> tuple[Optional[float], Optional[float]]:
        return ours[m].get("values", {}).get(row), ours[m].get("standard_errors", {}).get(row)

    for key, metric, inp in table_rows(ours):
        cells = [md(metric), md(inp)]
        if in_paper:
            cells += [_cell(paper.paper_value(dataset, m, key)) if key in paper.ROW_KEYS else "—"
                      for m in PAPER_MODELS]
        cells += [_cell(*ours_of(m, key)) for m in models]
        if vs_paper:
            mine, se = ours_of(vs_paper, key)
            theirs = paper.paper_value(dataset, vs_paper, key)
            if mine is None or theirs is None:
                cells.append("—")
            else:
                cells.append(_cell(mine - theirs, se, signed=True) if same_k else f"not comparable (K = {our_k})")
        if both:
            (a, sa), (b, sb) = ours_of("mhvae", key), ours_of("jmvae", key)
            se = math.sqrt(sa ** 2 + sb ** 2) if sa is not None and sb is not None else None
            if paired_se and key in paired_se:
                se = paired_se[key]
            cells.append(_cell(a - b, se, signed=True) if a is not None and b is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if in_paper:
        notes.append(f"Paper columns: {paper.source_of(dataset)}.")
        notes += [f"Paper {LABEL[m]}: {paper.NOTES[(dataset, m)]}." for m in PAPER_MODELS if (dataset, m) in paper.NOTES]
    if any(ours[m].get("standard_errors") for m in models):
        pairing = ("paired over the test points both models saw: std of the per-point differences / sqrt(n)"
                   if paired_se else "√(SE₁² + SE₂²) for two of ours, unpaired")
        notes.append("Ours: mean ± standard error over test points (std / sqrt(n) of the per-point estimates); "
                     f"differences of ours carry their standard error ({pairing}).")
    if vs_paper and not same_k:
        notes.append(f"Ours − paper: not comparable here: ours used K = {our_k} importance samples, the paper "
                     f"K = {paper_k}; the estimates rise with K (by tens of nats on the rows proposed from x2), so "
                     f"the difference would measure K as much as the model. It is filled in only at equal K.")
    for note in notes:  # one paragraph each
        lines += ["", note]
    return lines


def ours_from_metrics(metrics: Mapping, budget: Optional[Mapping] = None) -> dict:
    """The ``ours[model]`` entry of :func:`comparison_table` from an evaluation's metrics.json content."""
    return {"values": dict(metrics.get("values", {})), "standard_errors": dict(metrics.get("standard_errors", {})),
            "rows": list(metrics.get("rows", [])), "budget": dict(budget) if budget else None}


def elbo_terms_table(elbo_terms: Mapping, splits: Sequence[str] = ("valid", "test")) -> list[str]:
    """Markdown lines of the mean ELBO terms per split (``metrics.json["elbo_terms"]``)."""
    names = list(elbo_terms[splits[-1]]["terms"])
    lines = ["| split | " + " | ".join(md(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {s} | " + " | ".join(f"{elbo_terms[s]['terms'].get(k, float('nan')):.2f}" for k in names) + " |"
              for s in splits]
    return lines


def run_results_markdown(metrics: Mapping) -> list[str]:
    """A run's results.md from its metrics.json content: the test rows beside the paper's, then the mean ELBO
    terms."""
    budget = {"epochs": metrics["train_epochs"] if metrics["train_epochs"] is not None else "?",
              "max_train_batches": metrics.get("max_train_batches"), "eval_samples": metrics["num_samples"],
              "test_points": metrics["test_points"]}
    ours = {metrics["model"]: ours_from_metrics(metrics, budget)}
    terms = metrics["elbo_terms"]
    return [f"# {metrics['dataset']} / {metrics['model']}: test log-likelihoods", "",
            f"Held-out test split, {metrics['test_points']} of {metrics['test_split_size']} points, "
            f"K = {metrics['num_samples']} importance samples; x1 = {metrics['modalities']['x1']}, "
            f"x2 = {metrics['modalities']['x2']}; checkpoint `{metrics['checkpoint']}`.", "",
            *comparison_table(metrics["dataset"], ours), "",
            f"Single-sample ELBO terms (unweighted, every modality given; means per data point, nats) on "
            f"{terms['valid']['points']} validation and {terms['test']['points']} test points:", "",
            *elbo_terms_table(terms)]
