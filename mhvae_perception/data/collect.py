"""Collect a pretraining dataset from any Gymnasium environment whose observations are a ``Dict`` of sensors.

``collect(env_id, n_train, n_test, seed)`` steps ``n_envs`` copies of the environment (a Gymnasium
``SyncVectorEnv``, same-step autoreset: the observation returned at an episode's end is the next episode's
first one, as a single environment that is reset at once) under a policy (uniform random by default) and writes
ONE ``np.savez_compressed`` file, read back with ``allow_pickle=False``:

* ``train_<key>`` / ``test_<key>`` for every key of the observation ``Dict``, in the dtype it is stored in
  (see :func:`storage_dtype`: uint8 images stay uint8, binary float images are stored as uint8 0/1, Discrete as
  int64, MultiBinary as uint8, other Boxes in their own dtype);
* ``train_state`` / ``test_state`` (float32, (N, d)) when the environment exposes its true state (for the
  probes that predict transfer). Where it comes from is the ``state_source`` setting (:func:`resolve_state_source`):
  ``"auto"`` (default: ``info["state"]``, a 1-D float array on ``reset`` and ``step``, when the environment
  declares ``state_names``, a tuple of d strings, at any wrapper level), ``"info:<key>"`` (``info[key]``),
  ``"sensor:<name>"`` (one of the observation's own sensors, e.g. a state vector rendered beside the pixels;
  it stays a sensor too) or ``"none"``. Names: the environment's ``state_names`` when their number matches,
  else ``<key>[i]``;
* ``metadata``: a JSON string (see :func:`collect` for its keys), never a pickled object.

Train and test come from independent streams: the sub-environments are reset with seeds drawn from
``numpy.random.SeedSequence([seed, 0])`` (train) and ``SeedSequence([seed, 1])`` (test); the random policy's
action space is seeded with the same streams' first word.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..hashing import file_sha256
from ..progress import progress_bar
from ..version import __version__
from .presets import env_preset, resolve_env_name
from .root import data_root
from .spaces import (array_key, check_observation_space, is_binary_box,
                     space_to_json, state_key, storage_dtype)

#: Sizes used when neither the caller nor a registered environment preset gives any.
GENERIC_SIZES = (10_000, 1_000)
DEFAULT_N_ENVS = 4
FORMAT_VERSION = 2

PolicyFn = Callable[[Any], Any]
#: Loaders turning a saved-agent path into a policy ``obs batch -> action batch``; see
#: :func:`register_policy_loader`. Empty in the library: it never unpickles anything itself.
POLICY_LOADERS: list[Callable[[Path, gym.vector.VectorEnv], PolicyFn]] = []


# --------------------------------------------------------------------------------------------------
# environment ids
# --------------------------------------------------------------------------------------------------
def resolve_env_id(env_id: str) -> str:
    """``"module:EnvId"`` (Gymnasium's convention) imports ``module`` (which registers the id) and returns
    ``"EnvId"``; a plain id is returned as it is. Raises ``ValueError`` for an id Gymnasium does not know."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env_id must be a non-empty string such as 'CartPole-v1', got {env_id!r}")
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        import importlib

        importlib.import_module(module)
    if env_id not in gym.registry:
        raise ValueError(f"environment {env_id!r} is not registered with Gymnasium; import the package that "
                         f"registers it first (e.g. `import envs` for this project's environments) or pass "
                         f"'module:{env_id}'")
    return env_id


# --------------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------------
def register_policy_loader(loader: Callable[[Path, gym.vector.VectorEnv], PolicyFn]) -> None:
    """Register ``loader(path, vec_env) -> policy`` for saved agents (a file or a folder) given to
    :func:`collect` as a path; ``policy(obs batch) -> action batch`` acts on the vector env's raw observations.

    The loader must not execute code from the file, and raises ValueError/TypeError for files it does not
    handle (the next registered loader is tried). Loaders registered later are tried first.
    """
    if loader not in POLICY_LOADERS:
        POLICY_LOADERS.append(loader)


