"""Train an SB3 agent on MHVAE latents of a multimodal environment (sacred experiment).

    python agents/train.py with env=pendulum_sound train_modalities=image mhvae=runs/.../checkpoints/best.pt
    python agents/train.py with env=pendulum_sound state=True           # reference on the true state
    python agents/train.py with env=hyperhot train_modalities=both mhvae=PATH timesteps=50000
    python agents/train.py print_config

Outputs in ``run_dir``: agent.zip, agent.json (settings + MHVAE checkpoint path and SHA-256), best/ (EvalCallback),
eval/evaluations.npz, tb/ (TensorBoard). Hyper-parameters: agents/config.py, overridable as ``hp.<name>=...``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import warnings  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402

from agents.common import set_threads, train_agent  # noqa: E402
from agents.config import ENVS, HYPERPARAMS, condition_name  # noqa: E402

ex = Experiment("mhvae_agent", save_git_info=False)


@ex.config
def config():
    env = "pendulum_sound"  # pendulum_sound (SAC) | hyperhot (DQN)
    train_modalities = "image"  # image | sound | both | comma-separated list
    mhvae = None  # MHVAE checkpoint path (required unless state=True)
    state = False  # train on the true low-dimensional state instead (reference)
    seed = 0
    timesteps = ENVS[env]["timesteps"]
    latent_stack = None  # consecutive latents the agent sees (None: agents/config.py)
    train_failure_p = None  # per-step sensor failure probability during training (>= 2 training modalities)
    hp = HYPERPARAMS[ENVS[env]["algo"]]  # algorithm hyper-parameters (defaults: agents/config.py)
    eval_freq = 2000  # EvalCallback period (steps)
    n_eval_episodes = 5
    num_threads = 1  # torch threads (leave cores to others)
    progress = True
    tensorboard = True
    run_dir = f"runs/agents/{env}-{'state' if state else condition_name(train_modalities)}-seed{seed}"


@ex.option_hook
def add_default_observer(options):
    if not options.get("--file_storage") and not options.get("--unobserved"):
        ex.observers.append(FileStorageObserver(str(Path("runs") / "sacred-agents")))


@ex.automain
def main(_config, _run):
    cfg = dict(_config)
    set_threads(cfg["num_threads"])
    return train_agent(cfg["env"], cfg["train_modalities"], cfg["mhvae"], cfg["seed"], cfg["timesteps"],
                       cfg["run_dir"], state=cfg["state"], hp=json.loads(json.dumps(cfg["hp"])), eval_freq=cfg["eval_freq"],
                       n_eval_episodes=cfg["n_eval_episodes"], progress=cfg["progress"],
                       tensorboard=cfg["tensorboard"], latent_stack=cfg["latent_stack"],
                       train_failure_p=cfg["train_failure_p"])
