"""Any registered Gymnasium environment as an agent environment: its name resolved into :class:`AgentEnv`
(the settings of agents/config.py, its sensors, its action space and the algorithm that acts in it).

A name is an alias of agents/config.py (``pendulum_sound``), a registered Gymnasium id (``MyEnv-v0``), or
``module:MyEnv-v0`` (Gymnasium's convention: the module is imported first, which registers the id). A module is
imported only for a name the user gave (``user_given=True``): a name read from a file (an agent's
``agent.json``) must already be registered in this process, or the user passes it again as ``env=module:Id``.

The environment must observe a ``Dict`` of at least two sensors (the agents act on MHVAE latents inferred from
any subset of them); anything else is refused with :class:`~agents.errors.SettingsError` naming the fix, before
any model is loaded or folder written. Its spaces are read from one instance (made and closed once per process).
"""
from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import gymnasium as gym
from gymnasium import spaces

import envs  # noqa: F401  (registers this project's environments, which the aliases name)
from agents.config import (ACTION_SPACES_OF_ALGO, ALGO_FOR_ACTION_SPACE, ALIASES, DEFAULT_EPISODE_STEPS, GENERIC,
                           TUNED, conditions)
from agents.errors import SettingsError


@dataclass(frozen=True)
class AgentEnv:
    """An environment the agents train and act in, with its settings (agents/config.py)."""

    name: str  # recorded as agent.json's "env": an alias, or the plain Gymnasium id
    env_id: str  # the registered Gymnasium id
    sensors: tuple[str, ...]  # the keys of its Dict observation
    action_space: gym.Space = field(repr=False)
    algo: str  # the default algorithm (agents/config.py, else from the action space)
    episode_steps: int  # the default episode length
    settings: Mapping[str, Any] = field(repr=False)  # GENERIC + TUNED[env_id] + the alias's keys

    def __getitem__(self, key: str) -> Any:
        return self.settings[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    @property
    def env_kwargs(self) -> dict:
        return dict(self.settings["env_kwargs"])

    @property
    def conditions(self) -> list[str]:
        """Each sensor alone, then all together (``both`` for two sensors)."""
        return conditions(self.sensors)


def _import_for(name: str) -> str:
    """``module:Id`` -> ``Id`` after importing ``module`` (the user's word only)."""
    module, env_id = name.split(":", 1)
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise SettingsError(f"setting env={name!r}: its module {module!r} cannot be imported ({err}); pass "
                            f"env=<module>:<EnvId> with the module that registers the environment") from None
    return env_id


def _registered_id(name: str, user_given: bool) -> str:
    if ":" in name:
        if not user_given:
            raise SettingsError(f"env={name!r} was read from a file, and a file never chooses a module to import: "
                                f"pass env={name!r} yourself")
        name = _import_for(name)
    if name not in gym.registry and not user_given:
        raise SettingsError(f"the agent was trained on env {name!r} (its agent.json), which is not registered in this "
                            f"process, and a file never chooses a module to import: pass env=<module>:{name} with "
                            f"the module that registers it")
    if name not in gym.registry:
        raise SettingsError(f"setting env={name!r} is not allowed: no Gymnasium environment {name!r} is registered "
                            f"in this process. env must be a registered Gymnasium id, <module>:{name} with the "
                            f"module that registers it (imported first), or one of {tuple(ALIASES)} (aliases)")
    return name


@functools.lru_cache(maxsize=64)
def _spaces(env_id: str, kwargs_json: str) -> tuple[gym.Space, gym.Space]:
    """The observation and action spaces of one instance (made once per id and keyword arguments)."""
    env = gym.make(env_id, **json.loads(kwargs_json))
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def check_sensors(name: str, observation_space: gym.Space) -> tuple[str, ...]:
    """The sensor names of a ``Dict`` observation of >= 2 entries; else SettingsError with the fix."""
    fix = ("register an environment whose observation is a gymnasium.spaces.Dict with one entry per sensor, e.g. "
           "gymnasium.wrappers.AddRenderObservation(env, render_only=False) puts rendered pixels beside the "
           "state; then pass env=<its id> (or env=<module>:<its id>)")
    if not isinstance(observation_space, spaces.Dict):
        raise SettingsError(f"setting env={name!r}: its observation space is {observation_space}, not a Dict of "
                            f"sensors. The agents act on MHVAE latents inferred from any subset of at least two "
                            f"sensors: {fix}")
    sensors = tuple(observation_space.spaces)
    if len(sensors) < 2:
        raise SettingsError(f"setting env={name!r}: its Dict observation has {len(sensors)} sensor "
                            f"{sensors}; cross-modal agents need at least two (one to train from, another to act "
                            f"from): {fix}. With one sensor, train SB3 on the environment directly")
    return sensors


def default_algo(env_name: str, action_space: gym.Space) -> str:
    """The algorithm for an action space: Box -> SAC, Discrete -> DQN, MultiDiscrete / MultiBinary -> PPO."""
    kind = type(action_space).__name__
    if kind not in ALGO_FOR_ACTION_SPACE:
        raise SettingsError(f"setting env={env_name!r}: its action space {action_space} has no algorithm here; the "
                            f"agents act in {tuple(ALGO_FOR_ACTION_SPACE)} action spaces (wrap the environment's "
                            f"actions into one of them)")
    return ALGO_FOR_ACTION_SPACE[kind]


def check_algo(env: AgentEnv, algo: Any) -> str:
    """``algo`` (None: the environment's default) checked against its action space."""
    if algo is None:
        return env.algo
    if algo not in ACTION_SPACES_OF_ALGO:
        raise SettingsError(f"setting algo={algo!r} is not allowed: algo must be None (chosen from the action "
                            f"space) or one of {tuple(ACTION_SPACES_OF_ALGO)}")
    kind = type(env.action_space).__name__
    if kind not in ACTION_SPACES_OF_ALGO[algo]:
        allowed = [a for a, kinds in ACTION_SPACES_OF_ALGO.items() if kind in kinds]
        raise SettingsError(f"setting algo={algo!r}: {algo.upper()} does not act in {env.name}'s {kind} action "
                            f"space; choose one of {allowed}, or leave algo=None ({env.algo})")
    return algo


def _canonical_name(name: str, env_id: str) -> str:
    """An alias stays itself; a plain id with a plain alias (no keys of its own) is recorded as the alias, so
    ``env=PendulumSound-v0`` and ``env=pendulum_sound`` are the same agent."""
    if name in ALIASES:
        return name
    for alias, entry in ALIASES.items():
        if entry["env_id"] == env_id and set(entry) == {"env_id"}:
            return alias
    return env_id


def resolve_env(name: Any, user_given: bool = True) -> AgentEnv:
    """The :class:`AgentEnv` of an alias, a registered id or ``module:Id`` (imported only when ``user_given``).
    Raises SettingsError naming the problem and the fix (unknown, not a Dict of >= 2 sensors, no algorithm)."""
    if isinstance(name, AgentEnv):
        return name
    if not isinstance(name, str) or not name.strip():
        raise SettingsError(f"setting env={name!r} is not allowed: env must be a Gymnasium id (MyEnv-v0 or "
                            f"module:MyEnv-v0) or one of the aliases {tuple(ALIASES)}")
    alias = dict(ALIASES.get(name, {}))
    env_id = alias.pop("env_id", None) or _registered_id(name, user_given)
    settings = {**GENERIC, **TUNED.get(env_id, {}), **alias}
    canonical = _canonical_name(name, env_id)
    try:
        observation_space, action_space = _spaces(env_id, json.dumps(settings["env_kwargs"], sort_keys=True))
    except Exception as err:  # the environment's own constructor failed
        raise SettingsError(f"setting env={name!r}: gym.make({env_id!r}) failed ({type(err).__name__}: {err}); "
                            f"fix the environment or its registration") from None
    sensors = check_sensors(name, observation_space)
    algo = settings["algo"] or default_algo(name, action_space)
    spec_steps = gym.spec(env_id).max_episode_steps
    steps = settings["episode_steps"] or spec_steps or DEFAULT_EPISODE_STEPS
    return AgentEnv(canonical, env_id, sensors, action_space, algo, int(steps), settings)


def make_env(env: AgentEnv, episode_steps: int | None = None, render_mode: str | None = None,
             state: bool = False) -> gym.Env:
    """One instance of ``env`` (with ``state``: of its true-state environment, ``state_env_id``) whose episodes
    end after ``episode_steps`` (default: the env's). The env's keyword arguments (e.g. Hyperhot's ``hit_reward``)
    hold for its state environment too: the same game with the same reward."""
    env_id = env["state_env_id"] if state else env.env_id
    steps = int(episode_steps or env.episode_steps)
    limit = {} if steps == gym.spec(env_id).max_episode_steps else {"max_episode_steps": steps}
    render = {} if render_mode is None else {"render_mode": render_mode}  # an env may take no render_mode
    return gym.make(env_id, **render, **limit, **env.env_kwargs)


def recorded_env(meta: Mapping[str, Any], given: Any = None) -> AgentEnv:
    """The environment of a saved agent (its ``agent.json``'s ``env``). The recorded name is resolved without
    importing anything (an alias, or an id already registered in this process); ``given`` (the user's
    ``env=...``, e.g. ``module:Id``, whose module is imported) must name that same environment."""
    recorded = meta.get("env")
    if given is None:
        return resolve_env(recorded, user_given=False)
    env = resolve_env(given, user_given=True)
    if env.name != _canonical_name(str(recorded), str(recorded)):  # (a recorded plain id with an alias is it)
        fix = (f"leave env=None (or pass env={recorded})" if recorded in ALIASES else
               f"pass env=<module>:{recorded} with the module that registers it, or leave env=None when it is "
               f"registered already")
        raise SettingsError(f"setting env={given!r} names {env.name!r}, but the agent was trained on "
                            f"{recorded!r}: {fix}")
    return env


def default_hyperparameters(env: Any, algo: Any = None) -> dict:
    """A copy of agents/config.py's hyper-parameters of ``env``'s algorithm (``algo``, else the one its action
    space gets), for the scripts' ``hp`` default; ``{}`` when the settings are refused (the check says why)."""
    from agents.config import HYPERPARAMS

    try:
        return json.loads(json.dumps(HYPERPARAMS[check_algo(resolve_env(env), algo)]))
    except SettingsError:
        return {}
