"""Shared pieces of the agent scripts: environment construction, training, saving with the MHVAE reference,
evaluation. Usable without sacred (the tests and ``agents/transfer.py`` call :func:`train_agent` directly)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402,F401  (registers the environments)
from agents.config import ENVS, HYPERPARAMS, parse_modalities  # noqa: E402
from mhvae_perception.wrappers import MHVAEObservation, SensorFailure, file_sha256, resolve_model  # noqa: E402

ALGOS = ("sac", "dqn")


def algo_class(name: str):
    from stable_baselines3 import DQN, SAC

    try:
        return {"sac": SAC, "dqn": DQN}[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {ALGOS}") from None


def env_settings(env: str) -> dict:
    if env not in ENVS:
        raise ValueError(f"unknown env {env!r}; choose one of {tuple(ENVS)}")
    return ENVS[env]


def make_env(env: str, modalities: Sequence[str] | str | None, mhvae: Any = None, state: bool = False,
             failure_p: Any = None, failure_seed: int | None = None, monitor: bool = True) -> gym.Env:
    """One environment: the MHVAE-latent view of ``env`` (``modalities`` of the checkpoint/model ``mhvae``),
    or with ``state=True`` the true low-dimensional state env. ``failure_p`` adds :class:`SensorFailure`."""
    from stable_baselines3.common.monitor import Monitor

    settings = env_settings(env)
    if state:
        if settings["state_env_id"] is None:
            raise ValueError(f"{env} has no low-dimensional state environment")
        e = gym.make(settings["state_env_id"], max_episode_steps=settings["episode_steps"])
    else:
        if mhvae is None:
            raise ValueError("an MHVAE checkpoint is needed: pass mhvae=PATH (or state=True for the state reference)")
        e = MHVAEObservation(gym.make(settings["env_id"]), mhvae, parse_modalities(modalities))
        if failure_p is not None:
            e = SensorFailure(e, p=failure_p, seed=failure_seed)
    return Monitor(e) if monitor else e


def make_vec_env(env: str, modalities, mhvae: Any = None, n_envs: int = 1, state: bool = False, seed: int = 0,
                 n_stack: int = 1, failure_p: Any = None, failure_seed: int | None = None):
    """A DummyVecEnv of Monitor-wrapped raw envs under one batched :class:`VecMHVAEObservation` (or state
    envs), optionally with :class:`VecSensorFailure` (``failure_p``) and a ``VecFrameStack`` of ``n_stack``
    consecutive observations (latents carry the angle; two consecutive ones give the agent the velocity)."""
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

    from mhvae_perception.wrappers import VecMHVAEObservation, VecSensorFailure

    settings = env_settings(env)
    if state:
        venv = DummyVecEnv([lambda: Monitor(gym.make(settings["state_env_id"], max_episode_steps=settings["episode_steps"]))
                            for _ in range(n_envs)])
    else:
        if mhvae is None:
            raise ValueError("an MHVAE checkpoint is needed: pass mhvae=PATH (or state=True for the state reference)")
        venv = DummyVecEnv([lambda: Monitor(gym.make(settings["env_id"])) for _ in range(n_envs)])
        venv = VecMHVAEObservation(venv, mhvae, parse_modalities(modalities))
        if failure_p is not None:
            venv = VecSensorFailure(venv, p=failure_p, seed=failure_seed)
    venv.seed(seed)
    return VecFrameStack(venv, int(n_stack)) if int(n_stack) > 1 else venv


def mhvae_reference(path) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    return {"path": str(path.resolve()), "sha256": file_sha256(path)}


def _has_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _tqdm_callback_class():
    from stable_baselines3.common.callbacks import BaseCallback

    class _TqdmProgress(BaseCallback):
        """A tqdm progress bar over the training steps (SB3's own ``progress_bar=True`` also needs ``rich``)."""

        def _on_training_start(self) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.locals["total_timesteps"] - self.model.num_timesteps, unit="step",
                            dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return _TqdmProgress


def TqdmProgress():  # noqa: N802 - a factory so that SB3 is imported lazily
    return _tqdm_callback_class()()


def train_agent(env: str, modalities, mhvae, seed: int, timesteps: int, out_dir, state: bool = False,
                hp: dict | None = None, eval_freq: int = 2_000, n_eval_episodes: int = 5, progress: bool = True,
                tensorboard: bool = True, latent_stack: int | None = None, train_failure_p: float | None = None,
                log: Callable[[str], None] = print) -> dict:
    """Train one agent (on ``latent_stack`` consecutive latents; default from agents/config.py; with
    ``train_failure_p`` each training sensor fails per step with that probability, as in
    :class:`~mhvae_perception.wrappers.VecSensorFailure`, the eval env has no failures) and save
    ``out_dir/agent.zip`` (+ ``best/best_model.zip`` from the EvalCallback) and ``out_dir/agent.json`` (settings, wall time, and the MHVAE checkpoint path + SHA-256 it was
    trained on)."""
    from stable_baselines3.common.callbacks import EvalCallback

    settings = env_settings(env)
    algo = settings["algo"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mods = None if state else parse_modalities(modalities)
    model_ref = None
    if not state:
        model, ck_path = resolve_model(mhvae)
        model_ref = mhvae_reference(ck_path) if ck_path is not None else {"path": None, "sha256": None}
        mhvae = model  # load once, share between train and eval envs
    params = {**HYPERPARAMS[algo], **(hp or {})}
    n_stack = 1 if state else int(settings.get("latent_stack", 1) if latent_stack is None else latent_stack)
    if train_failure_p is not None and (state or len(mods) < 2):
        raise ValueError("train_failure_p needs at least two training modalities (a sensor must remain)")
    train_env = make_vec_env(env, mods, mhvae, 1, state, seed=seed, n_stack=n_stack, failure_p=train_failure_p,
                             failure_seed=seed)
    eval_env = make_vec_env(env, mods, mhvae, 1, state, seed=seed + 10_000, n_stack=n_stack)
    callback = EvalCallback(eval_env, n_eval_episodes=n_eval_episodes, eval_freq=eval_freq, deterministic=True,
                            best_model_save_path=str(out_dir / "best"), log_path=str(out_dir / "eval"), verbose=0)
    agent = algo_class(algo)("MlpPolicy", train_env, seed=seed, verbose=0,
                             tensorboard_log=str(out_dir / "tb") if tensorboard else None, **params)
    callbacks, sb3_bar = [callback], False
    if progress:
        sb3_bar = _has_rich()
        if not sb3_bar:  # SB3's progress bar needs tqdm *and* rich; fall back to a plain tqdm bar
            callbacks.append(TqdmProgress())
    t0 = time.perf_counter()
    agent.learn(total_timesteps=int(timesteps), callback=callbacks, progress_bar=sb3_bar)
    wall = time.perf_counter() - t0
    agent.save(out_dir / "agent.zip")
    meta = {"env": env, "env_id": settings["state_env_id"] if state else settings["env_id"], "algo": algo,
            "state": bool(state), "train_modalities": list(mods) if mods else None, "seed": int(seed),
            "timesteps": int(timesteps), "latent_stack": n_stack, "train_failure_p": train_failure_p,
            "hyperparameters": params,
            "train_wall_s": round(wall, 1),
            "train_steps_per_s": round(int(timesteps) / wall, 1), "mhvae": model_ref,
            "best_mean_eval_reward": float(callback.best_mean_reward)}
    (out_dir / "agent.json").write_text(json.dumps(meta, indent=2))
    train_env.close()
    eval_env.close()
    log(f"trained {algo} on {env} ({'state' if state else '+'.join(mods)}) seed {seed}: {timesteps} steps in "
        f"{wall:.0f} s ({timesteps / wall:.0f} steps/s) -> {out_dir / 'agent.zip'}")
    return meta


def load_agent(agent_dir, check_mhvae: bool = True):
    """Load ``agent_dir/agent.zip`` and its metadata; with ``check_mhvae`` the referenced checkpoint must exist
    and still have the SHA-256 recorded at training time (else a ValueError says which file changed)."""
    agent_dir = Path(agent_dir)
    meta = json.loads((agent_dir / "agent.json").read_text())
    ref = meta.get("mhvae")
    if check_mhvae and ref and ref.get("path"):
        path = Path(ref["path"])
        if not path.is_file():
            raise FileNotFoundError(f"{agent_dir} was trained on MHVAE checkpoint {path}, which no longer exists")
        digest = file_sha256(path)
        if digest != ref["sha256"]:
            raise ValueError(f"{agent_dir} was trained on {path} with SHA-256 {ref['sha256'][:12]}..., but the file "
                             f"now has {digest[:12]}...; the latents differ: use the original checkpoint or retrain")
    agent = algo_class(meta["algo"]).load(agent_dir / "agent.zip", device="cpu")
    return agent, meta


def evaluate_returns(agent, venv, n_episodes: int) -> np.ndarray:
    """Episode returns of the deterministic policy over ``n_episodes`` (SB3's evaluate_policy)."""
    from stable_baselines3.common.evaluation import evaluate_policy

    returns, _ = evaluate_policy(agent, venv, n_eval_episodes=n_episodes, deterministic=True,
                                 return_episode_rewards=True, warn=False)
    return np.asarray(returns, dtype=np.float64)


def random_returns(env: str, n_episodes: int, seed: int) -> np.ndarray:
    """Episode returns of a uniform random policy on the raw environment."""
    settings = env_settings(env)
    e = gym.make(settings["env_id"])
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