def make_policy(policy: Union[str, os.PathLike, PolicyFn], vec_env: gym.vector.VectorEnv, seed: int) -> tuple[PolicyFn, str]:
    """The policy callable and its description for the metadata."""
    if isinstance(policy, str) and policy == "random":
        vec_env.action_space.seed(int(seed))
        return (lambda obs: vec_env.action_space.sample()), "random"
    if callable(policy):
        return policy, f"callable:{getattr(policy, '__qualname__', type(policy).__name__)}"
    if isinstance(policy, (str, os.PathLike)):
        path = Path(policy)
        if not path.exists():
            raise FileNotFoundError(f"policy {str(policy)!r}: no such agent file or folder; pass policy='random', "
                                    f"a callable obs -> actions, or the path of a saved agent")
        if not POLICY_LOADERS:
            raise ValueError(f"policy {str(path)!r}: no safe agent loader is registered; import the package that "
                             f"provides one (it calls mhvae_perception.data.collect.register_policy_loader), or pass a "
                             f"callable obs -> actions")
        errors = []
        for loader in reversed(POLICY_LOADERS):
            try:
                digest = f":sha256={file_sha256(path)[:16]}" if path.is_file() else ""
                return loader(path, vec_env), f"agent:{path.name}{digest}"
            except (ValueError, TypeError) as err:  # this loader does not handle that file
                errors.append(f"{getattr(loader, '__qualname__', loader)}: {err}")
        raise ValueError(f"policy {str(path)!r}: no registered loader accepted it: {'; '.join(errors)}")
    raise TypeError(f"policy must be 'random', a callable or a path, got {policy!r}")


