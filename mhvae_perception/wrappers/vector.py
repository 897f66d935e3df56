"""Stable-Baselines3 ``VecEnv`` counterparts of the single-environment wrappers: all environments encoded in
one batched forward pass, failures drawn per environment."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from ..hub.resolve import ModelLike, resolve_model
from ..models.networks import fused_for_inference
from ..models.subsets import parse_failure_probs, sample_keep
from .adapter import LayoutArg, ObservationAdapter, _subset, encode_observations
from .observation import _available_subset, _latent_space


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
