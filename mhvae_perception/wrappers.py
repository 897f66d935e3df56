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
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from .checkpoints import load_checkpoint
from .model import MultimodalVAE
from .networks import fused_for_inference
from .specs import check_subset

ModelLike = Union[MultimodalVAE, str, os.PathLike]
FailureProb = Union[float, Mapping[str, float], Callable[[int], Union[float, Mapping[str, float]]]]

__all__ = ["MHVAEObservation", "VecMHVAEObservation", "SensorFailure", "VecSensorFailure", "resolve_model", "file_sha256",
           "check_observation_space", "encode_observations"]


# --------------------------------------------------------------------------------------------- helpers
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file (used to tie an agent to the exact checkpoint it was trained on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(model: ModelLike, device: str | torch.device = "cpu") -> tuple[MultimodalVAE, Path | None]:
    """A loaded model (put in eval mode) and the checkpoint path it came from (None for an in-memory model)."""
    if isinstance(model, MultimodalVAE):
        return model.eval(), None
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        return load_checkpoint(path, device=device).model.eval(), path
    raise TypeError(f"model must be a loaded MHVAE (MultimodalVAE) or a checkpoint path, got {type(model).__name__}; "
                    f"load one with mhvae_perception.load_checkpoint(path).model or pass the path")


def _subset(modalities: str | Iterable[str], model: MultimodalVAE) -> tuple[str, ...]:
    """Validated, non-empty subset of the model's modalities in the model's order."""
    if modalities is None:
        raise ValueError(f"modalities must be a non-empty subset of {model.modality_names}, got None")
    names = (modalities,) if isinstance(modalities, str) else tuple(modalities)
    return check_subset(names, model.modality_names, "modalities")


def check_observation_space(space: gym.Space, model: MultimodalVAE) -> None:
    """Raise a ValueError/TypeError saying what to do unless ``space`` is a Dict whose entries for every model
    modality are float Boxes of the model's shapes (extra keys are allowed and ignored)."""
    names = model.modality_names
    if not isinstance(space, spaces.Dict):
        raise TypeError(f"the environment's observation space must be a gymnasium.spaces.Dict with keys {names} "
                        f"(one per model modality), got {space}; wrap the env so that it returns such a dict")
    missing = [n for n in names if n not in space.spaces]
    if missing:
        raise ValueError(f"the environment's observations lack modality {missing[0]!r} of the model: env keys "
                         f"{tuple(space.spaces)}, model modalities {names}; use a model trained on this "
                         f"environment's sensors or rename the observation keys")
    for name in names:
        sub, spec = space.spaces[name], model.config.modality(name)
        if not isinstance(sub, spaces.Box):
            raise TypeError(f"observation {name!r} must be a Box, got {sub}")
        if tuple(sub.shape) != tuple(spec.shape):
            raise ValueError(f"observation {name!r} has shape {tuple(sub.shape)} but the model's {name!r} modality "
                             f"expects {tuple(spec.shape)}; use a model trained on this environment")
        if not np.issubdtype(sub.dtype, np.floating):
            raise TypeError(f"observation {name!r} has dtype {sub.dtype}; the model expects floating-point values "
                            f"(images in [0, 1]); convert it first, e.g. with a TransformObservation wrapper "
                            f"that returns obs.astype(np.float32) / 255")


@torch.no_grad()
def encode_observations(model: MultimodalVAE, obs: Mapping[str, np.ndarray], modalities: Sequence[str],
                        sample: bool = False, generator: torch.Generator | None = None) -> np.ndarray:
    """z_c (posterior mean, or a sample) for a batch of observations given only ``modalities``; float32 (B, d).

    Raises ValueError for NaN/inf (naming the modality) instead of returning a NaN latent.
    """
    if model.training:  # batch norm / dropout must not run in training mode while acting
        model.eval()
    batch = {}
    for name in modalities:
        if name not in obs:
            raise ValueError(f"the observation lacks modality {name!r} (has {tuple(obs)})")
        batch[name] = torch.from_numpy(np.ascontiguousarray(obs[name], dtype=np.float32))
    try:
        mu, logvar = model.encode(batch)  # model.prepare checks shapes and refuses NaN/inf (once, here)
    except ValueError as err:
        if "NaN or inf" not in str(err):
            raise
        raise ValueError(f"{err}. The MHVAE wrapper refuses to encode it (it would give a NaN latent): fix the "
                         f"sensor, or drop this modality with set_modalities() / SensorFailure while it is "
                         f"faulty") from err
    if sample:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        mu = mu + torch.exp(0.5 * logvar) * eps
    return mu.cpu().numpy().astype(np.float32, copy=False)


def _latent_space(model: MultimodalVAE) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=(int(model.top_latent_dim),), dtype=np.float32)


