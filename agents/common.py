"""Shared pieces of the agent scripts: environment construction, training, safe saving/loading with the MHVAE
reference, evaluation. Usable without sacred (the tests and ``agents/transfer.py`` call :func:`train_agent`).

Agent files (``agent_dir/``): ``agent.json`` (format, algorithm, hyper-parameters, observation and action
spaces as JSON, settings, the MHVAE checkpoint path + SHA-256, the policy file's SHA-256) and ``policy.pt`` (the
SB3 policy's ``state_dict``, plain tensors). Loading rebuilds the algorithm from the JSON and reads the tensors
with ``torch.load(weights_only=True)``: nothing in an agent folder is executed. SB3's own ``agent.zip`` (which
unpickles serialized objects when loaded) is neither written nor read.

The folder's guarantees (agents/files.py, agents/settings.py): file names read from its JSON stay inside it; one
training at a time (``.lock``); a save replaces its files only once all are written (a full disk leaves the
previous ones); settings are checked before any work, and a folder's agent is never retrained with other
settings nor from step 0 (:func:`plan_training`).
"""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from agents.config import HYPERPARAMS, ON_OUT_OF_RANGE, parse_modalities
from agents.environments import AgentEnv, check_algo, make_env, resolve_env
from agents.files import (AgentDiskFullError, AgentFileError, AgentFolderLock, contained_path,  # noqa: F401
                          remove_leftover_temp_files, staged_writes)  # (AgentDiskFullError: re-exported)
from agents.settings import (AGENT_KEYS, OTHER_FOLDER, SettingsError, changed_settings, check_train_settings,
                             describe_changes)
from mhvae_perception.models.devices import resolve_device
from mhvae_perception.hashing import file_sha256
from mhvae_perception.hub import resolve_model, shipped_or_path
from mhvae_perception.wrappers import VecMHVAEObservation, VecSensorFailure

ALGOS = ("sac", "dqn", "ppo")
AGENT_FORMAT = "mhvae-agent/1"
AGENT_JSON, POLICY_FILE = "agent.json", "policy.pt"
LogScalar = Callable[[str, float, int], None]


def algo_class(name: str):
    """The Stable-Baselines3 class of an algorithm name."""
    from stable_baselines3 import DQN, PPO, SAC

    try:
        return {"sac": SAC, "dqn": DQN, "ppo": PPO}[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {ALGOS}") from None


def env_settings(env: str | AgentEnv) -> AgentEnv:
    """An environment name (alias, registered id or ``module:Id``) as :class:`~agents.environments.AgentEnv`:
    its settings (agents/config.py), sensors, action space and default algorithm."""
    return resolve_env(env)


# ------------------------------------------------------------------------------------------ environments
def _raw_env(env: AgentEnv, state: bool, render_mode: str | None = None, episode_steps: int | None = None) -> gym.Env:
    """One instance of the environment (or of its state reference), its episodes ``episode_steps`` long."""
    if state and env["state_env_id"] is None:
        raise ValueError("this environment has no low-dimensional state environment (state=True)")
    return make_env(env, episode_steps, render_mode, state=state)


def make_vec_env(env: str | AgentEnv, modalities, mhvae: Any = None, n_envs: int = 1, state: bool = False,
                 seed: int = 0, n_stack: int = 1, failure_p: Any = None, failure_seed: int | None = None,
                 video_folder: str | os.PathLike | None = None, on_out_of_range: str = ON_OUT_OF_RANGE,
                 device: str | torch.device = "cpu", sample: bool = False, episode_steps: int | None = None):
    """A DummyVecEnv of Monitor-wrapped raw envs under one batched :class:`VecMHVAEObservation` (or state
    envs), optionally with :class:`VecSensorFailure` (``failure_p``) and a ``VecFrameStack`` of ``n_stack``
    consecutive observations (latents carry the angle; two consecutive ones give the agent the velocity).
    ``env``: an alias, a registered id, ``module:Id`` or an :class:`AgentEnv`; ``modalities``: sensor names,
    ``both`` / ``all`` for every sensor. ``sample``: observe samples of q(z_c | sensors) instead of their means
    (seeded by ``seed``). ``episode_steps``: episode length (default: the env's). ``video_folder``: environment 0
    renders rgb_array frames into Gymnasium's ``RecordVideo`` (needs moviepy)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    settings = env_settings(env)
    if not state and mhvae is None:
        raise ValueError("an MHVAE checkpoint is needed: pass mhvae=PATH (or state=True for the state reference)")

    def make(i: int) -> Callable[[], gym.Env]:
        def thunk() -> gym.Env:
            if video_folder is not None and i == 0:
                from gymnasium.wrappers import RecordVideo

                raw = RecordVideo(_raw_env(settings, state, "rgb_array", episode_steps), str(video_folder),
                                  episode_trigger=lambda episode: True, disable_logger=True)
            else:
                raw = _raw_env(settings, state, episode_steps=episode_steps)
            return Monitor(raw)
        return thunk

    venv = DummyVecEnv([make(i) for i in range(int(n_envs))])
    if not state:
        venv = VecMHVAEObservation(venv, mhvae, parse_modalities(modalities, settings.sensors), sample=sample,
                                   on_out_of_range=on_out_of_range, device=device)
        if failure_p is not None:
            venv = VecSensorFailure(venv, p=failure_p, seed=failure_seed)
    venv.seed(seed)
    return VecFrameStack(venv, int(n_stack)) if int(n_stack) > 1 else venv


def check_video_support() -> None:
    """Gymnasium's RecordVideo writes with moviepy: refuse ``video=True`` early, with the fix, when it is missing."""
    try:
        import moviepy  # noqa: F401
    except ImportError:
        raise RuntimeError("video=True needs moviepy (Gymnasium's RecordVideo writes the files with it): "
                           "pip install moviepy, or run without video") from None


def mhvae_reference(path) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}


