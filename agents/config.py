"""The one place for the agents' settings: the generic per-environment defaults, the tuned overrides of this
project's two environments, the algorithm per action space and the algorithms' hyper-parameters.

Any registered Gymnasium environment whose observation is a ``Dict`` of at least two sensors works: its settings
are :data:`GENERIC` updated with :data:`TUNED` ``[env_id]`` when the id has an entry there (as pretraining's
environment presets update the inferred model description), then with an :data:`ALIASES` entry's own keys when
the name is an alias. :mod:`agents.environments` resolves a name into these settings.

SAC on PendulumSound follows rl-baselines3-zoo's Pendulum-v1 settings (lr 1e-3, otherwise SB3 defaults) with
smaller networks and buffer so that a CPU core trains an agent in minutes; DQN on Hyperhot uses Atari-like
settings scaled down; PPO has SB3's defaults (networks [64, 64]) with rollouts of 512 steps instead of 2048, so that
one CPU environment updates the policy every 512 steps. Override any of them from the command line, e.g.
``with hp.learning_rate=3e-4``.
"""
from __future__ import annotations

#: episode length of an environment whose Gymnasium spec has no ``max_episode_steps`` (its episodes are cut
#: there by a TimeLimit; override with ``episode_steps=...``)
DEFAULT_EPISODE_STEPS = 1_000

#: the settings every environment starts from
GENERIC = {
    "env_kwargs": {},  # keyword arguments of gym.make
    "algo": None,  # None: from the action space (ALGO_FOR_ACTION_SPACE)
    "timesteps": 10_000,  # training steps per agent
    "episode_steps": None,  # None: the spec's max_episode_steps, else DEFAULT_EPISODE_STEPS
    "latent_stack": 1,  # consecutive latents the agent observes (SB3 VecFrameStack)
    "state_env_id": None,  # an env observing the true low-dimensional state (the state reference), if any
    "win_return": None,  # an episode with a return >= win_return is won (transfer tables give win rates)
    "dataset": None,  # the latent diagnostics' dataset (agents/transfer.py); None: the env id
    "state_probe": False,  # agents/transfer.py's PendulumSound state probe
}

#: tuned overrides, keyed by Gymnasium id (only the keys that differ from GENERIC)
TUNED = {
    "PendulumSound-v0": {
        # reference trained on the true low-dimensional state: Pendulum-v1 has identical physics and reward;
        # its episodes are made as long as PendulumSound's (300 steps, the registered time limit)
        "state_env_id": "Pendulum-v1",
        # the agent sees the last 2 latents: the paper-loss z_c encodes the angle well but hardly the angular
        # velocity (probe R^2 ~ 0.05 on an 8-epoch MHVAE), and swing-up needs the velocity. The shipped models
        # hold the velocity in one latent: with them pass latent_stack=1 (docs/TRANSFER.md: it transfers better)
        "latent_stack": 2,
        "state_probe": True,
    },
    "Hyperhot-v0": {
        "timesteps": 50_000,
        "latent_stack": 2,
        # an episode is won (the last enemy killed, +10) iff its return reaches 10: without the win a return is
        # at most 3 * hit_reward - 1 (three kills, then hit or time limit), below 10 for hit_reward < 11/3
        "win_return": 10.0,
        # the game observing its true state (info["state"] rescaled), for the transfer tables' reference agent
        "state_env_id": "HyperhotState-v0",
    },
}
TUNED["HyperhotSpectrum-v0"] = dict(TUNED["Hyperhot-v0"])  # the same game, its sound as spectra

#: short names: an alias is its env id plus its own keys (the names of the agents trained before any env worked)
ALIASES = {
    "pendulum_sound": {"env_id": "PendulumSound-v0"},
    "hyperhot": {"env_id": "Hyperhot-v0"},
    # a denser-reward variant of Hyperhot (off in the original game): +1 per enemy killed besides +10 for the win;
    # same observations, so it uses Hyperhot's dataset and MHVAE. Its returns are not comparable with Hyperhot's.
    "hyperhot_hits": {"env_id": "Hyperhot-v0", "env_kwargs": {"hit_reward": 1.0}, "dataset": "hyperhot"},
    "hyperhot_spectrum_hits": {"env_id": "HyperhotSpectrum-v0", "env_kwargs": {"hit_reward": 1.0},
                               "dataset": "hyperhot_spectrum"},
}

