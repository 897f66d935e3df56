"""From a Gymnasium observation to the model's input: the checks and conversions every wrapper shares.

:func:`check_observation_space` ties an environment's ``Dict`` space to a model's modalities (layouts chosen
once); :class:`ObservationAdapter` converts each observation with the data pipeline's rules (channel-last and
grey images to (C, H, W), [0, 255] to [0, 1], Discrete to one-hot) and checks it (NaN/inf, range);
:func:`encode_observations` gives z_c from any subset of the modalities.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..data.describe import SensorLayout, sensor_layout, to_model_layout
from ..models.base import MultimodalVAE
from ..models.specs import ModalitySpec, check_subset

FailureProb = Union[float, Mapping[str, float], Callable[[int], Union[float, Mapping[str, float]]]]
LayoutArg = Union[str, Mapping[str, str], None]

OUT_OF_RANGE_POLICIES = ("error", "warn", "ignore")
LAYOUTS = ("auto", "CHW", "HWC", "HW")

__all__ = ["ObservationAdapter", "NonFiniteObservationError", "OutOfRangeObservationError", "check_observation_space",
           "encode_observations", "OUT_OF_RANGE_POLICIES", "LAYOUTS"]


class NonFiniteObservationError(ValueError):
    """An observation holds NaN or inf; the wrapper refuses to encode it (it would give a NaN latent)."""


class OutOfRangeObservationError(ValueError):
    """An observation lies outside the range the model was trained on (``on_out_of_range="error"``)."""


def _subset(modalities: str | Iterable[str] | None, model: MultimodalVAE, what: str = "modalities") -> tuple[str, ...]:
    """Validated, non-empty subset of the model's modalities in the model's order."""
    if modalities is None:
        raise ValueError(f"{what} must be a non-empty subset of {model.modality_names}, got None")
    names = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    return check_subset(names, model.modality_names, what)


def _layouts(layout: LayoutArg, model: MultimodalVAE) -> dict[str, str]:
    """Per-modality layout request ("auto", "CHW", "HWC" or "HW")."""
    names = model.modality_names
    if layout is None or isinstance(layout, str):
        value = "auto" if layout is None else layout
        out = {n: value for n in names}
    elif isinstance(layout, Mapping):
        unknown = [k for k in layout if k not in names]
        if unknown:
            raise ValueError(f"layout given for unknown modality {unknown[0]!r}; the model has {names}")
        out = {n: layout.get(n, "auto") for n in names}
    else:
        raise TypeError(f"layout must be 'auto', 'CHW', 'HWC', 'HW' or a {{modality: layout}} dict, got {layout!r}")
    for name, value in out.items():
        if value not in LAYOUTS:
            raise ValueError(f"layout of {name!r} is {value!r}; choose one of {LAYOUTS}")
    return out


def _image_scale(box: spaces.Box) -> float:
    """255 for images in [0, 255] (uint8, or float with high > 1), else 1 (the rule of describe.sensor_layout)."""
    bounded = np.all(np.isfinite(box.high)) and np.all(box.low >= 0) and np.all(box.high <= 255)
    big = np.issubdtype(box.dtype, np.integer) or bool(np.any(box.high > 1))
    return 255.0 if bounded and big and float(np.max(box.high)) > 1 else 1.0


def _forced_layout(box: spaces.Box, want: str, model_shape: tuple[int, ...]) -> SensorLayout | None:
    """The image layout ``want`` if the env shape fits it for ``model_shape`` (C, H, W), else None."""
    shape = tuple(int(s) for s in box.shape)
    if len(model_shape) != 3:
        return None
    c, h, w = model_shape
    fits = {"CHW": (c, h, w), "HWC": (h, w, c), "HW": (h, w) if c == 1 else None}
    if fits.get(want) != shape:
        return None
    return SensorLayout("image", tuple(model_shape), want, _image_scale(box))


def check_observation_space(space: gym.Space, model: MultimodalVAE, layout: LayoutArg = None
                            ) -> dict[str, SensorLayout]:
    """Check that ``space`` is a Dict holding every model modality in a form the model can take, and return
    how each is converted (:class:`~mhvae_perception.data.describe.SensorLayout`).

    By default (``"auto"``) a sensor is read with the same rules as the data pipeline
    (:func:`~mhvae_perception.data.describe.sensor_layout`: CHW / HWC / HW images, uint8 or [0, 255] images scaled
    to [0, 1], Discrete one-hot), falling back to a channel-last image of the model's shape; ``layout`` forces
    an image layout. Raises a ValueError/TypeError saying what to do otherwise (extra keys are ignored).
    """
    names = model.modality_names
    if not isinstance(space, spaces.Dict):
        raise TypeError(f"the environment's observation space must be a gymnasium.spaces.Dict with keys {names} "
                        f"(one per model modality), got {space}; wrap the env so that it returns such a dict")
    missing = [n for n in names if n not in space.spaces]
    if missing:
        raise ValueError(f"the environment's observations lack modality {missing[0]!r} of the model: env keys "
                         f"{tuple(space.spaces)}, model modalities {names}; use a model trained on this "
                         f"environment's sensors or rename the observation keys")
    requested = _layouts(layout, model)
    out = {}
    for name in names:
        sub, spec = space.spaces[name], model.config.modality(name)
        if isinstance(sub, spaces.Box) and not (np.issubdtype(sub.dtype, np.floating)
                                                or np.issubdtype(sub.dtype, np.integer) or sub.dtype == np.bool_):
            raise TypeError(f"observation {name!r} has dtype {sub.dtype}; the model needs real numbers "
                            f"(float, or uint8 images in [0, 255])")
        try:
            inferred = sensor_layout(sub)
        except ValueError as err:
            raise TypeError(f"observation {name!r}: {err}") from None
        want, chw = requested[name], tuple(spec.shape)
        if want == "auto":
            found = inferred if tuple(inferred.model_shape) == chw else (
                _forced_layout(sub, "HWC", chw) if isinstance(sub, spaces.Box) else None)
        else:
            found = _forced_layout(sub, want, chw) if isinstance(sub, spaces.Box) else None
        if want == "auto" and found is not None and isinstance(sub, spaces.Box) and len(chw) == 3 \
                and _forced_layout(sub, "CHW", chw) is not None and _forced_layout(sub, "HWC", chw) is not None:
            warnings.warn(f"observation {name!r} of shape {tuple(sub.shape)} fits the model's {chw} both channel-first "
                          f"and channel-last; it is read as {found.layout or 'CHW'}. Pass layout={{{name!r}: 'CHW' | "
                          f"'HWC'}} to say which it is", UserWarning, stacklevel=3)
        if found is None:
            shape = tuple(getattr(sub, "shape", ()) or ())
            alt = f" or channel-last {(chw[1], chw[2], chw[0])}" if len(chw) == 3 else ""
            raise ValueError(f"observation {name!r} has shape {shape} ({sub}) but the model's {name!r} modality "
                             f"expects {chw}{alt} (layout {want!r}); use a model trained on this environment or "
                             f"pass layout={{{name!r}: 'CHW' | 'HWC' | 'HW'}}")
        out[name] = found
    return out


class ObservationAdapter:
    """Turns an environment's Dict entries into the model's inputs and checks them, before any encoding.

    Conversions (decided once from the observation space, the data pipeline's rules:
    :func:`~mhvae_perception.data.describe.to_model_layout`): channel-last (H, W, C) and grey (H, W) images ->
    (C, H, W); images in [0, 255] (uint8, or float Boxes with high > 1) divided by 255; Discrete -> one-hot;
    everything float32.
    Checks: NaN/inf -> :class:`NonFiniteObservationError`. Out of the training range -> ``on_out_of_range``:
    Bernoulli and categorical values outside [0, 1]; Gaussian values more than ``z_bound`` standard deviations
    from the stored normalisation mean (std floored at 1 % of the modality's RMS std, so that an almost
    constant feature does not flag rounding noise); Gaussian modalities without stored statistics are not
    range-checked. The observation space's declared bounds are checked the same way at construction.
    """

    def __init__(self, space: spaces.Dict, model: MultimodalVAE, layout: LayoutArg = None,
                 on_out_of_range: str = "error", z_bound: float = 10.0) -> None:
        if on_out_of_range not in OUT_OF_RANGE_POLICIES:
            raise ValueError(f"on_out_of_range must be one of {OUT_OF_RANGE_POLICIES}, got {on_out_of_range!r}")
        if not (isinstance(z_bound, (int, float)) and z_bound > 0):
            raise ValueError(f"z_bound must be a positive number of standard deviations, got {z_bound!r}")
        self.layouts = check_observation_space(space, model, layout)
        self._integer_images = {n for n, sub in space.spaces.items() if n in self.layouts
                                and self.layouts[n].scale != 1 and isinstance(sub, spaces.Box)
                                and np.issubdtype(sub.dtype, np.integer)}
        self.on_out_of_range = on_out_of_range
        self.z_bound = float(z_bound)
        self.out_of_range_counts: dict[str, int] = {n: 0 for n in model.modality_names}
        self._warned = False
        self._specs: dict[str, ModalitySpec] = {n: model.config.modality(n) for n in model.modality_names}
        self._stats: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        for name, spec in self._specs.items():
            norm = spec.normalisation
            if spec.likelihood == "gaussian" and norm is not None:
                mean = np.broadcast_to(np.asarray(norm.mean, dtype=np.float32), spec.shape)
                std = np.broadcast_to(np.asarray(norm.std, dtype=np.float32), spec.shape)
                floor = 0.01 * float(np.sqrt(np.mean(np.square(std, dtype=np.float64))))
                self._stats[name] = (mean, np.maximum(std, floor).astype(np.float32))
            else:
                self._stats[name] = None
        for name in self._specs:  # declared bounds outside the training range: same policy, now
            box = space.spaces[name]
            if not isinstance(box, spaces.Box) or on_out_of_range == "ignore" or self._spec_range(name) is None:
                continue
            if not (np.isfinite(box.low).all() and np.isfinite(box.high).all()):
                continue
            low, high = (self._to_model(name, b[None])[0] for b in (box.low, box.high))
            lo, hi = self._spec_range(name)
            if float(low.min()) < lo - 1e-6 or float(high.max()) > hi + 1e-6:
                self._report([name], f"the observation space declares {name!r} in "
                                     f"[{float(box.low.min()):g}, {float(box.high.max()):g}], i.e. "
                                     f"[{float(low.min()):g}, {float(high.max()):g}] for the model, outside its "
                                     f"training range ({self._range_text(name)})")

    def _spec_range(self, name: str) -> tuple[float, float] | None:
        return (0.0, 1.0) if self._specs[name].likelihood in ("bernoulli", "categorical") else None

    def _to_model(self, name: str, x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(to_model_layout(self.layouts[name], np.asarray(x)), dtype=np.float32)

    def convert(self, obs: Mapping[str, Any], modalities: Sequence[str]) -> tuple[dict[str, np.ndarray], list[list[str]]]:
        """Batched model inputs {name: float32 (B, *model shape)} for ``modalities`` of a batched observation
        dict, and per row the names of the modalities that were out of range."""
        out, flagged = {}, None
        for name in modalities:
            if name not in obs:
                raise ValueError(f"the observation lacks modality {name!r} (has {tuple(obs)})")
            raw = np.asarray(obs[name])
            if name in self._integer_images and np.issubdtype(raw.dtype, np.floating) and raw.size \
                    and float(raw.max()) <= 1.0:  # NaN fails the comparison and is reported just below
                self._report([name], f"observation {name!r} holds {raw.dtype} values in [0, 1] but the space declares "
                                     f"integers up to 255: the frames look already scaled and would be divided by "
                                     f"255 again. Send the frames as the space declares them (uint8 0..255) or "
                                     f"declare the space as a float Box in [0, 1]")
            x = self._to_model(name, raw)
            if not np.isfinite(x).all():
                bad = int((~np.isfinite(x)).sum())
                raise NonFiniteObservationError(
                    f"observation {name!r} contains NaN or inf ({bad} values). The MHVAE wrapper refuses to encode "
                    f"it (it would give a NaN latent): fix the sensor, or drop this modality with set_modalities() "
                    f"/ SensorFailure while it is faulty")
            rows = self._out_of_range_rows(name, x)
            if rows is not None and rows.any():
                if flagged is None:
                    flagged = [[] for _ in range(len(x))]
                for i in np.flatnonzero(rows):
                    flagged[i].append(name)
                self._report([name], f"observation {name!r} (rows {np.flatnonzero(rows).tolist()}) is outside "
                                     f"the model's training range ({self._range_text(name)})")
            out[name] = x
        n = len(next(iter(out.values())))
        return out, flagged if flagged is not None else [[] for _ in range(n)]

    def _out_of_range_rows(self, name: str, x: np.ndarray) -> np.ndarray | None:
        if self.on_out_of_range == "ignore":
            return None
        axes = tuple(range(1, x.ndim))
        bounds = self._spec_range(name)
        if bounds is not None:
            return (x.min(axis=axes) < bounds[0] - 1e-6) | (x.max(axis=axes) > bounds[1] + 1e-6)
        stats = self._stats[name]
        if stats is None:
            return None
        mean, std = stats
        return (np.abs(x - mean) > self.z_bound * std).any(axis=axes)

    def _range_text(self, name: str) -> str:
        if self._spec_range(name) is not None:
            return (f"{self._specs[name].likelihood} values in [0, 1]; images in 0..255 need a Box declared up to "
                    f"255 (then they are divided by 255)")
        return f"|x - mean| <= {self.z_bound:g} std of the checkpoint's normalisation statistics"

    def _report(self, names: Sequence[str], what: str) -> None:
        for n in names:
            self.out_of_range_counts[n] += 1
        if self.on_out_of_range == "error":
            raise OutOfRangeObservationError(
                f"{what}: the latent would be meaningless. Fix the observation pipeline, or pass "
                f"on_out_of_range='warn' (count and warn once) / 'ignore' to the wrapper")
        if self.on_out_of_range == "warn" and not self._warned:
            self._warned = True
            warnings.warn(f"{what}; counting further cases in out_of_range_counts / info['out_of_range'] "
                          f"without warning again", UserWarning, stacklevel=4)


@torch.no_grad()
def encode_observations(model: MultimodalVAE, obs: Mapping[str, np.ndarray], modalities: Sequence[str],
                        sample: bool = False, generator: torch.Generator | None = None) -> np.ndarray:
    """z_c (posterior mean, or a sample) for a batch of model inputs given only ``modalities``; float32 (B, d).

    ``obs`` holds float arrays in the model's layout (see :class:`ObservationAdapter`). NaN/inf raise
    :class:`NonFiniteObservationError` naming the modality instead of returning a NaN latent.
    """
    if model.training:  # batch norm / dropout must not run in training mode while acting
        model.eval()
    batch = {}
    for name in modalities:
        if name not in obs:
            raise ValueError(f"the observation lacks modality {name!r} (has {tuple(obs)})")
        x = np.ascontiguousarray(obs[name], dtype=np.float32)
        if not np.isfinite(x).all():
            raise NonFiniteObservationError(
                f"observation {name!r} contains NaN or inf. The MHVAE wrapper refuses to encode it (it would give "
                f"a NaN latent): fix the sensor, or drop this modality with set_modalities() / SensorFailure")
        batch[name] = torch.from_numpy(x)
    mu, logvar = model.encode(batch)
    if sample:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        mu = mu + torch.exp(0.5 * logvar) * eps
    return mu.cpu().numpy().astype(np.float32, copy=False)