# ------------------------------------------------------------------------------- spaces as JSON (no pickle)
def _number(x: float) -> float | str:
    x = float(x)
    return x if math.isfinite(x) else str(x)  # "inf", "-inf", "nan": standard JSON has no infinities


def space_to_json(space: gym.Space) -> dict:
    """A Box, Discrete, MultiDiscrete or MultiBinary space as plain JSON (the spaces the agents use)."""
    if isinstance(space, spaces.Box):
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": [_number(v) for v in space.low.ravel()], "high": [_number(v) for v in space.high.ravel()]}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist(),
                "dtype": str(space.dtype)}
    if isinstance(space, spaces.MultiBinary):
        shape = [int(k) for k in space.shape]
        return {"type": "MultiBinary", "n": shape[0] if len(shape) == 1 else shape}
    raise TypeError(f"cannot describe a {type(space).__name__} space as JSON; agents act on Box latents with "
                    f"Box, Discrete, MultiDiscrete or MultiBinary actions")


def space_from_json(data: Mapping[str, Any]) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        shape, dtype = tuple(int(s) for s in data["shape"]), np.dtype(data["dtype"])
        low = np.array([float(v) for v in data["low"]], dtype=dtype).reshape(shape)
        high = np.array([float(v) for v in data["high"]], dtype=dtype).reshape(shape)
        return spaces.Box(low, high, shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete([int(n) for n in data["nvec"]], dtype=np.dtype(data.get("dtype", "int64")),
                                    start=[int(s) for s in data.get("start", [0] * len(data["nvec"]))])
    if kind == "MultiBinary":
        n = data["n"]
        return spaces.MultiBinary(int(n) if not isinstance(n, list) else [int(k) for k in n])
    raise AgentFileError(f"unknown space type {kind!r} in the agent description; expected 'Box', 'Discrete', "
                         f"'MultiDiscrete' or 'MultiBinary'")


class _SpacesOnly(gym.Env):
    """Holds an agent's spaces so that SB3 can rebuild the algorithm without an environment; not steppable."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed=None, options=None):
        raise RuntimeError("this agent was loaded for acting only; pass it an environment (agent.set_env) to train")

    def step(self, action):
        raise RuntimeError("this agent was loaded for acting only; pass it an environment (agent.set_env) to train")


# ----------------------------------------------------------------------------------------- save / load
def save_agent(agent, agent_dir: str | os.PathLike, meta: Mapping[str, Any]) -> dict:
    """Write ``policy.pt`` (the policy's state dict) and ``agent.json`` (``meta`` + format, spaces, hashes).

    Both are written in full to temporary files before either is replaced, so a full disk or a crash leaves the
    previous pair (whose hashes match each other) in place; a full disk raises :class:`AgentDiskFullError`."""
    agent_dir = Path(agent_dir)
    agent_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in agent.policy.state_dict().items()}
    with staged_writes(f"the agent in {agent_dir}") as stage:
        policy_tmp = stage.write(agent_dir / POLICY_FILE, lambda handle: torch.save(state, handle))
        full = {"format": AGENT_FORMAT, **meta, "policy": "MlpPolicy", "policy_file": POLICY_FILE,
                "policy_sha256": file_sha256(policy_tmp),
                "observation_space": space_to_json(agent.observation_space),
                "action_space": space_to_json(agent.action_space)}
        text = json.dumps(full, indent=2).encode()
        stage.write(agent_dir / AGENT_JSON, lambda handle: handle.write(text))
    return full


def read_agent_meta(agent_dir: str | os.PathLike) -> dict:
    """The agent's JSON description; refuses folders in SB3's pickle-based format with the fix."""
    agent_dir = Path(agent_dir)
    meta_path = agent_dir / AGENT_JSON
    if not meta_path.is_file():
        if (agent_dir / "agent.zip").is_file():
            raise AgentFileError(f"{agent_dir} holds only agent.zip, SB3's format whose loading unpickles (executes) "
                                 f"code; it is not loaded. Retrain the agent with this version (agents/train.py)")
        raise FileNotFoundError(f"agent description {meta_path} not found; train an agent into {agent_dir} first")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise AgentFileError(f"{meta_path} is not valid JSON ({err}); retrain the agent") from None
    if not isinstance(meta, dict) or meta.get("format") != AGENT_FORMAT:
        raise AgentFileError(f"{meta_path} is not a {AGENT_FORMAT} description (format "
                             f"{meta.get('format') if isinstance(meta, dict) else None!r}); it was written by an "
                             f"older version that stored agents as pickles: retrain the agent")
    return meta


def check_mhvae_reference(agent_dir: Path, meta: Mapping[str, Any]) -> None:
    ref = meta.get("mhvae")
    if ref and ref.get("path"):
        path = Path(ref["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{agent_dir} was trained on MHVAE checkpoint {path}, which no longer exists")
        digest = file_sha256(path)
        if digest != ref["sha256"]:
            raise ValueError(f"{agent_dir} was trained on {path} with SHA-256 {ref['sha256'][:12]}..., but the file "
                             f"now has {digest[:12]}...; the latents differ: use the original checkpoint or retrain")


def verify_policy_file(agent_dir: Path, meta: Mapping[str, Any]) -> Path:
    """The agent's ``policy.pt``, checked to lie inside ``agent_dir`` and to have the SHA-256 its description
    records (else AgentFileError / FileNotFoundError naming the file); nothing is read but its bytes."""
    policy_path = contained_path(agent_dir, meta.get("policy_file", POLICY_FILE), str(agent_dir / AGENT_JSON))
    if policy_path.name != POLICY_FILE:
        raise AgentFileError(f"{agent_dir / AGENT_JSON} names policy file {policy_path.name!r}; expected {POLICY_FILE}")
    if not policy_path.is_file():
        raise FileNotFoundError(f"agent policy weights {policy_path} not found (the description is there); "
                                f"the folder is incomplete: retrain the agent")
    digest = file_sha256(policy_path)
    if digest != meta.get("policy_sha256"):
        raise AgentFileError(f"{policy_path} has SHA-256 {digest[:12]}... but {AGENT_JSON} records "
                             f"{str(meta.get('policy_sha256'))[:12]}...: the weights were changed; retrain the agent")
    return policy_path


def load_agent(agent_dir, check_mhvae: bool = True, device: str | torch.device = "auto"):
    """Rebuild the agent in ``agent_dir`` from its JSON description and tensor-only policy weights.

    With ``check_mhvae`` the referenced checkpoint must exist and still have the SHA-256 recorded at training
    time (else a ValueError says which file changed). Nothing is unpickled: ``policy.pt`` is read with
    ``weights_only=True`` and must match its recorded SHA-256; non-finite weights are refused.
    Returns ``(agent, meta)``; the agent acts (``predict``) and can be given an env to train further.
    """
    agent_dir = Path(agent_dir)
    meta = read_agent_meta(agent_dir)
    if check_mhvae:
        check_mhvae_reference(agent_dir, meta)
    policy_path = verify_policy_file(agent_dir, meta)
    dev = resolve_device(device)
    try:
        state = torch.load(policy_path, map_location=dev, weights_only=True)
    except Exception as err:  # a pickle that is not plain tensors is refused by weights_only
        raise AgentFileError(f"{policy_path} is not a plain tensor state dict ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}); it is not loaded") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise AgentFileError(f"{policy_path} must hold a dict of tensors")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise AgentFileError(f"{policy_path} has non-finite weights in {bad[0]!r}; the agent diverged: retrain it")
    stub = _SpacesOnly(space_from_json(meta["observation_space"]), space_from_json(meta["action_space"]))
    hp = dict(meta.get("hyperparameters") or {})
    # the architecture comes from the description; training-only settings are kept small (no replay memory,
    # a short rollout buffer)
    small = {"n_steps": 64, "batch_size": 64} if meta["algo"] == "ppo" else {"buffer_size": 1, "learning_starts": 0}
    build = {"policy_kwargs": hp.get("policy_kwargs"), **small}
    agent = algo_class(meta["algo"])(meta.get("policy", "MlpPolicy"), stub, device=dev, verbose=0, **build)
    missing, unexpected = agent.policy.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise AgentFileError(f"{policy_path} does not fit the described {meta['algo']} policy (missing "
                             f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]}); retrain the agent")
    agent.policy.set_training_mode(False)
    return agent, meta


# ------------------------------------------------------------------------------------------- resuming
RESUME_DIR, RESUME_FORMAT = "resume", "mhvae-agent-resume/1"
_RESUME_FILES = ("params.pt", "replay.npz")
_REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
_MATCH_KEYS = AGENT_KEYS  # the settings saved with the training state (agents/settings.py)


def save_resume_state(agent, out_dir: Path, meta: Mapping[str, Any], best_mean_reward: float) -> None:
    """Everything needed to continue training, without pickles: parameters and optimizer states
    (``params.pt``, read back with weights_only=True), the filled part of the replay buffer (``replay.npz``,
    plain arrays; empty for an on-policy algorithm such as PPO, whose next rollout starts afresh) and
    ``resume.json`` (settings, step, SHA-256 of both files; replaced last). Nothing is replaced before all three
    are written in full: a full disk raises :class:`AgentDiskFullError` with the previous state intact."""
    d = out_dir / RESUME_DIR
    d.mkdir(parents=True, exist_ok=True)
    params = {"sb3": agent.get_parameters()}
    if getattr(agent, "log_ent_coef", None) is not None:
        params["log_ent_coef"] = agent.log_ent_coef.detach().cpu()
    buf = getattr(agent, "replay_buffer", None)
    filled = 0 if buf is None else buf.buffer_size if buf.full else buf.pos
    arrays = {} if buf is None else {k: getattr(buf, k)[:filled] for k in _REPLAY_FIELDS}
    with staged_writes(f"the training state in {d}") as stage:  # all three written before any is replaced
        written = {"params.pt": stage.write(d / "params.pt", lambda handle: torch.save(params, handle)),
                   "replay.npz": stage.write(d / "replay.npz", lambda handle: np.savez(handle, **arrays))}
        state = {"format": RESUME_FORMAT, "num_timesteps": int(agent.num_timesteps),
                 "n_updates": int(agent._n_updates), "replay_pos": int(buf.pos) if buf is not None else 0,
                 "replay_full": bool(buf.full) if buf is not None else False,
                 "best_mean_reward": float(best_mean_reward), "settings": {k: meta.get(k) for k in _MATCH_KEYS},
                 "sha256": {name: file_sha256(written[name]) for name in _RESUME_FILES}}
        text = json.dumps(state, indent=2).encode()
        stage.write(d / "resume.json", lambda handle: handle.write(text))


def read_resume_state(out_dir: Path, meta: Mapping[str, Any], timesteps: int, log: Callable[[str], None]) -> dict | None:
    """The saved resume state if it belongs to these settings and is complete (else None, saying why)."""
    d = out_dir / RESUME_DIR
    if not (d / "resume.json").is_file():
        return None
    try:
        state = json.loads((d / "resume.json").read_text())
    except json.JSONDecodeError:
        log(f"ignoring {d}: resume.json is not valid JSON; training from the start")
        return None
    if (state.get("format") != RESUME_FORMAT or not isinstance(state.get("settings"), dict)
            or changed_settings(state["settings"], meta)):
        log(f"ignoring {d}: saved with other settings; training from the start")
        return None
    if int(state["num_timesteps"]) > int(timesteps):
        log(f"ignoring {d}: it is at step {state['num_timesteps']}, beyond timesteps={timesteps}")
        return None
    names = state.get("sha256") if isinstance(state.get("sha256"), dict) else {}
    for name in names:
        contained_path(d, name, str(d / "resume.json"))
    if sorted(names) != sorted(_RESUME_FILES):
        raise AgentFileError(f"{d / 'resume.json'} lists the files {sorted(names)}; a resume state holds only "
                             f"{list(_RESUME_FILES)}. It was edited or crafted: delete {d} to train from the start")
    for name, digest in names.items():
        if not (d / name).is_file() or file_sha256(d / name) != digest:
            log(f"ignoring {d}: {name} is missing or incomplete (an interrupted save); training from the start")
            return None
    return state


def restore_resume_state(agent, out_dir: Path, state: Mapping[str, Any]) -> None:
    d = out_dir / RESUME_DIR
    params = torch.load(d / "params.pt", map_location=agent.device, weights_only=True)
    agent.set_parameters(params["sb3"], exact_match=True, device=agent.device)
    if "log_ent_coef" in params:
        with torch.no_grad():
            agent.log_ent_coef.copy_(params["log_ent_coef"].to(agent.device))
    buf = getattr(agent, "replay_buffer", None)
    if buf is not None:  # on-policy algorithms keep no transitions between rollouts
        with np.load(d / "replay.npz", allow_pickle=False) as arrays:
            for k in _REPLAY_FIELDS:
                part = arrays[k]
                getattr(buf, k)[:len(part)] = part
        buf.pos, buf.full = int(state["replay_pos"]), bool(state["replay_full"])
    agent.num_timesteps = int(state["num_timesteps"])
    agent._n_updates = int(state["n_updates"])


# --------------------------------------------------------------------------------------------- training
def _check_json(name: str, value: Any) -> Any:
    try:
        text = json.dumps(value)
    except TypeError as err:
        raise TypeError(f"{name} must be plain JSON values (numbers, strings, lists, dicts) so that the agent can be "
                        f"rebuilt without pickles: {err}") from None
    return json.loads(text)


def _callbacks(out_dir: Path, eval_env, eval_freq: int, n_eval_episodes: int, meta: dict,
               log_scalar: LogScalar | None, save_freq: int | None, verbose: int = 0):
    """EvalCallback that saves the best agent (safe format) into out_dir/best and logs metrics (to sacred's
    ``log_scalar``; SB3's logger records ``eval/mean_reward`` itself and, with ``verbose``, prints each
    evaluation); with ``save_freq`` a callback that saves the resume state every ``save_freq`` steps."""
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

    class SaveBest(BaseCallback):
        def _on_step(self) -> bool:
            save_agent(self.model, out_dir / "best", {**meta, "timesteps_trained": int(self.num_timesteps),
                                                      "mean_eval_reward": float(self.parent.best_mean_reward)})
            return True

    class LogEval(BaseCallback):
        def _on_step(self) -> bool:
            if log_scalar is not None:
                log_scalar("eval/mean_reward", float(self.parent.last_mean_reward), int(self.num_timesteps))
            return True

    class LogEpisodes(BaseCallback):
        """Training episode returns (from Monitor's info["episode"]) as metrics."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", []):
                if log_scalar is not None and "episode" in info:
                    log_scalar("train/episode_return", float(info["episode"]["r"]), int(self.num_timesteps))
            return True

    evaluator = EvalCallback(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq, deterministic=True,
                             callback_on_new_best=SaveBest(), callback_after_eval=LogEval(),
                             best_model_save_path=None, log_path=str(out_dir / "eval"), verbose=int(verbose))

    class SaveResume(BaseCallback):
        """Saves at the end of a rollout (the step's transition is in the replay buffer by then)."""

        def _on_training_start(self) -> None:
            self.last_save = self.num_timesteps

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if save_freq and self.num_timesteps - self.last_save >= int(save_freq):
                save_resume_state(self.model, out_dir, meta, evaluator.best_mean_reward)
                self.last_save = self.num_timesteps

    return evaluator, [evaluator, LogEpisodes(), SaveResume()]


# ------------------------------------------------------------------------------------ the agent folder
@dataclass(frozen=True)
class TrainingPlan:
    """What a training into an agent folder does: nothing (``done``: the folder's finished agent is returned),
    continue from ``resume_state``, or start from step 0 (no usable state); ``finished``: the folder's agent."""

    finished: dict | None
    resume_state: dict | None
    done: bool


def _saved_resume_record(out_dir: Path) -> dict | None:
    """``resume.json`` of the folder's training state when it is readable (its settings and step), else None."""
    path = out_dir / RESUME_DIR / "resume.json"
    try:
        state = json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if not isinstance(state, dict) or state.get("format") != RESUME_FORMAT:
        return None
    if not isinstance(state.get("settings"), dict):
        return None
    return state


def _refuse_other_settings(out_dir: Path, what: str, recorded: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    changed = changed_settings(recorded, meta)
    if changed:
        raise SettingsError(f"{out_dir} holds {what} with other settings ({describe_changes(changed)}). Training "
                            f"here would overwrite it or mix two trainings: {OTHER_FOLDER}, or re-run with the "
                            f"recorded settings (only raising timesteps continues an agent)")


def plan_training(out_dir: Path, meta: Mapping[str, Any], timesteps: int, resume: bool,
                  log: Callable[[str], None]) -> TrainingPlan:
    """Decide, before anything is loaded, what training into ``out_dir`` with ``meta``'s settings does.

    A folder holding an agent (``agent.json``) or an interrupted training's state (``resume/``) with other
    settings is refused (SettingsError naming them). A finished agent is left as it is when ``timesteps`` is its
    own (``done``), continued from its training state when ``timesteps`` is larger (refused without one), and
    refused for a smaller ``timesteps``. Otherwise training continues from a complete saved state, or starts."""
    try:
        finished = read_agent_meta(out_dir) if (out_dir / AGENT_JSON).is_file() else None
    except AgentFileError as err:
        raise AgentFileError(f"{err}. The folder is not overwritten: move it away, or {OTHER_FOLDER}") from None
    saved = _saved_resume_record(out_dir)
    if finished is None and saved is None:
        return TrainingPlan(None, read_resume_state(out_dir, meta, timesteps, log) if resume else None, False)
    if not resume:
        raise SettingsError(f"resume=False asks for a fresh training, but {out_dir} holds an agent or its training "
                            f"state; it is not overwritten: {OTHER_FOLDER}")
    if not meta["state"] and not (meta.get("mhvae") or {}).get("sha256"):
        raise SettingsError(f"{out_dir} holds an agent, and an in-memory MHVAE cannot be checked to be the one it "
                            f"was trained on: pass the MHVAE checkpoint's path, or {OTHER_FOLDER}")
    if finished is not None:
        _refuse_other_settings(out_dir, "an agent trained", finished, meta)
    if saved is not None:
        _refuse_other_settings(out_dir, "the training state of an agent trained", saved["settings"], meta)
    if finished is None:
        if int(saved.get("num_timesteps", 0)) > timesteps:
            raise SettingsError(f"{out_dir} holds an interrupted training at step {saved['num_timesteps']} and "
                                f"timesteps={timesteps} asks for fewer; raise timesteps to continue it, or "
                                f"{OTHER_FOLDER}")
        return TrainingPlan(None, read_resume_state(out_dir, meta, timesteps, log), False)
    done = int(finished.get("timesteps", 0))
    if timesteps < done:
        raise SettingsError(f"{out_dir} holds an agent trained for {done} steps and timesteps={timesteps} asks for "
                            f"fewer; it is not retrained. Evaluate it (python agents/evaluate.py with "
                            f"agent={out_dir}), raise timesteps to continue it, or {OTHER_FOLDER}")
    verify_policy_file(out_dir, finished)
    if timesteps == done:
        log(f"{out_dir}: the agent is trained ({done} steps with these settings); nothing to do. Raise timesteps "
            f"to train it further, or evaluate it: python agents/evaluate.py with agent={out_dir}")
        return TrainingPlan(finished, None, True)
    state = read_resume_state(out_dir, meta, timesteps, log)
    if state is None or int(state["num_timesteps"]) < done:
        raise SettingsError(f"{out_dir} holds an agent trained for {done} steps but no complete training state to "
                            f"continue it to timesteps={timesteps} (resume/ was removed after training, keep_resume="
                            f"False, or is incomplete); the policy alone lacks the optimizers and the replay buffer. "
                            f"Re-run with timesteps={done}, or {OTHER_FOLDER}")
    return TrainingPlan(finished, state, False)


def supersede(out_dir: Path, label: str, patterns: tuple[str, ...], log: Callable[[str], None]) -> list[Path]:
    """Move the entries of ``out_dir`` matching ``patterns`` (e.g. the evaluations of an agent that has since
    been trained further) into ``out_dir/superseded/<label>/``, so that none is taken for the current agent's."""
    moved = []
    target = out_dir / "superseded" / label
    for pattern in patterns:
        for entry in sorted(out_dir.glob(pattern)):
            target.mkdir(parents=True, exist_ok=True)
            os.replace(entry, target / entry.name)
            moved.append(target / entry.name)
    if moved:
        log(f"moved {', '.join(p.name for p in moved)} (of the agent before this training) into {target}")
    return moved


def _model_reference(mhvae: Any) -> dict:
    """The MHVAE checkpoint's path + SHA-256, read without loading it ({path, sha256: None} for a loaded model)."""
    if isinstance(mhvae, (str, os.PathLike)):
        return mhvae_reference(shipped_or_path(mhvae))
    return {"path": None, "sha256": None}


def train_agent(env: str | AgentEnv, modalities, mhvae, seed: int, timesteps: int | None, out_dir,
                state: bool = False, hp: dict | None = None, eval_freq: int = 2_000, n_eval_episodes: int = 5,
                progress: bool = True, tensorboard: bool = True, latent_stack: int | None = None,
                train_failure_p: float | None = None, train_sample: bool = False,
                device: str | torch.device = "auto", log: Callable[[str], None] = print,
                log_scalar: LogScalar | None = None, save_freq: int | None = None, resume: bool = True,
                keep_resume: bool = False, algo: str | None = None, episode_steps: int | None = None,
                verbose: int = 1) -> dict:
    """Train one agent on ``env`` (an alias, any registered Gymnasium id or ``module:Id`` whose observation is a
    Dict of >= 2 sensors; :mod:`agents.environments`) with ``algo`` (None: chosen from the action space, Box ->
    SAC, Discrete -> DQN, others -> PPO; hyper-parameters agents/config.py's, updated with ``hp``), for
    ``timesteps`` steps (None: the env's default) of episodes ``episode_steps`` long (None: the env's time limit)
    on ``latent_stack`` consecutive latents (default from agents/config.py; with
    ``train_failure_p`` each training sensor fails per step with that probability, as in
    :class:`~mhvae_perception.wrappers.VecSensorFailure`; with ``train_sample`` it trains on samples of
    q(z_c | sensors) rather than their means, so the policy is smooth over each posterior's spread, which covers
    the small offsets between the sensors' posteriors; the eval env has neither) and save it into
    ``out_dir`` (:func:`save_agent`; the best evaluation in ``out_dir/best``). Every setting is checked
    (:func:`agents.settings.check_train_settings`) before any model is loaded or folder written.
    ``log_scalar(name, value, step)`` receives evaluation means and training episode returns (sacred's
    ``_run.log_scalar``). SB3's progress bar with ``progress``; TensorBoard in ``out_dir/tb``; with
    ``verbose=1`` SB3's logger prints its tables to stdout (``rollout/ep_rew_mean``, ``eval/mean_reward``, ...)
    and the EvalCallback its evaluations, as SB3 and RL Zoo do.

    The folder: one training at a time (:class:`~agents.files.AgentFolderLock` on ``out_dir/.lock``; a second
    is refused). A folder holding an agent or a training state with other settings is refused
    (:func:`plan_training`); a finished agent with the same settings is returned untouched ("nothing to do")
    unless ``timesteps`` is raised, which continues it from its training state (its ``eval-*`` folders are then
    moved into ``out_dir/superseded/step<N>``).

    Resuming: with ``save_freq`` the training state (weights, optimizers, replay buffer, step; no pickles) is
    saved into ``out_dir/resume`` every ``save_freq`` steps; with ``resume`` a later call with the same
    settings continues from there. The episode in progress at the save is not restored (a new one starts) and
    the EvalCallback's log restarts. The resume state is removed once the agent is saved, unless
    ``keep_resume`` (then it is saved at the last step too, and a later call with a larger ``timesteps``
    continues training)."""
    _check_json("hp", hp or {})
    check_train_settings({"env": env, "algo": algo, "train_modalities": modalities, "mhvae": mhvae, "state": state,
                          "seed": seed, "timesteps": timesteps, "episode_steps": episode_steps,
                          "latent_stack": latent_stack, "train_failure_p": train_failure_p,
                          "train_sample": train_sample, "hp": hp or {}, "eval_freq": eval_freq,
                          "n_eval_episodes": n_eval_episodes, "save_freq": save_freq, "keep_resume": keep_resume,
                          "resume": resume, "tensorboard": tensorboard, "progress": progress, "device": device,
                          "verbose": verbose, "run_dir": out_dir})
    settings = env_settings(env)
    algo = check_algo(settings, algo)
    timesteps = int(settings["timesteps"] if timesteps is None else timesteps)
    mods = None if state else parse_modalities(modalities, settings.sensors)
    params = _check_json("hp", {**HYPERPARAMS[algo], **(hp or {})})
    n_stack = 1 if state else int(settings["latent_stack"] if latent_stack is None else latent_stack)
    dev = resolve_device(device)
    out_dir = Path(out_dir)
    meta = {"env": settings.name, "env_id": settings["state_env_id"] if state else settings.env_id, "algo": algo,
            "state": bool(state), "train_modalities": list(mods) if mods else None, "seed": int(seed),
            "timesteps": timesteps, "episode_steps": int(episode_steps or settings.episode_steps),
            "latent_stack": n_stack, "train_failure_p": train_failure_p, "train_sample": bool(train_sample),
            "hyperparameters": params, "mhvae": None if state else _model_reference(mhvae)}
    with AgentFolderLock(out_dir):
        remove_leftover_temp_files(out_dir)  # the lock is held: any temporary file is a killed save's
        plan = plan_training(out_dir, meta, int(timesteps), resume, log)
        if plan.done:
            return plan.finished
        return _train(settings, meta, plan, mhvae, out_dir, dev, eval_freq=eval_freq,
                      n_eval_episodes=n_eval_episodes, progress=progress, tensorboard=tensorboard, log=log,
                      log_scalar=log_scalar, save_freq=save_freq, keep_resume=keep_resume, verbose=verbose)


def _train(env: AgentEnv, meta: dict, plan: TrainingPlan, mhvae: Any, out_dir: Path, dev: torch.device,
           eval_freq: int, n_eval_episodes: int, progress: bool, tensorboard: bool, log: Callable[[str], None],
           log_scalar: LogScalar | None, save_freq: int | None, keep_resume: bool, verbose: int = 1) -> dict:
    """The training itself (the folder is locked and :func:`plan_training` has decided where to start)."""
    state, seed, timesteps = meta["state"], meta["seed"], meta["timesteps"]
    mods, n_stack, algo, steps = meta["train_modalities"], meta["latent_stack"], meta["algo"], meta["episode_steps"]
    if not state:
        mhvae = resolve_model(mhvae, dev)[0]  # load once, share between train and eval envs
    train_env = make_vec_env(env, mods, mhvae, 1, state, seed=seed, n_stack=n_stack,
                             failure_p=meta["train_failure_p"], failure_seed=seed, device=dev,
                             sample=meta["train_sample"], episode_steps=steps)
    eval_env = make_vec_env(env, mods, mhvae, 1, state, seed=seed + 10_000, n_stack=n_stack, device=dev,
                            episode_steps=steps)
    evaluator, callbacks = _callbacks(out_dir, eval_env, eval_freq, n_eval_episodes, meta, log_scalar, save_freq,
                                      verbose)
    # verbose=1: SB3's logger writes stdout beside TensorBoard (rollout/ep_rew_mean, eval/mean_reward, train/...)
    agent = algo_class(algo)("MlpPolicy", train_env, seed=seed, verbose=int(verbose), device=dev,
                             tensorboard_log=str(out_dir / "tb") if tensorboard else None,
                             **json.loads(json.dumps(meta["hyperparameters"])))  # a copy: SB3 adds to policy_kwargs
    saved = plan.resume_state
    start = 0
    if saved is not None:
        restore_resume_state(agent, out_dir, saved)
        start = int(saved["num_timesteps"])
        evaluator.best_mean_reward = float(saved["best_mean_reward"])
        log(f"resuming {out_dir} from step {start}")
    elif (out_dir / "best").exists():
        supersede(out_dir, f"abandoned-{time.strftime('%Y%m%d-%H%M%S')}", ("best",), log)  # not this training's
    t0 = time.perf_counter()
    if timesteps > start:
        agent.learn(total_timesteps=timesteps - start, callback=callbacks, progress_bar=bool(progress),
                    reset_num_timesteps=start == 0)
    wall = time.perf_counter() - t0
    trained_now = timesteps - start
    outside = out_of_range_counts(train_env)
    meta.update({"train_wall_s": round(wall, 1), "train_steps_per_s": round(trained_now / max(wall, 1e-9), 1),
                 "resumed_from_step": start, "best_mean_eval_reward": float(evaluator.best_mean_reward),
                 "out_of_range_observations": outside})
    if outside:
        log(f"observations outside the MHVAE's training range during training: {outside} of {trained_now} steps "
            f"(the agent explores beyond the pretraining data; the pipeline's on-policy fine-tuning covers them)")
    if keep_resume:  # the state at the last step: a larger timesteps continues exactly from here
        save_resume_state(agent, out_dir, meta, evaluator.best_mean_reward)
    description = save_agent(agent, out_dir, meta)
    if plan.finished is not None:
        supersede(out_dir, f"step{int(plan.finished['timesteps'])}", ("eval-*",), log)
    if not keep_resume and (out_dir / RESUME_DIR).is_dir():
        shutil.rmtree(out_dir / RESUME_DIR)
    train_env.close()
    eval_env.close()
    if log_scalar is not None:
        log_scalar("train/wall_s", wall, timesteps)
        log_scalar("train/steps_per_s", meta["train_steps_per_s"], timesteps)
    log(f"trained {algo} on {env.name} ({'state' if state else '+'.join(mods)}) seed {seed}: {trained_now} steps "
        f"{f'(from step {start}) ' if start else ''}in {wall:.0f} s ({meta['train_steps_per_s']:.0f} steps/s) "
        f"-> {out_dir / POLICY_FILE}")
    return description


# ------------------------------------------------------------------------------------------- evaluation
def out_of_range_counts(venv) -> dict[str, int]:
    """Observations per sensor the MHVAE wrapper under ``venv`` found outside the training range ({} for state
    envs); the wrapper may sit under a VecFrameStack or VecSensorFailure."""
    while venv is not None and not hasattr(venv, "out_of_range_counts"):
        venv = getattr(venv, "venv", None)
    return {} if venv is None else {k: int(v) for k, v in venv.out_of_range_counts.items() if v}


def evaluate_returns(agent, venv, n_episodes: int) -> np.ndarray:
    """Episode returns of the deterministic policy over ``n_episodes`` (SB3's evaluate_policy)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    returns, _ = evaluate_policy(agent, venv, n_eval_episodes=n_episodes, deterministic=True,
                                 return_episode_rewards=True, warn=False)
    return np.asarray(returns, dtype=np.float64)


def random_returns(env: str | AgentEnv, n_episodes: int, seed: int, episode_steps: int | None = None) -> np.ndarray:
    """Episode returns of a uniform random policy on the raw environment (episodes ``episode_steps`` long;
    default: the env's)."""
    e = _raw_env(env_settings(env), state=False, episode_steps=episode_steps)
    e.action_space.seed(seed)
    out = []
    for k in range(n_episodes):
        e.reset(seed=seed + k)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = e.step(e.action_space.sample())
            total += r
            done = term or trunc
        out.append(total)
    return np.asarray(out)


def set_threads(n: int | None) -> None:
    if n:
        torch.set_num_threads(int(n))
