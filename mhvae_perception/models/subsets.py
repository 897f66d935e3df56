"""Random modality subsets with "at least one survives": the one sampler behind the model's modality
representation dropout (MRD) and the sensor-failure wrappers, and the one parser of failure probabilities.

Each modality i is dropped (fails) independently with probability p_i, conditioned on at least one being kept.
The conditional distribution of the keep mask k is, for every non-empty subset S,

    P(k = 1_S) = prod_{i in S} (1 - p_i) prod_{i not in S} p_i / (1 - prod_i p_i),

so the marginal keep rate is (1 - p_i) / (1 - prod_j p_j). It is sampled exactly and in bounded time (no
rejection loop, which hangs as p -> 1) by sequential conditioning: while nothing has been kept yet, modality i
is kept with probability (1 - p_i) / P(at least one of i..n kept); once one is kept the rest are independent
with their unconditional keep probabilities. P(at least one of i..n kept) = -expm1(sum_{j >= i} log p_j) is
computed in float64 so that p = 1 - 1e-12 stays exact. If every p_i is exactly 1 the condition has probability
0; we then keep exactly one modality, chosen uniformly (the limit of equal p_i -> 1).
"""
from __future__ import annotations

import functools
import math
import warnings
from typing import Mapping, Sequence, Union

import numpy as np
import torch

FailureSpec = Union[float, int, Mapping[str, float]]

__all__ = ["keep_thresholds", "keep_from_uniforms", "sample_keep_mask", "keep_mask_from_thresholds", "mask_dtype",
           "sample_keep", "subset_probabilities", "parse_failure_probs"]