# --------------------------------------------------------------------------------------------------
# settings and paths
# --------------------------------------------------------------------------------------------------
def collection_settings(env_id: str, n_train: Optional[int] = None, n_test: Optional[int] = None, seed: int = 0,
                        env_kwargs: Optional[Mapping[str, Any]] = None, policy: Any = "random",
                        n_envs: int = DEFAULT_N_ENVS, state_source: str = "auto") -> dict:
    """The settings that define a dataset, with defaults filled in (sizes from a registered preset, else
    :data:`GENERIC_SIZES`) and checked: a bad value raises ``ValueError`` before anything runs."""
    preset = env_preset(env_id)
    d_train, d_test = preset.dataset_sizes if preset is not None else GENERIC_SIZES
    n_train = d_train if n_train is None else n_train
    n_test = d_test if n_test is None else n_test
    for name, value, minimum in (("n_train", n_train, 1), ("n_test", n_test, 1), ("n_envs", n_envs, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    env_kwargs = dict(env_kwargs or {})
    try:
        json.dumps(env_kwargs)
    except TypeError as err:
        raise ValueError(f"env_kwargs must hold JSON values only (they are recorded in the file): {err}") from err
    policy_desc = policy if isinstance(policy, str) else (os.fspath(policy) if isinstance(policy, os.PathLike)
                                                           else f"callable:{getattr(policy, '__qualname__', '?')}")
    return {"env_id": env_id, "n_train": int(n_train), "n_test": int(n_test), "seed": int(seed),
            "env_kwargs": env_kwargs, "policy": policy_desc, "n_envs": int(n_envs),
            "state_source": check_state_source(state_source)}


def default_path(env_id: str, settings: Optional[Mapping[str, Any]] = None) -> Path:
    """``<data root>/envs/<env_id>.npz`` for the default settings, ``<env_id>-<hash>.npz`` for any other."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", env_id)
    if settings is not None and dict(settings) != collection_settings(env_id):
        name += "-" + hashlib.sha256(json.dumps(dict(settings), sort_keys=True).encode()).hexdigest()[:10]
    return data_root() / "envs" / f"{name}.npz"


# --------------------------------------------------------------------------------------------------
# collection
# --------------------------------------------------------------------------------------------------
class _Buffers:
    """Preallocated per-sensor arrays (and the true state) filled row by row from vector-env batches."""

    def __init__(self, space: spaces.Dict, n: int, state_dim: Optional[int]) -> None:
        self.space = space
        self.n = n
        self.filled = 0
        self.arrays = {k: np.empty((n, *sub.shape), dtype=storage_dtype(sub)) for k, sub in space.spaces.items()}
        self.binary = {k: is_binary_box(sub) for k, sub in space.spaces.items()}
        self.state = None if state_dim is None else np.empty((n, state_dim), dtype=np.float32)

    def add(self, obs: Mapping[str, np.ndarray], state: Optional[np.ndarray]) -> None:
        take = min(self.n - self.filled, len(next(iter(obs.values()))))
        rows = slice(self.filled, self.filled + take)
        for k, arr in self.arrays.items():
            value = np.asarray(obs[k])[:take]
            if self.binary[k] and arr.dtype == np.uint8 and not np.all((value == 0) | (value == 1)):
                # not binary after all: keep every value exactly, as float32
                self.arrays[k] = arr = arr.astype(np.float32)
                self.binary[k] = False
            arr[rows] = value
        if self.state is not None:
            self.state[rows] = np.asarray(state, dtype=np.float32)[:take]
        self.filled += take


STATE_SOURCES = ("auto", "none", "info:<key>", "sensor:<name>")


@dataclass(frozen=True)
class StateSource:
    """Where a collection reads the true state: ``info[key]`` (``kind="info"``) or the sensor ``key`` of the
    observation (``kind="sensor"``); ``names``: the state variables' names when the environment declares them."""

    kind: str
    key: str
    names: Optional[tuple[str, ...]] = None

    def batch(self, obs: Mapping[str, Any], infos: Mapping[str, Any], n_envs: int, what: str) -> np.ndarray:
        """The (n_envs, d) float32 states of one vector-env ``reset`` or ``step``."""
        if self.kind == "sensor":
            return np.asarray(obs[self.key], dtype=np.float32).reshape(n_envs, -1)
        if self.key not in infos or not np.all(infos.get(f"_{self.key}", True)):
            raise ValueError(f"the state source is info[{self.key!r}] but the {what} info lacks it for some "
                             f"sub-environment; return info[{self.key!r}] (a 1-D float array) from reset and step, "
                             f"or choose another state_source ({', '.join(STATE_SOURCES)})")
        return np.asarray(infos[self.key], dtype=np.float32).reshape(n_envs, -1)

    def names_for(self, width: int) -> tuple[str, ...]:
        """The declared names when there are ``width`` of them, else ``<key>[i]``."""
        if self.names is not None and len(self.names) == width:
            return self.names
        return tuple(f"{self.key}[{i}]" for i in range(width))


def env_attribute(env: gym.Env, name: str) -> Any:
    """``env``'s attribute ``name`` found at any wrapper level (the outermost first), or None."""
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return None


def check_state_source(value: Any) -> str:
    """``value`` if it is a valid ``state_source`` spelling, else a ValueError naming the choices."""
    if isinstance(value, str) and (value in ("auto", "none") or re.fullmatch(r"(info|sensor):\S+", value)):
        return value
    raise ValueError(f"state_source must be one of {', '.join(STATE_SOURCES)} (e.g. 'sensor:state' or "
                     f"'info:qpos'), got {value!r}")


def resolve_state_source(source: str, env: gym.Env) -> Optional[StateSource]:
    """The :class:`StateSource` that ``source`` names for ``env`` (a single, unwrapped-or-wrapped env), or None.

    ``"auto"``: ``info["state"]`` when the environment declares ``state_names`` (at any wrapper level), else no
    state. ``"info:<key>"`` / ``"sensor:<name>"``: that info entry / that Box sensor (checked here)."""
    check_state_source(source)
    declared = env_attribute(env, "state_names")
    names = tuple(str(s) for s in declared) if declared is not None else None
    if source == "none":
        return None
    if source == "auto":
        return StateSource("info", "state", names) if names else None
    kind, key = source.split(":", 1)
    space = env.observation_space
    if kind == "sensor":
        if not isinstance(space, spaces.Dict) or key not in space.spaces:
            sensors = sorted(space.spaces) if isinstance(space, spaces.Dict) else []
            raise ValueError(f"state_source={source!r}: the observation has no sensor {key!r} (sensors: {sensors})")
        if not isinstance(space.spaces[key], spaces.Box):
            raise ValueError(f"state_source={source!r}: sensor {key!r} is {space.spaces[key]}, not a Box of numbers")
    return StateSource(kind, key, names)


def collect_split(env_id: str, n: int, seeds: Sequence[int], env_kwargs: Mapping[str, Any], policy: Any,
                  bar: Any = None, state_source: str = "auto"
                  ) -> tuple[dict[str, np.ndarray], Optional[np.ndarray], str]:
    """``n`` observations (rows in (step, sub-environment) order, reset observations included) of
    ``len(seeds)`` sub-environments, and their true states when ``state_source`` finds them."""
    vec = gym.vector.SyncVectorEnv([lambda: gym.make(env_id, **env_kwargs) for _ in seeds],
                                   autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    try:
        space = vec.single_observation_space
        source = resolve_state_source(state_source, vec.envs[0])
        act, policy_desc = make_policy(policy, vec, int(seeds[0]))
        obs, infos = vec.reset(seed=[int(s) for s in seeds])
        state = source.batch(obs, infos, len(seeds), "reset") if source else None
        buffers = _Buffers(space, n, None if state is None else state.shape[1])
        while True:
            before = buffers.filled
            buffers.add(obs, state)
            if bar is not None:
                bar.update(buffers.filled - before)
            if buffers.filled >= n:
                break
            obs, _, _, _, infos = vec.step(act(obs))
            state = source.batch(obs, infos, len(seeds), "step") if source else None
    finally:
        vec.close()
    return buffers.arrays, buffers.state, policy_desc


def collect(env_id: str, n_train: Optional[int] = None, n_test: Optional[int] = None, seed: int = 0,
            env_kwargs: Optional[Mapping[str, Any]] = None, policy: Any = "random", n_envs: int = DEFAULT_N_ENVS,
            progress: bool = True, path: Optional[Union[str, os.PathLike]] = None, state_source: str = "auto") -> Path:
    """Collect ``n_train`` + ``n_test`` observations of ``env_id`` and write them to one ``.npz``; returns its path.

    ``env_id`` may be ``"module:EnvId"`` or a registered preset's alias. ``policy``: ``"random"`` (the vector action space's ``sample``), a
    callable ``obs batch -> action batch``, or the path of a saved agent read by a registered loader
    (:func:`register_policy_loader`). ``path`` defaults to :func:`default_path`. The file is written to a
    temporary name and renamed (atomic). Metadata keys: ``format_version``, ``env_id``, ``env_kwargs``,
    ``policy``, ``seed``, ``n_envs``, ``train_seeds``, ``test_seeds``, ``n_train``, ``n_test``,
    ``observation_space`` (:func:`space_to_json`), ``modalities`` (per key: ``stored_dtype``, ``shape``),
    ``state_names`` (or null), ``state_key``, ``settings`` (as :func:`collection_settings`), ``versions``
    (mhvae_perception, gymnasium, numpy, python), ``collect_seconds``. ``state_source``: see the module docstring.
    """
    env_id = resolve_env_id(resolve_env_name(env_id))  # a preset alias, "module:EnvId" or an id
    settings = collection_settings(env_id, n_train, n_test, seed, env_kwargs, policy, n_envs, state_source)
    probe = gym.make(env_id, **settings["env_kwargs"])
    try:
        space = probe.observation_space
        check_observation_space(space)
        source = resolve_state_source(settings["state_source"], probe)  # a bad sensor name fails here
    finally:
        probe.close()
    state_names: Optional[tuple[str, ...]] = None
    path = Path(path) if path is not None else default_path(env_id, settings)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")  # np.savez_compressed would append it anyway
    path.parent.mkdir(parents=True, exist_ok=True)

    seeds = {split: [int(s) for s in np.random.SeedSequence([int(seed), i]).generate_state(settings["n_envs"])]
             for i, split in enumerate(("train", "test"))}
    bar = None
    if progress:  # a bar on a terminal, lines with the ETA in a log
        bar = progress_bar(settings["n_train"] + settings["n_test"], f"collect {env_id}", "obs")
    t0 = time.perf_counter()
    out: dict[str, np.ndarray] = {}
    skey = state_key(space)
    policy_desc = "random"
    try:
        for split in ("train", "test"):
            arrays, states, policy_desc = collect_split(env_id, settings[f"n_{split}"], seeds[split],
                                                        settings["env_kwargs"], policy, bar, settings["state_source"])
            if states is not None:
                if settings["state_source"] == "auto" and states.shape[1] != len(source.names):
                    raise ValueError(f"info['state'] has {states.shape[1]} entries but the environment's "
                                     f"state_names names {len(source.names)}")
                state_names = source.names_for(states.shape[1])
            out.update({array_key(split, k): v for k, v in arrays.items()})
            if states is not None:
                out[array_key(split, skey)] = states
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    metadata = {
        "format_version": FORMAT_VERSION, "env_id": env_id, "env_kwargs": settings["env_kwargs"],
        "policy": policy_desc, "seed": int(seed), "n_envs": settings["n_envs"],
        "train_seeds": seeds["train"], "test_seeds": seeds["test"],
        "n_train": settings["n_train"], "n_test": settings["n_test"],
        "observation_space": space_to_json(space),
        "modalities": {k: {"stored_dtype": str(out[array_key("train", k)].dtype),
                           "shape": list(out[array_key("train", k)].shape[1:])} for k in space.spaces},
        "state_names": list(state_names) if state_names else None, "state_key": skey if state_names else None,
        "settings": settings,
        "versions": {"mhvae_perception": __version__, "gymnasium": gym.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "collect_seconds": round(seconds, 2),
    }
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, metadata=np.array(json.dumps(metadata)), **out)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_collected(path: Union[str, os.PathLike]) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the metadata dict of a collected file, without pickle (``allow_pickle=False``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a corrupt, truncated or foreign one.
    """
    import zipfile
    import zlib

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {path} not found; collect it with "
                                f"`python -m envs.collect --env-id ENV_ID` or mhvae_perception.data.collect.collect()")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "metadata" not in z.files:
                raise ValueError(f"it has no 'metadata' entry (has {sorted(z.files)})")
            metadata = json.loads(str(z["metadata"]))
            arrays = {k: z[k] for k in z.files if k != "metadata"}
    except (ValueError, OSError, zipfile.BadZipFile, zlib.error, EOFError, KeyError) as err:  # JSON errors too
        raise ValueError(f"dataset file {path} is corrupt or not a collected dataset: {err}") from err
    if not isinstance(metadata, dict):
        raise ValueError(f"dataset file {path}: its metadata is not a JSON object")
    return arrays, metadata
