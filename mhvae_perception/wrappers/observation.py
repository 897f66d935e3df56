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

import os
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from ..hub.resolve import ModelLike, resolve_model
from ..models.base import MultimodalVAE
from ..models.networks import fused_for_inference
from ..models.subsets import parse_failure_probs, sample_keep
from .adapter import FailureProb, LayoutArg, ObservationAdapter, _subset, encode_observations

__all__ = ["MHVAEObservation", "SensorFailure"]


def _recorded_model(model: ModelLike) -> Any:
    """What the Gymnasium spec records for ``model``: a path as a string (JSON-able); an in-memory model as
    the object itself (``env.spec`` and ``env.spec.make()`` work in this process; ``spec.to_json()`` needs
    a checkpoint path)."""
    return str(model) if isinstance(model, (str, os.PathLike)) else model


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
    wired sensor surviving (exact, bounded-time sampler of :mod:`mhvae_perception.models.subsets`, shared with the
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