# ------------------------------------------------------------------------------------- single env
class MHVAEObservation(gym.ObservationWrapper):
    """Replace a Dict observation (one entry per model modality) by the MHVAE core latent z_c.

    :param env: environment whose observation space is a Dict holding every model modality (float, model shapes).
    :param model: a loaded :class:`~mhvae_perception.MHVAE` or the path of a checkpoint.
    :param modalities: the sensors available to the agent: any non-empty subset of the model's modalities.
        Change them with :meth:`set_modalities` (effective from the next observation, also mid-episode) or with
        ``reset(options={"modalities": ...})``.
    :param sample: observe a sample of q(z_c | ...) instead of its mean (seeded by ``reset(seed=...)``).
    :param device: where a model loaded from a path is put.

    ``info["modalities"]`` holds the subset each observation was encoded from.
    """

    def __init__(self, env: gym.Env, model: ModelLike, modalities: str | Sequence[str] = ("image",),
                 sample: bool = False, device: str | torch.device = "cpu") -> None:
        super().__init__(env)
        self.model, self.checkpoint_path = resolve_model(model, device)
        check_observation_space(env.observation_space, self.model)
        self._encoder = fused_for_inference(self.model)  # frozen inference copy: BatchNorm folded, channels-last
        self._modalities = _subset(modalities, self.model)
        self.sample = bool(sample)
        self._generator = torch.Generator(device=self.model.device)
        self.observation_space = _latent_space(self.model)

    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the next observation will be encoded from."""
        return self._modalities

    @property
    def model_modalities(self) -> tuple[str, ...]:
        return self.model.modality_names

    def set_modalities(self, modalities: str | Sequence[str]) -> None:
        """Use ``modalities`` (a non-empty subset of the model's) from the next observation on."""
        self._modalities = _subset(modalities, self.model)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if options and "modalities" in options:
            options = dict(options)
            self.set_modalities(options.pop("modalities"))
        if seed is not None:
            self._generator.manual_seed(int(seed))
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["modalities"] = self._modalities
        return self.observation(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["modalities"] = self._modalities
        return self.observation(obs), reward, terminated, truncated, info

    def observation(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self._modalities if n not in observation]
        if missing:
            raise ValueError(f"the observation lacks modality {missing[0]!r} (has {tuple(observation)})")
        batch = {n: np.asarray(observation[n])[None] for n in self._modalities}
        return encode_observations(self._encoder, batch, self._modalities, self.sample, self._generator)[0]


def _find_latent_wrapper(env: gym.Env) -> MHVAEObservation:
    while True:
        if isinstance(env, MHVAEObservation):
            return env
        if not isinstance(env, gym.Wrapper):
            raise TypeError("SensorFailure must wrap an MHVAEObservation (possibly under other wrappers), e.g. "
                            "SensorFailure(MHVAEObservation(env, model, modalities), p=0.1)")
        env = env.env


# ---------------------------------------------------------------------------------- sensor failure
class SensorFailure(gym.Wrapper):
    """Random sensor failures for robustness studies, on top of :class:`MHVAEObservation`.

    At every step (and, with ``fail_on_reset=True``, at reset) each sensor of ``sensors`` (default: the wrapped
    observation's modalities at construction) fails independently with its probability; if all would fail, the
    draw is repeated (exact rejection sampling, as the model's modality dropout does), so at least one
    sensor is always kept. ``p`` is a float, a ``{modality: probability}`` dict, or a schedule: a callable of
    the episode's step index (0 for reset) returning either. ``info["modalities"]`` lists the sensors the
    observation was encoded from, ``info["failed_modalities"]`` those that failed.
    """

    def __init__(self, env: gym.Env, p: FailureProb = 0.1, sensors: Sequence[str] | None = None,
                 fail_on_reset: bool = False, seed: int | None = None) -> None:
        super().__init__(env)
        self._latent = _find_latent_wrapper(env)
        model = self._latent.model
        self.sensors = _subset(sensors if sensors is not None else self._latent.modalities, model)
        self.p = p
        self.fail_on_reset = bool(fail_on_reset)
        self._rng = np.random.default_rng(seed)
        self._t = 0
        self._probs(0)  # validate now, not at the first step

    def _probs(self, t: int) -> np.ndarray:
        value = self.p(t) if callable(self.p) else self.p
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in self.sensors]
            if unknown:
                raise ValueError(f"failure probability for unknown sensor {unknown[0]!r}; sensors are {self.sensors}")
            probs = np.array([float(value.get(n, 0.0)) for n in self.sensors])
        else:
            probs = np.full(len(self.sensors), float(value))
        if not np.all((probs >= 0) & (probs < 1)):
            raise ValueError(f"failure probabilities must lie in [0, 1) (1 would mean a sensor never works), got "
                             f"{dict(zip(self.sensors, probs.tolist()))}")
        return probs

    def _draw(self, t: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        probs = self._probs(t)
        while True:
            ok = self._rng.random(len(self.sensors)) >= probs
            if ok.any():
                break
        active = tuple(n for n, k in zip(self.sensors, ok) if k)
        failed = tuple(n for n, k in zip(self.sensors, ok) if not k)
        return active, failed

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        if options and "modalities" in options:
            options = dict(options)
            self.sensors = _subset(options.pop("modalities"), self._latent.model)
        self._t = 0
        active, failed = self._draw(0) if self.fail_on_reset else (self.sensors, ())
        self._latent.set_modalities(active)
        obs, info = self.env.reset(seed=seed, options=options)
        info = dict(info)
        info["modalities"], info["failed_modalities"] = active, failed
        return obs, info

    def step(self, action):
        self._t += 1
        active, failed = self._draw(self._t)
        self._latent.set_modalities(active)
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info["modalities"], info["failed_modalities"] = active, failed
        return obs, reward, terminated, truncated, info


# -------------------------------------------------------------------------------------- vectorised
try:  # SB3 is optional for the single-env wrappers
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
except ImportError:  # pragma: no cover
    VecEnv = VecEnvWrapper = None  # type: ignore[assignment, misc]

if VecEnvWrapper is not None:

    class VecMHVAEObservation(VecEnvWrapper):
        """SB3 ``VecEnv`` counterpart of :class:`MHVAEObservation`: all environments are encoded in one batched
        forward pass (one pass per distinct modality subset when environments use different subsets).

        ``set_modalities(modalities, indices=None)`` changes the subset of all (or the given) environments from
        the next observation on. Terminal observations in ``infos[i]["terminal_observation"]`` are encoded
        with the subset that was active for that environment.
        """

        def __init__(self, venv: VecEnv, model: ModelLike, modalities: str | Sequence[str] = ("image",),
                     sample: bool = False, device: str | torch.device = "cpu") -> None:
            model, self.checkpoint_path = resolve_model(model, device)
            check_observation_space(venv.observation_space, model)
            self.model = model
            self._encoder = fused_for_inference(model)  # frozen inference copy: BatchNorm folded, channels-last
            super().__init__(venv, observation_space=_latent_space(model))
            subset = _subset(modalities, model)
            self._modalities = [subset] * self.num_envs
            self.sample = bool(sample)
            self._generator = torch.Generator(device=model.device)

        @property
        def modalities(self) -> list[tuple[str, ...]]:
            return list(self._modalities)

        def set_modalities(self, modalities: str | Sequence[str], indices: int | Iterable[int] | None = None) -> None:
            subset = _subset(modalities, self.model)
            if indices is None:
                indices = range(self.num_envs)
            elif isinstance(indices, (int, np.integer)):
                indices = [int(indices)]
            for i in indices:
                self._modalities[i] = subset

        def seed(self, seed: int | None = None):
            if seed is not None:
                self._generator.manual_seed(int(seed))
            return self.venv.seed(seed)

        def _encode(self, obs: Mapping[str, np.ndarray], rows: Sequence[int] | None = None) -> np.ndarray:
            rows = list(range(len(next(iter(obs.values()))))) if rows is None else list(rows)
            out = np.empty((len(rows), self.model.top_latent_dim), dtype=np.float32)
            groups: dict[tuple[str, ...], list[int]] = {}
            for j, env_idx in enumerate(rows):
                groups.setdefault(self._modalities[env_idx], []).append(j)
            for subset, js in groups.items():
                if len(js) == len(rows):
                    part = {n: obs[n] for n in subset}
                else:
                    part = {n: np.asarray(obs[n])[js] for n in subset}
                out[js] = encode_observations(self._encoder, part, subset, self.sample, self._generator)
            return out

        def reset(self) -> np.ndarray:
            return self._encode(self.venv.reset())

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            terminal = [i for i, info in enumerate(infos) if info.get("terminal_observation") is not None]
            if terminal:
                stacked = {n: np.stack([np.asarray(infos[i]["terminal_observation"][n]) for i in terminal])
                           for n in self.model.modality_names}
                latents = self._encode(stacked, terminal)
                for k, i in enumerate(terminal):
                    infos[i]["terminal_observation"] = latents[k]
            for i, info in enumerate(infos):
                info["modalities"] = self._modalities[i]
            return self._encode(obs), rewards, dones, infos

    class VecSensorFailure(VecEnvWrapper):
        """Vectorised :class:`SensorFailure` on top of :class:`VecMHVAEObservation`: before every step each
        sensor of each environment fails independently with probability ``p`` (a float or a ``{modality: p}``
        dict), never all of one environment's sensors at once (rejection sampling). Every environment starts
        with all sensors after reset. ``infos[i]["modalities"]`` / ``["failed_modalities"]`` report them."""

        def __init__(self, venv: "VecMHVAEObservation", p: float | Mapping[str, float] = 0.1,
                     sensors: Sequence[str] | None = None, seed: int | None = None) -> None:
            if not isinstance(venv, VecMHVAEObservation):
                raise TypeError("VecSensorFailure must wrap a VecMHVAEObservation, e.g. "
                                "VecSensorFailure(VecMHVAEObservation(venv, model, modalities), p=0.1)")
            super().__init__(venv)
            self.sensors = _subset(sensors if sensors is not None else venv.modalities[0], venv.model)
            if isinstance(p, Mapping):
                unknown = [k for k in p if k not in self.sensors]
                if unknown:
                    raise ValueError(f"failure probability for unknown sensor {unknown[0]!r}; sensors are {self.sensors}")
                self.probs = np.array([float(p.get(n, 0.0)) for n in self.sensors])
            else:
                self.probs = np.full(len(self.sensors), float(p))
            if not np.all((self.probs >= 0) & (self.probs < 1)):
                raise ValueError(f"failure probabilities must lie in [0, 1), got {self.probs.tolist()}")
            self._rng = np.random.default_rng(seed)
            self._failed: list[tuple[str, ...]] = [()] * self.num_envs

        def reset(self) -> np.ndarray:
            self.venv.set_modalities(self.sensors)
            self._failed = [()] * self.num_envs
            return self.venv.reset()

        def step_async(self, actions: np.ndarray) -> None:
            for i in range(self.num_envs):
                while True:
                    ok = self._rng.random(len(self.sensors)) >= self.probs
                    if ok.any():
                        break
                self.venv.set_modalities(tuple(n for n, k in zip(self.sensors, ok) if k), indices=i)
                self._failed[i] = tuple(n for n, k in zip(self.sensors, ok) if not k)
            self.venv.step_async(actions)

        def step_wait(self):
            obs, rewards, dones, infos = self.venv.step_wait()
            for i, info in enumerate(infos):
                info["failed_modalities"] = self._failed[i]
            return obs, rewards, dones, infos
else:  # pragma: no cover
    VecMHVAEObservation = VecSensorFailure = None  # type: ignore[assignment, misc]