def keep_thresholds(fail_probs: torch.Tensor | Sequence[float] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, first) float64 thresholds of the sequential sampler, each of shape (n,).

    ``keep[i] = 1 - p_i`` is used once some earlier modality was kept; ``first[i]`` is the probability of
    keeping modality i given that none before it was kept (and that at least one of i..n will be).
    """
    p = torch.as_tensor(fail_probs, dtype=torch.float64)
    if p.ndim != 1 or p.numel() == 0:
        raise ValueError(f"fail_probs must be a non-empty 1-d sequence of probabilities, got shape {tuple(p.shape)}")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"failure / dropout probabilities must lie in [0, 1], got {p.tolist()}")
    keep = 1.0 - p
    # log P(all of i..n dropped) = sum_{j>=i} log p_j, a reversed cumulative sum; log1p(-keep) is exact near p=1
    log_all_dropped = torch.flip(torch.cumsum(torch.flip(torch.log1p(-keep), [0]), 0), [0])
    any_kept = -torch.expm1(log_all_dropped)  # P(at least one of i..n kept)
    first = torch.where(any_kept > 0, keep / any_kept.clamp_min(torch.finfo(torch.float64).tiny),
                        torch.zeros_like(keep)).clamp(0.0, 1.0)
    if not bool(any_kept[0] > 0):  # every p_i == 1: keep exactly one, uniformly
        n = p.numel()
        first = 1.0 / torch.arange(n, 0, -1, dtype=torch.float64, device=p.device)
        keep = torch.zeros_like(keep)
    return keep, first


def keep_from_uniforms(uniforms, keep, first):
    """Boolean keep mask (B, n) from uniforms in [0, 1) of shape (B, n) and :func:`keep_thresholds`.

    Written with operations that NumPy arrays and torch tensors share, so both entry points below run this
    same code (``keep``/``first`` must be on the uniforms' device / of their array type).
    """
    mask = uniforms < -1.0  # all False, same shape, array type and device
    kept_any = uniforms[..., 0] < -1.0
    for i in range(uniforms.shape[-1]):
        kept = uniforms[..., i] < first[i] + kept_any * (keep[i] - first[i])  # first[i] until one is kept
        mask[..., i] = kept
        kept_any = kept_any | kept
    return mask


def sample_keep_mask(fail_probs: torch.Tensor | Sequence[float], batch_size: int,
                     generator: torch.Generator | None = None, device: torch.device | str | None = None
                     ) -> torch.Tensor:
    """(batch_size, n) boolean mask, True = kept, exactly from the conditional law above (torch RNG)."""
    probs = torch.as_tensor(fail_probs)
    return keep_mask_from_thresholds(keep_thresholds(probs), batch_size, probs.device if device is None else device,
                                     generator)


def mask_dtype(device: torch.device) -> torch.dtype:
    """The sampler's floating type on ``device``: float64 resolves p = 1 - 1e-12; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def keep_mask_from_thresholds(thresholds: tuple[torch.Tensor, torch.Tensor], batch_size: int,
                              device: torch.device | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """:func:`sample_keep_mask` from thresholds computed once (:func:`keep_thresholds`): no data-dependent
    check runs, so a compiled training step draws its mask inside one graph (the checks are Python branches on
    tensor values, each a graph break)."""
    device = torch.device(device)
    dtype = mask_dtype(device)
    keep, first = (t.to(device=device, dtype=dtype) for t in thresholds)  # no copy when they are there already
    uniforms = torch.rand(int(batch_size), keep.shape[0], generator=generator, device=device, dtype=dtype)
    return keep_from_uniforms(uniforms, keep, first)


@functools.lru_cache(maxsize=256)
def _numpy_thresholds(fail_probs: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    keep, first = keep_thresholds(list(fail_probs))
    return keep.numpy(), first.numpy()


def sample_keep(fail_probs: Sequence[float] | np.ndarray, rng: np.random.Generator,
                size: int | None = None) -> np.ndarray:
    """NumPy counterpart of :func:`sample_keep_mask` (same sampler): a bool (n,) mask, or (size, n).

    The thresholds of each distinct probability vector are computed once (a wrapper draws every step)."""
    keep, first = _numpy_thresholds(tuple(float(v) for v in np.asarray(fail_probs, dtype=np.float64).ravel()))
    uniforms = rng.random((1 if size is None else int(size), len(keep)))
    mask = keep_from_uniforms(uniforms, keep, first)
    return mask[0] if size is None else mask


def subset_probabilities(fail_probs: Sequence[float]) -> dict[tuple[int, ...], float]:
    """Closed-form P(kept subset = S) for every non-empty S (indices); for checking the sampler."""
    p = [float(v) for v in fail_probs]
    n = len(p)
    none_kept = math.prod(p)
    out = {}
    for bits in range(1, 1 << n):
        subset = tuple(i for i in range(n) if bits >> i & 1)
        if none_kept < 1.0:
            weight = math.prod((1 - p[i]) if i in subset else p[i] for i in range(n))
            out[subset] = weight / (1.0 - none_kept)
        else:  # every p_i == 1: one modality, uniformly
            out[subset] = 1.0 / n if len(subset) == 1 else 0.0
    return out


def parse_failure_probs(p: FailureSpec, sensors: Sequence[str], what: str = "failure probability") -> np.ndarray:
    """Per-sensor failure probabilities (float64, in ``sensors`` order) from a float or a ``{sensor: p}`` dict
    (missing sensors never fail). Probabilities must lie in [0, 1]; with a single sensor p has no effect (it
    always survives), which is warned about rather than silently ignored."""
    sensors = tuple(sensors)
    if isinstance(p, Mapping):
        unknown = [k for k in p if k not in sensors]
        if unknown:
            raise ValueError(f"{what} given for unknown sensor {unknown[0]!r}; the sensors are {sensors}")
        values = [p.get(n, 0.0) for n in sensors]
    elif isinstance(p, (int, float, np.floating, np.integer)) and not isinstance(p, bool):
        values = [p] * len(sensors)
    else:
        raise TypeError(f"{what} must be a number or a {{sensor: probability}} dict, got {type(p).__name__}")
    try:
        probs = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what} values must be numbers, got {values}") from None
    bad = [(n, v) for n, v in zip(sensors, probs.tolist()) if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"{what} of sensor {bad[0][0]!r} is {bad[0][1]}; it must lie in [0, 1] "
                         f"(1 = always fails unless it is the last one left)")
    if len(sensors) == 1 and probs[0] > 0:
        warnings.warn(f"{what} {probs[0]} has no effect with a single sensor {sensors[0]!r}: at least one sensor "
                      f"always survives; give two or more sensors to study failures", UserWarning, stacklevel=3)
    return probs