#: the algorithm an action space gets when ``algo`` is not given (SB3 action space class name -> algorithm)
ALGO_FOR_ACTION_SPACE = {"Box": "sac", "Discrete": "dqn", "MultiDiscrete": "ppo", "MultiBinary": "ppo"}
#: the action spaces each algorithm acts in (SB3's support)
ACTION_SPACES_OF_ALGO = {"sac": ("Box",), "dqn": ("Discrete",),
                         "ppo": ("Box", "Discrete", "MultiDiscrete", "MultiBinary")}

HYPERPARAMS = {
    "sac": {
        "learning_rate": 1e-3,
        "buffer_size": 100_000,
        "learning_starts": 1_000,
        "batch_size": 256,
        "tau": 0.005,
        "gamma": 0.99,
        "train_freq": 1,
        "gradient_steps": 1,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
    "dqn": {
        "learning_rate": 1e-4,
        "buffer_size": 50_000,
        "learning_starts": 1_000,
        "batch_size": 64,
        "gamma": 0.99,
        "train_freq": 4,
        "gradient_steps": 1,
        "target_update_interval": 1_000,
        "exploration_fraction": 0.3,
        "exploration_final_eps": 0.05,
        "policy_kwargs": {"net_arch": [256, 256]},
    },
    # SB3's defaults, with rollouts of 512 steps instead of 2048 (module docstring)
    "ppo": {
        "learning_rate": 3e-4,
        "n_steps": 512,
        "batch_size": 64,
        "n_epochs": 10,
        "gamma": 0.99,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "vf_coef": 0.5,
        "max_grad_norm": 0.5,
        "policy_kwargs": {"net_arch": [64, 64]},
    },
}

#: the condition name of "every sensor of the environment" (``both`` for two sensors, as the agent folders and
#: tables of PendulumSound and Hyperhot are named; ``all`` is accepted too)
ALL_SENSORS = ("both", "all")


def parse_modalities(value, sensors=None) -> tuple[str, ...]:
    """``"image"``, ``"image,sound"``, a list, or ``"both"`` / ``"all"`` (every one of ``sensors``, the
    environment's sensors) -> a tuple of modality names."""
    if isinstance(value, str):
        if value in ALL_SENSORS:
            if sensors is None:
                raise ValueError(f"{value!r} means every sensor of the environment: pass its sensors")
            return tuple(sensors)
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(value)


def all_sensors_name(sensors) -> str:
    """The condition name of every sensor: ``both`` for two, ``all`` for more."""
    return "both" if len(tuple(sensors)) == 2 else "all"


def conditions(sensors) -> list[str]:
    """The default conditions of an environment: each sensor alone, then all together."""
    return [*sensors, all_sensors_name(sensors)]


def condition_name(modalities, sensors=None) -> str:
    """A modality subset's name: the sensor's name for one, ``both`` / ``all`` for every one of ``sensors``,
    else the names joined by ``+``."""
    if isinstance(modalities, str) and modalities in ALL_SENSORS and sensors is None:
        return modalities
    mods = parse_modalities(modalities, sensors)
    if sensors is not None and len(mods) > 1 and sorted(mods) == sorted(sensors):
        return all_sensors_name(sensors)
    return "+".join(mods)

#: what the agents' wrapper does with an observation outside the MHVAE's training range: an agent that learns
#: to act leaves the random-policy states the model was pretrained on, so the default warns once and counts
#: them (reported after training and evaluation) instead of stopping; "error" stops, "ignore" says nothing
ON_OUT_OF_RANGE = "warn"
