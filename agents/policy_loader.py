"""The safe saved-agent loader for data collection (``mhvae_perception.data.collect.collect(..., policy=AGENT_DIR)``).

:func:`register` registers :func:`collection_policy` with :func:`mhvae_perception.data.collect.register_policy_loader`
(explicitly: importing the package changes nothing in the collector); :func:`unregister` removes it. The agent folder is read with
:func:`agents.common.load_agent` (JSON + tensor-only weights, nothing executed; the MHVAE checkpoint's SHA-256 is
checked). The returned policy acts on the vector env's raw Dict observations: they are encoded by the agent's
MHVAE from its training modalities (:class:`~mhvae_perception.wrappers.ObservationAdapter` checks and
conversions) and the last ``latent_stack`` latents are stacked as SB3's ``VecFrameStack`` does. The policy sees
observations only, not episode boundaries: at the first step of a new episode the stack still holds the
previous episode's latents (SB3 would put zeros there), one step per episode.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

PolicyFn = Callable[[dict], np.ndarray]


def collection_policy(path: Path, vec_env, random_action_p: float = 0.0, seed: int = 0) -> PolicyFn:
    """``policy(obs batch) -> action batch`` of the agent saved in folder ``path`` (deterministic actions; each
    replaced, independently with probability ``random_action_p``, by a uniform random one, seeded by ``seed``).

    Raises ValueError for anything that is not an agent folder of this project (so that collect tries the next
    registered loader), and for agents that cannot act on sensors (trained on the true state)."""
    if not 0.0 <= float(random_action_p) <= 1.0:
        raise TypeError(f"random_action_p must be a probability in [0, 1], got {random_action_p!r}")
    path = Path(path)
    if not path.is_dir() or not (path / "agent.json").is_file():
        raise ValueError(f"{path} is not an agent folder of agents/ (no agent.json)")
    import torch

    from agents.common import load_agent
    from mhvae_perception.hub import resolve_model
    from mhvae_perception.wrappers import ObservationAdapter, encode_observations

    agent, meta = load_agent(path, device="cpu")
    if meta["state"]:
        raise ValueError(f"{path} acts on the true low-dimensional state, not on the sensors; collect with an agent "
                         f"trained on MHVAE latents")
    ref = meta.get("mhvae") or {}
    if not ref.get("path"):
        raise ValueError(f"{path} records no MHVAE checkpoint path (trained on an in-memory model)")
    model, _ = resolve_model(ref["path"])
    modalities = tuple(meta["train_modalities"])
    space = getattr(vec_env, "single_observation_space", None) or vec_env.observation_space
    adapter = ObservationAdapter(space, model)
    n_stack = int(meta["latent_stack"])
    n_envs = int(vec_env.num_envs)
    dim = int(model.top_latent_dim)
    stack = np.zeros((n_envs, n_stack * dim), dtype=np.float32)
    if tuple(agent.observation_space.shape) != (n_stack * dim,):
        raise ValueError(f"{path}: the agent observes {agent.observation_space.shape}, but its MHVAE gives "
                         f"{n_stack} x {dim} latents; the folder does not match its checkpoint")

    rng = np.random.default_rng(seed)
    space_of_action = getattr(vec_env, "single_action_space", None) or agent.action_space
    space_of_action.seed(int(seed))

    @torch.no_grad()
    def policy(obs: dict) -> np.ndarray:
        batch, _ = adapter.convert({n: np.asarray(obs[n]) for n in modalities}, modalities)
        latents = encode_observations(model, batch, modalities)
        stack[:, :-dim] = stack[:, dim:].copy()
        stack[:, -dim:] = latents
        actions, _ = agent.predict(stack, deterministic=True)
        swap = rng.random(n_envs) < random_action_p
        if swap.any():
            actions[swap] = np.stack([space_of_action.sample() for _ in range(int(swap.sum()))])
        return actions

    return policy


def register() -> None:
    """Register :func:`collection_policy` with the collector (idempotent)."""
    from mhvae_perception.data.collect import register_policy_loader

    register_policy_loader(collection_policy)


def unregister() -> None:
    """Remove :func:`collection_policy` from the collector's loaders (if registered)."""
    from mhvae_perception.data.collect import POLICY_LOADERS

    if collection_policy in POLICY_LOADERS:
        POLICY_LOADERS.remove(collection_policy)
