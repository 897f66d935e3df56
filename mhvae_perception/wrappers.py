"""Gymnasium / Stable-Baselines3 wrappers that give an RL agent the MHVAE's core latent z_c as its observation.

>>> import gymnasium as gym, envs
>>> from mhvae_perception.wrappers import MHVAEObservation, SensorFailure, VecMHVAEObservation
>>> env = MHVAEObservation(gym.make("PendulumSound-v0"), "runs/.../best.pt", modalities=("image",))
>>> obs, info = env.reset(seed=0, options={"modalities": ("sound",)})   # switch sensors for this episode
>>> env.set_modalities(("image", "sound"))                              # ... or at any step
>>> env = SensorFailure(env, p=0.2)         # each sensor fails with probability 0.2 per step, never all at once

The observation is the mean of q(z_c | available modalities) (or a sample with ``sample=True``), float32 of
shape ``(model.top_latent_dim,)``. Modalities that are not available are treated exactly as dropped
representations in training (modality representation dropout): their hidden representation is zero. The
model's stored normalisation is applied inside ``model.encode``. Encoding runs under ``torch.no_grad`` on an
eval-mode inference copy of the model taken at construction (BatchNorm folded into the linear layers,
convolutions channels-last): later changes to the model's weights need a new wrapper.

Two sets of modalities: the *wired* ones (``modalities``: the sensors the agent is connected to, chosen by
the user) and the *available* ones (set by a failure model through :meth:`MHVAEObservation.set_available`,
default: all). Each observation is encoded from wired ∩ available. :class:`SensorFailure` must wrap the
:class:`MHVAEObservation` directly and only ever calls that documented method on it.

Observations are checked before encoding (see :class:`ObservationAdapter`): NaN/inf raises
:class:`NonFiniteObservationError`; values outside the range the model was trained on are handled by
``on_out_of_range`` = ``"error"`` (default, :class:`OutOfRangeObservationError`), ``"warn"`` (one warning, then
a counter) or ``"ignore"``. Sensors are converted with the data pipeline's rules (:mod:`.describe`): channel-last
(H, W, C) and grey (H, W) images to (C, H, W), images in [0, 255] to [0, 1], Discrete to one-hot.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from .checkpoints import load_checkpoint
from .describe import SensorLayout, sensor_layout, to_model_layout
from .model import MultimodalVAE
from .networks import fused_for_inference
from .specs import ModalitySpec, check_subset
from .subsets import parse_failure_probs, sample_keep

ModelLike = Union[MultimodalVAE, str, os.PathLike]
FailureProb = Union[float, Mapping[str, float], Callable[[int], Union[float, Mapping[str, float]]]]
LayoutArg = Union[str, Mapping[str, str], None]

OUT_OF_RANGE_POLICIES = ("error", "warn", "ignore")
LAYOUTS = ("auto", "CHW", "HWC", "HW")

__all__ = ["MHVAEObservation", "VecMHVAEObservation", "SensorFailure", "VecSensorFailure", "ObservationAdapter",
           "NonFiniteObservationError", "OutOfRangeObservationError", "resolve_model", "file_sha256",
           "check_observation_space", "encode_observations", "OUT_OF_RANGE_POLICIES"]


class NonFiniteObservationError(ValueError):
    """An observation holds NaN or inf; the wrapper refuses to encode it (it would give a NaN latent)."""


class OutOfRangeObservationError(ValueError):
    """An observation lies outside the range the model was trained on (``on_out_of_range="error"``)."""


# --------------------------------------------------------------------------------------------- helpers
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (used to tie an agent to the exact checkpoint it was trained on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _device(device: str | torch.device) -> torch.device:
    from .experiment import resolve_device  # "auto" = CUDA when available, else CPU

    return resolve_device(device)


def resolve_model(model: ModelLike, device: str | torch.device = "cpu") -> tuple[MultimodalVAE, Path | None]:
    """A loaded model (put in eval mode) and the checkpoint path it came from (None for an in-memory model)."""
    if isinstance(model, MultimodalVAE):
        return model.eval(), None
    if isinstance(model, (str, os.PathLike)):
        path = shipped_or_path(model)
        return load_checkpoint(path, device=_device(device)).model.eval(), path
    raise TypeError(f"model must be a loaded MHVAE (MultimodalVAE), a checkpoint path or a shipped model's name, "
                    f"got {type(model).__name__}; load one with mhvae_perception.load_checkpoint(path).model or "
                    f"pass the path (shipped names: mhvae_perception.pretrained.available())")


def shipped_or_path(model: str | os.PathLike) -> Path:
    """A checkpoint path as given, or the verified file of a shipped model when ``model`` names one (and is not
    an existing file): ``MHVAEObservation(env, "pendulum_sound-mhvae")`` needs no pretraining."""
    from . import pretrained  # pretrained imports this module

    if isinstance(model, str) and not Path(model).exists() and model in pretrained.available():
        return pretrained.path(model)
    return Path(model)


def _recorded_model(model: ModelLike) -> Any:
    """What the Gymnasium spec records for ``model``: a path as a string (JSON-able); an in-memory model as
    the object itself (``env.spec`` and ``env.spec.make()`` work in this process; ``spec.to_json()`` needs
    a checkpoint path)."""
    return str(model) if isinstance(model, (str, os.PathLike)) else model


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
    how each is converted (:class:`~mhvae_perception.describe.SensorLayout`).

    By default (``"auto"``) a sensor is read with the same rules as the data pipeline
    (:func:`~mhvae_perception.describe.sensor_layout`: CHW / HWC / HW images, uint8 or [0, 255] images scaled
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
    :func:`~mhvae_perception.describe.to_model_layout`): channel-last (H, W, C) and grey (H, W) images ->
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
            x = self._to_model(name, np.asarray(obs[name]))
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


def _latent_space(model: MultimodalVAE) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(int(model.top_latent_dim),), dtype=np.float32)


def _available_subset(wired: tuple[str, ...], available: tuple[str, ...] | None) -> tuple[str, ...]:
    if available is None:
        return wired
    used = tuple(n for n in wired if n in available)
    if not used:
        raise ValueError(f"none of the wired modalities {wired} is available (available: {available}); at least "
                         f"one wired sensor must work: give SensorFailure the wired sensors")
    return used


# ------------------------------------------------------------------------------------- single env
class MHVAEObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace a Dict observation (one entry per model modality) by the MHVAE core latent z_c.

    :param env: environment whose observation space is a Dict holding every model modality (model shapes, or
        channel-last images; float, or uint8 images in [0, 255]).
    :param model: a loaded :class:`~mhvae_perception.MHVAE` or the path of a checkpoint.
    :param modalities: the wired sensors: any non-empty subset of the model's modalities. Change them with
        :meth:`set_modalities` (effective from the next observation, also mid-episode) or with
        ``reset(options={"modalities": ...})``.
    :param sample: observe a sample of q(z_c | ...) instead of its mean (seeded by ``reset(seed=...)``).
    :param device: where a model loaded from a path is put ("auto": CUDA when available).
    :param layout: "auto" (default: from the shapes), "CHW", "HWC", or a per-modality dict.
    :param on_out_of_range: "error" | "warn" | "ignore" for observations outside the training range.
    :param z_bound: standard deviations from the stored mean beyond which a Gaussian value is out of range.

    ``info["modalities"]`` holds the subset each observation was encoded from; ``info["out_of_range"]`` the
    modalities flagged (only with ``on_out_of_range="warn"``); ``out_of_range_counts`` counts them.
    """

    def __init__(self, env: gym.Env, model: ModelLike, modalities: str | Sequence[str] = ("image",),
                 sample: bool = False, device: str | torch.device = "cpu", layout: LayoutArg = None,
                 on_out_of_range: str = "error", z_bound: float = 10.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, _disable_deepcopy=True, model=_recorded_model(model),
            modalities=modalities if isinstance(modalities, str) else list(modalities), sample=sample,
            device=str(device), layout=dict(layout) if isinstance(layout, Mapping) else layout,
            on_out_of_range=on_out_of_range, z_bound=z_bound)
        gym.ObservationWrapper.__init__(self, env)
        self.model, self.checkpoint_path = resolve_model(model, device)
        self.adapter = ObservationAdapter(env.observation_space, self.model, layout, on_out_of_range, z_bound)
        self._encoder = fused_for_inference(self.model)  # frozen inference copy: BatchNorm folded, channels-last
        self._modalities = _subset(modalities, self.model)
        self._available: tuple[str, ...] | None = None
        self.sample = bool(sample)
        self._generator = torch.Generator(device=self.model.device)
        self._last_flags: list[str] = []
        self.observation_space = _latent_space(self.model)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The wired modalities (the next observation is encoded from these ∩ the available ones)."""
        return self._modalities

    @property
    def model_modalities(self) -> tuple[str, ...]:
        return self.model.modality_names

    @property
    def available(self) -> tuple[str, ...] | None:
        """The modalities a failure model marked as working (None: all)."""
        return self._available

    @property
    def out_of_range_counts(self) -> dict[str, int]:
        return dict(self.adapter.out_of_range_counts)

    def set_modalities(self, modalities: str | Sequence[str]) -> None:
        """Wire ``modalities`` (a non-empty subset of the model's) from the next observation on; clears
        :attr:`available` (all of them work until a failure model says otherwise)."""
        self._modalities = _subset(modalities, self.model)
        self._available = None

    def set_available(self, modalities: str | Sequence[str] | None) -> None:
        """Mark which sensors work for the next observations (None: all), as a failure model does. At least
        one wired modality must be available; the wiring itself is unchanged."""
        available = None if modalities is None else _subset(modalities, self.model, "available modalities")
        _available_subset(self._modalities, available)
        self._available = available

    @property
    def encoded_modalities(self) -> tuple[str, ...]:
        """The subset the next observation will be encoded from: wired ∩ available."""
        return _available_subset(self._modalities, self._available)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and "modalities" in options:
            options = dict(options)
            self.set_modalities(options.pop("modalities"))
        if seed is not None:
            self._generator.manual_seed(int(seed))
        obs, info = self.env.reset(seed=seed, options=options)
        latent = self.observation(obs)
        return latent, self._info(info)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        latent = self.observation(obs)
        return latent, reward, terminated, truncated, self._info(info)

    def _info(self, info: dict) -> dict:
        info = dict(info)
        info["modalities"] = self.encoded_modalities
        if self._last_flags:
            info["out_of_range"] = tuple(self._last_flags)
        return info

    def observation(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        subset = self.encoded_modalities
        missing = [n for n in subset if n not in observation]
        if missing:
            raise ValueError(f"the observation lacks modality {missing[0]!r} (has {tuple(observation)})")
        batch, flags = self.adapter.convert({n: np.asarray(observation[n])[None] for n in subset}, subset)
        self._last_flags = flags[0]
        return encode_observations(self._encoder, batch, subset, self.sample, self._generator)[0]


# ---------------------------------------------------------------------------------- sensor failure
class SensorFailure(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Random sensor failures for robustness studies, directly on top of :class:`MHVAEObservation`.

    At every step (and, with ``fail_on_reset=True``, at reset) each wired sensor that is in ``sensors``
    (default: all the model's modalities) fails independently with its probability, conditioned on at least one
    wired sensor surviving (exact, bounded-time sampler of :mod:`mhvae_perception.subsets`, shared with the
    model's modality dropout). ``p`` is a float in [0, 1], a ``{modality: probability}`` dict (missing sensors
    never fail), or a schedule: a callable of the episode's step index (0 for reset) returning either. The
    failures reach the latent wrapper through its documented :meth:`MHVAEObservation.set_available` only; its
    wiring (``modalities``) is left alone. ``info["modalities"]`` lists the sensors the observation was
    encoded from, ``info["failed_modalities"]`` the wired ones that failed.
    """

    def __init__(self, env: MHVAEObservation, p: FailureProb = 0.1, sensors: Sequence[str] | None = None,
                 fail_on_reset: bool = False, seed: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, _disable_deepcopy=True, p=p,
                                                 sensors=None if sensors is None else list(sensors),
                                                 fail_on_reset=fail_on_reset, seed=seed)
        if not isinstance(env, MHVAEObservation):
            raise TypeError(f"SensorFailure must wrap an MHVAEObservation directly (it marks failed sensors with "
                            f"its set_available()), got {type(env).__name__}; use "
                            f"SensorFailure(MHVAEObservation(env, model, modalities), p=0.1) and put other "
                            f"wrappers (Monitor, TimeLimit, ...) outside")
        gym.Wrapper.__init__(self, env)
        self._latent = env
        model = env.model
        self.sensors = model.modality_names if sensors is None else _subset(sensors, model, "sensors")
        self.p = p
        self.fail_on_reset = bool(fail_on_reset)
        self._rng = np.random.default_rng(seed)
        self._t = 0
        wired = self._latent.modalities
        probs = self._probs(0, wired)  # validate now, not at the first step
        if len(wired) == 1 and probs[0] > 0:
            parse_failure_probs(float(probs[0]), wired)  # warns: p has no effect with a single wired sensor

    def _probs(self, t: int, wired: tuple[str, ...]) -> np.ndarray:
        """Failure probabilities of the wired sensors at step ``t`` (0 for those not in ``sensors``)."""
        value = self.p(t) if callable(self.p) else self.p
        probs = dict(zip(self.sensors, parse_failure_probs(value, self.sensors)))
        return np.array([probs.get(n, 0.0) for n in wired])

    def _draw(self, t: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        wired = self._latent.modalities
        keep = sample_keep(self._probs(t, wired), self._rng)
        active = tuple(n for n, k in zip(wired, keep) if k)
        failed = tuple(n for n, k in zip(wired, keep) if not k)
        return active, failed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if options and "modalities" in options:  # wire first, so that the draw is over the new sensors
            options = dict(options)
            self._latent.set_modalities(options.pop("modalities"))
        self._t = 0
        active, failed = self._draw(0) if self.fail_on_reset else (self._latent.modalities, ())
        self._latent.set_available(active if failed else None)
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["failed_modalities"] = failed
        return obs, info

    def step(self, action):
        self._t += 1
        active, failed = self._draw(self._t)
        self._latent.set_available(active if failed else None)
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["failed_modalities"] = failed
        return obs, reward, terminated, truncated, info


# -------------------------------------------------------------------------------------- vectorised
class VecMHVAEObservation(VecEnvWrapper):
    """SB3 ``VecEnv`` counterpart of :class:`MHVAEObservation`: all environments are encoded in one batched
    forward pass (one pass per distinct modality subset when environments use different subsets).

    ``set_modalities(modalities, indices=None)`` changes the wiring of all (or the given) environments from
    the next observation on; ``set_available(modalities, indices)`` is the failure models' hook (see
    :class:`VecSensorFailure`). Terminal observations in ``infos[i]["terminal_observation"]`` are encoded
    with the subset that was active for that environment. Same checks and conversions as the single-env
    wrapper (``layout``, ``on_out_of_range``, ``z_bound``).
    """

    def __init__(self, venv: VecEnv, model: ModelLike, modalities: str | Sequence[str] = ("image",),
                 sample: bool = False, device: str | torch.device = "cpu", layout: LayoutArg = None,
                 on_out_of_range: str = "error", z_bound: float = 10.0) -> None:
        model, self.checkpoint_path = resolve_model(model, device)
        self.adapter = ObservationAdapter(venv.observation_space, model, layout, on_out_of_range, z_bound)
        self.model = model
        self._encoder = fused_for_inference(model)  # frozen inference copy: BatchNorm folded, channels-last
        super().__init__(venv, observation_space=_latent_space(model))
        subset = _subset(modalities, model)
        self._modalities = [subset] * self.num_envs
        self._available: list[tuple[str, ...] | None] = [None] * self.num_envs
        self.sample = bool(sample)
        self._generator = torch.Generator(device=model.device)

    @property
    def modalities(self) -> list[tuple[str, ...]]:
        """The wired modalities of each environment."""
        return list(self._modalities)

    @property
    def encoded_modalities(self) -> list[tuple[str, ...]]:
        return [_available_subset(w, a) for w, a in zip(self._modalities, self._available)]

    @property
    def out_of_range_counts(self) -> dict[str, int]:
        return dict(self.adapter.out_of_range_counts)

    def _indices(self, indices: int | Iterable[int] | None) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, (int, np.integer)):
            return [int(indices)]
        return [int(i) for i in indices]

    def set_modalities(self, modalities: str | Sequence[str], indices: int | Iterable[int] | None = None) -> None:
        subset = _subset(modalities, self.model)
        for i in self._indices(indices):
            self._modalities[i] = subset
            self._available[i] = None

    def set_available(self, modalities: str | Sequence[str] | None, indices: int | Iterable[int] | None = None) -> None:
        """Mark which sensors work for the given environments' next observations (None: all)."""
        available = None if modalities is None else _subset(modalities, self.model, "available modalities")
        for i in self._indices(indices):
            _available_subset(self._modalities[i], available)
            self._available[i] = available

    def seed(self, seed: int | None = None):
        if seed is not None:
            self._generator.manual_seed(int(seed))
        return self.venv.seed(seed)

    def _encode(self, obs: Mapping[str, np.ndarray], rows: Sequence[int] | None = None
                ) -> tuple[np.ndarray, list[list[str]]]:
        rows = list(range(len(next(iter(obs.values()))))) if rows is None else list(rows)
        out = np.empty((len(rows), self.model.top_latent_dim), dtype=np.float32)
        flags: list[list[str]] = [[] for _ in rows]
        groups: dict[tuple[str, ...], list[int]] = {}
        encoded = self.encoded_modalities
        for j, env_idx in enumerate(rows):
            groups.setdefault(encoded[env_idx], []).append(j)
        for subset, js in groups.items():
            if len(js) == len(rows):
                part = {n: obs[n] for n in subset}
            else:
                part = {n: np.asarray(obs[n])[js] for n in subset}
            batch, part_flags = self.adapter.convert(part, subset)
            out[js] = encode_observations(self._encoder, batch, subset, self.sample, self._generator)
            for j, f in zip(js, part_flags):
                flags[j] = f
        return out, flags

    def reset(self) -> np.ndarray:
        return self._encode(self.venv.reset())[0]

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        terminal = [i for i, info in enumerate(infos) if info.get("terminal_observation") is not None]
        if terminal:
            stacked = {n: np.stack([np.asarray(infos[i]["terminal_observation"][n]) for i in terminal])
                       for n in self.model.modality_names}
            latents, _ = self._encode(stacked, terminal)
            for k, i in enumerate(terminal):
                infos[i]["terminal_observation"] = latents[k]
        encoded = self.encoded_modalities
        latents, flags = self._encode(obs)
        for i, info in enumerate(infos):
            info["modalities"] = encoded[i]
            if flags[i]:
                info["out_of_range"] = tuple(flags[i])
        return latents, rewards, dones, infos


class VecSensorFailure(VecEnvWrapper):
    """Vectorised :class:`SensorFailure`, directly on top of :class:`VecMHVAEObservation`: before every step
    each wired sensor (in ``sensors``, default all) of each environment fails independently with probability
    ``p`` (a float or a ``{modality: p}`` dict), never all of one environment's wired sensors at once (the
    shared exact sampler). Every environment starts with all sensors after reset. ``infos[i]["modalities"]``
    / ``["failed_modalities"]`` report them."""

    def __init__(self, venv: VecMHVAEObservation, p: float | Mapping[str, float] = 0.1,
                 sensors: Sequence[str] | None = None, seed: int | None = None) -> None:
        if not isinstance(venv, VecMHVAEObservation):
            raise TypeError(f"VecSensorFailure must wrap a VecMHVAEObservation directly, got "
                            f"{type(venv).__name__}; e.g. VecSensorFailure(VecMHVAEObservation(venv, model, "
                            f"modalities), p=0.1)")
        super().__init__(venv)
        self._latent = venv
        self.sensors = venv.model.modality_names if sensors is None else _subset(sensors, venv.model, "sensors")
        self._probs = dict(zip(self.sensors, parse_failure_probs(p, self.sensors)))
        for wired in set(venv.modalities):  # warns when p cannot act (a single wired sensor)
            if len(wired) == 1 and self._probs.get(wired[0], 0.0) > 0:
                parse_failure_probs(self._probs[wired[0]], wired)
        self._rng = np.random.default_rng(seed)
        self._failed: list[tuple[str, ...]] = [()] * self.num_envs

    def reset(self) -> np.ndarray:
        self._latent.set_available(None)
        self._failed = [()] * self.num_envs
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        for i, wired in enumerate(self._latent.modalities):
            keep = sample_keep(np.array([self._probs.get(n, 0.0) for n in wired]), self._rng)
            failed = tuple(n for n, k in zip(wired, keep) if not k)
            self._latent.set_available(tuple(n for n, k in zip(wired, keep) if k) if failed else None, indices=i)
            self._failed[i] = failed
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        for i, info in enumerate(infos):
            info["failed_modalities"] = self._failed[i]
        return obs, rewards, dones, infos
