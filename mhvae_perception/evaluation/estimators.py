"""Importance-sampled log-likelihoods (the paper's metrics), with bounded memory for any K.

    log p(x_T) ≈ log (1/K) sum_k w_k,   w_k = p(x_T, latents_k) / proposal(latents_k | x_S)

for an input subset S (what the proposal sees) and a target subset T (what is scored). Each model draws its
own proposal and computes every density of its generative model and its proposal (``log_importance_weights``).
The K samples are drawn in chunks and accumulated with logsumexp, so memory depends on the chunk, not on K;
all data points of a batch are processed together.

The conditional row of the paper, log p(x1 | x2) from x2, is estimated as
log p̂(x1, x2 | proposal from x2) - log p̂(x2 | proposal from x2) from the same K proposal samples. Their
ratio is the *self-normalised* importance-sampling estimate sum_k w_k p(x1 | latents_k) / sum_k w_k of
p(x1 | x2) = E_p(latents | x2)[p(x1 | latents)]: consistent as K grows, but biased at finite K -- low in
practice (its x2-only proposal rarely hits latents that explain x1), and still rising with K at the paper's
K = 5000. Beside it, :data:`EXTRA_ROWS` adds a tighter estimate of the same quantity,
log p̂(x1, x2 | proposal from x1 and x2) - log p̂(x2 | proposal from x2): the joint term's proposal sees
both modalities, so its downward (Jensen) bias is much smaller; the difference of two small biases can
have either sign, and it costs nothing (both queries are among the paper's).
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..models.base import Batch, MultimodalVAE, Query
from ..models.networks import fused_for_inference

# Values per decoded tensor in one chunk (~25 MB of float32): bounds the memory of a chunk, and stays under
# glibc's largest reusable heap block, so chunks reuse memory instead of page-faulting fresh mappings.
CHUNK_ELEMENTS = 8192 * 784


def default_chunk_size(model, batch_size: int) -> int:
    """Samples per chunk so that samples x data points x widest decoded tensor <= ``CHUNK_ELEMENTS``."""
    widest = 512
    if isinstance(model, MultimodalVAE):
        widest = max(widest, *(m.size for m in model.config.modalities))
    return max(1, CHUNK_ELEMENTS // widest // max(1, batch_size))


def log_likelihoods(model: MultimodalVAE, batch: Batch, queries: Sequence[Query], num_samples: int = 5000,
                    chunk_size: int | None = None) -> dict[Query, torch.Tensor]:
    """log p̂(x_T) per data point for each query, with ``num_samples`` importance samples.

    ``chunk_size`` samples are drawn at a time (default: :func:`default_chunk_size`).
    Runs under ``torch.no_grad`` on an eval-mode copy of the model with BatchNorm folded into the linear
    layers (the caller's model is not changed).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    return log_likelihoods_at(model, batch, queries, [num_samples], chunk_size)[num_samples]


def log_likelihoods_at(model: MultimodalVAE, batch: Batch, queries: Sequence[Query], ks: Sequence[int],
                       chunk_size: int | None = None) -> dict[int, dict[Query, torch.Tensor]]:
    """The estimates of :func:`log_likelihoods` at every K of ``ks`` from ONE stream of max(ks) samples: the
    estimate at K uses the stream's first K samples (how an estimate moves with K, at the cost of the largest)."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"num_samples must be >= 1, got {ks[0] if ks else None} (K values asked: {ks})")
    batch_size = len(next(iter(batch.values())))
    if chunk_size is None:
        chunk_size = default_chunk_size(model, batch_size)
    chunk_size = min(int(chunk_size), ks[-1])
    if isinstance(model, MultimodalVAE):
        model = fused_for_inference(model)  # an eval-mode copy: the caller's model is left as it was
    out: dict[int, dict[Query, torch.Tensor]] = {}
    with torch.no_grad():
        totals: dict[Query, torch.Tensor] | None = None
        done = 0
        for target in ks:
            while done < target:
                k = min(chunk_size, target - done)  # chunks end at every K asked for
                weights = model.log_importance_weights(batch, queries, k)
                chunk = {q: torch.logsumexp(w, dim=0) for q, w in weights.items()}
                totals = chunk if totals is None else {q: torch.logaddexp(totals[q], chunk[q]) for q in totals}
                done += k
            out[target] = {q: v - math.log(target) for q, v in totals.items()}
    return out


def log_likelihood(model: MultimodalVAE, batch: Batch, inputs: Sequence[str], targets: Sequence[str],
                   num_samples: int = 5000, chunk_size: int | None = None) -> torch.Tensor:
    """log p̂(x_targets) per data point with a proposal that sees ``inputs``."""
    query = Query(tuple(inputs), tuple(targets))
    return log_likelihoods(model, batch, [query], num_samples, chunk_size)[query]


# (row key, metric, input) in the paper's order; x1 is the first modality (image), x2 the second.
PAPER_ROWS: list[tuple[str, str, str]] = [
    ("log p(x1) | x1", "log p(x1)", "x1"),
    ("log p(x1,x2) | x1", "log p(x1,x2)", "x1"),
    ("log p(x1,x2) | x2", "log p(x1,x2)", "x2"),
    ("log p(x1,x2) | x1,x2", "log p(x1,x2)", "x1,x2"),
    ("log p(x1|x2) | x2", "log p(x1|x2)", "x2"),
]

# Rows beyond the paper, returned by paper_rows after the paper's five (same key layout).
TIGHTER_CONDITIONAL_ROW = "log p(x1|x2) | x12-x2"
EXTRA_ROWS: list[tuple[str, str, str]] = [
    (TIGHTER_CONDITIONAL_ROW, "log p(x1|x2)", "x1,x2 (joint) and x2 (marginal)"),
]
ALL_ROWS: list[tuple[str, str, str]] = PAPER_ROWS + EXTRA_ROWS


def paper_rows(model: MultimodalVAE, batch: Batch, num_samples: int = 5000, chunk_size: int | None = None,
               x1: str | None = None, x2: str | None = None) -> dict[str, torch.Tensor]:
    """The paper's five rows per data point (keys of :data:`PAPER_ROWS`) and then :data:`EXTRA_ROWS`, from
    three proposal passes (inputs x1, x2 and both) shared by all rows.

    Row 5, ``"log p(x1|x2) | x2"``, is the paper's self-normalised estimate (biased low at finite K, still
    rising with K); ``"log p(x1|x2) | x12-x2"`` estimates the same log p(x1 | x2) as
    log p̂(x1,x2 | x1,x2) - log p̂(x2 | x2), tighter (see the module docstring).
    """
    return paper_rows_at(model, batch, [num_samples], chunk_size, x1, x2)[num_samples]


def paper_rows_at(model: MultimodalVAE, batch: Batch, ks: Sequence[int], chunk_size: int | None = None,
                  x1: str | None = None, x2: str | None = None) -> dict[int, dict[str, torch.Tensor]]:
    """:func:`paper_rows` at every K of ``ks``, from one stream of max(ks) samples (see :func:`log_likelihoods_at`)."""
    names = tuple(model.modality_names)
    if len(names) < 2:
        raise ValueError(f"paper_rows needs a model with two modalities (x1, x2), this one has {names}; use "
                         f"log_likelihood(model, batch, inputs, targets) for other questions")
    x1 = x1 or names[0]
    x2 = x2 or names[1]
    if x1 == x2 or x1 not in names or x2 not in names:
        raise ValueError(f"x1 and x2 must be two different modalities of the model {names}, got {x1!r} and {x2!r}")
    q = {
        "x1>x1": Query((x1,), (x1,)),
        "x1>x12": Query((x1,), (x1, x2)),
        "x2>x12": Query((x2,), (x1, x2)),
        "x12>x12": Query((x1, x2), (x1, x2)),
        "x2>x2": Query((x2,), (x2,)),
    }
    return {k: {
        PAPER_ROWS[0][0]: est[q["x1>x1"]],
        PAPER_ROWS[1][0]: est[q["x1>x12"]],
        PAPER_ROWS[2][0]: est[q["x2>x12"]],
        PAPER_ROWS[3][0]: est[q["x12>x12"]],
        PAPER_ROWS[4][0]: est[q["x2>x12"]] - est[q["x2>x2"]],
        TIGHTER_CONDITIONAL_ROW: est[q["x12>x12"]] - est[q["x2>x2"]],
    } for k, est in log_likelihoods_at(model, batch, list(q.values()), ks, chunk_size).items()}


def paper_table(model: MultimodalVAE, batches: Iterable[Mapping[str, torch.Tensor]], num_samples: int = 5000,
                chunk_size: int | None = None, progress: bool = True) -> dict[str, float]:
    """Mean of each row of :func:`paper_rows` (the paper's five, then :data:`EXTRA_ROWS`) over all data points
    of ``batches`` (an iterable of batch dicts)."""
    sums: dict[str, float] = {}
    count = 0
    for batch in tqdm(batches, desc=f"log-likelihoods (K={num_samples})", disable=not progress):
        rows = paper_rows(model, batch, num_samples, chunk_size)
        for key, value in rows.items():
            sums[key] = sums.get(key, 0.0) + float(value.double().sum())
        count += len(next(iter(rows.values())))
    if count == 0:
        raise ValueError("paper_table got no data points")
    return {key: value / count for key, value in sums.items()}
