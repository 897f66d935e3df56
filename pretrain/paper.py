"""The paper's protocol and published numbers, in one place (data only).

Source: M. Vasco, F. S. Melo, A. Paiva (2020), *MHVAE: a Human-Inspired Deep Hierarchical Generative Model for
Multimodal Representation Learning*, arXiv 2006.02991, Tables 1-3 (test-set log-likelihoods in nats, higher
is better, estimated with K importance samples). Each table has the same five rows, in the order of
``mhvae_perception.evaluation.estimators.PAPER_ROWS``: log p(x1) from x1 (I); log p(x1,x2) from x1 (I), from x2 (A, the
label or attributes), from both (I,A); log p(x1|x2) from x2 (A). x1 is the image, x2 the label (MNIST,
FashionMNIST) or the 18 attributes (CelebA). The values below were transcribed from those tables for this
project; ``None`` marks a cell the paper does not report.
"""
from __future__ import annotations

from typing import Optional

SOURCE = ("Vasco, Melo & Paiva (2020), MHVAE: a Human-Inspired Deep Hierarchical Generative Model for Multimodal "
          "Representation Learning, arXiv 2006.02991")

#: The paper's row keys, in the paper's order (the same keys as ``estimators.PAPER_ROWS``).
ROW_KEYS = ("log p(x1) | x1", "log p(x1,x2) | x1", "log p(x1,x2) | x2", "log p(x1,x2) | x1,x2", "log p(x1|x2) | x2")

#: Per dataset: the table, its title, x1 and x2, and the paper's K (importance samples per test point).
TABLES: dict[str, dict] = {
    "mnist": {"table": "Table 1", "title": "MNIST", "x1": "image", "x2": "label", "K": 5000},
    "fashionmnist": {"table": "Table 2", "title": "FashionMNIST", "x1": "image", "x2": "label", "K": 5000},
    "celeba": {"table": "Table 3", "title": "CelebA", "x1": "image", "x2": "attributes", "K": 500},
}

#: The paper's training protocol per dataset (section 5): the run.py defaults for these datasets.
PROTOCOL: dict[str, dict] = {
    "mnist": dict(epochs=500, lr=1e-3, batch_size=64, warmup_modality_epochs=100, warmup_core_epochs=200,
                  warmup_epochs=200, eval_samples=5000),
    "fashionmnist": dict(epochs=500, lr=1e-3, batch_size=64, warmup_modality_epochs=100, warmup_core_epochs=200,
                         warmup_epochs=200, eval_samples=5000),
    "celeba": dict(epochs=50, lr=1e-4, batch_size=128, warmup_modality_epochs=5, warmup_core_epochs=10,
                   warmup_epochs=10, eval_samples=500),
}

_MVAE_MNIST_NOTE = "not reported: the paper could not train MVAE on MNIST"

#: PAPER_RESULTS[dataset][model] = the five rows in ROW_KEYS order, or None when the paper reports none.
PAPER_RESULTS: dict[str, dict[str, Optional[tuple[float, ...]]]] = {
    "mnist": {  # Table 1, K = 5000
        "jmvae": (-90.189, -90.241, -125.381, -90.335, -123.070),
        "mvae": None,
        "mhvae": (-89.050, -89.183, -121.401, -89.143, -118.856),
    },
    "fashionmnist": {  # Table 2, K = 5000
        "jmvae": (-232.427, -232.739, -244.378, -232.573, -242.060),
        "mvae": (-236.613, -242.628, -557.582, -241.534, -552.679),
        "mhvae": (-231.753, -232.276, -243.932, -232.248, -241.662),
    },
    "celeba": {  # Table 3, K = 500
        "jmvae": (-6260.35, -6264.59, -7204.36, -6262.67, -7191.11),
        "mvae": (-6256.65, -6270.86, -7316.12, -6266.14, -7309.10),
        "mhvae": (-6271.35, -6278.19, -7303.64, -6276.57, -7296.22),
    },
}

#: Why a cell is missing, per (dataset, model).
NOTES: dict[tuple[str, str], str] = {("mnist", "mvae"): _MVAE_MNIST_NOTE}


def paper_value(dataset: str, model: str, row: str) -> Optional[float]:
    """The paper's value of ``row`` for ``model`` on ``dataset``; None where the paper has none (other
    datasets, MVAE on MNIST, rows the paper does not have)."""
    values = PAPER_RESULTS.get(dataset, {}).get(model)
    if values is None or row not in ROW_KEYS:
        return None
    return values[ROW_KEYS.index(row)]


def source_of(dataset: str) -> Optional[str]:
    """``"<paper>, Table N (<title>, K = ...)"`` for a dataset the paper evaluates, else None."""
    t = TABLES.get(dataset)
    return None if t is None else f"{SOURCE}, {t['table']} ({t['title']}, K = {t['K']})"
