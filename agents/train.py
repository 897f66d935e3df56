"""Train an SB3 agent on MHVAE latents of a multimodal environment (sacred experiment).

    python agents/train.py with env=pendulum_sound train_modalities=image mhvae=runs/.../checkpoints/best.pt
    python agents/train.py with env=pendulum_sound state=True           # reference on the true state
    python agents/train.py with env=hyperhot train_modalities=both mhvae=PATH timesteps=50000
    python agents/train.py with env=my_package:MyEnv-v0 train_modalities=camera mhvae=PATH   # any Dict env
    python agents/train.py with env=MyEnv-v0 algo=ppo hp.n_steps=1024 ...       # another algorithm
    python -m agents.train print_config

``env``: an alias of agents/config.py (pendulum_sound, hyperhot, hyperhot_hits), a registered Gymnasium id, or
``module:Id`` (the module is imported first and registers the id). The environment must observe a Dict of at
least two sensors. The algorithm follows its action space (Box -> SAC, Discrete -> DQN, MultiDiscrete /
MultiBinary -> PPO) unless ``algo`` is given; episodes end at the env's registered time limit
(``episode_steps`` overrides it; 1000 steps when it has none).

Outputs in ``run_dir``: agent.json (settings, spaces, MHVAE checkpoint path and SHA-256) + policy.pt (tensor-only
weights; see agents/common.py), best/ (the best evaluation, same format), eval/evaluations.npz, tb/ (TensorBoard).
Metrics (evaluation means, training episode returns, wall time) go to sacred's metrics.json; with verbose=1
SB3's logger prints its tables (rollout/ep_rew_mean, eval/mean_reward, train/...) to stdout. The training state
is saved every ``save_freq`` steps into run_dir/resume (no pickles): re-running the same command resumes.
Hyper-parameters: agents/config.py, overridable as ``hp.<name>=...``.

The run folder: one training at a time (an OS lock on run_dir/.lock; a second one is refused). A folder holding
an agent trained with other settings is refused (which settings differ is said; use another run_dir). Re-running
a finished agent's command does nothing; raising ``timesteps`` continues it from its kept training state
(``keep_resume``), and its earlier evaluations (eval-*) move to run_dir/superseded/step<N>.
"""
from __future__ import annotations

from mhvae_perception.experiment import check_settings_first, prepare_experiment  # first: quiets sacred's warning

import json

from sacred import Experiment

from agents.common import set_threads, train_agent
from agents.config import condition_name
from agents.environments import default_hyperparameters
from agents.settings import check_train_settings

ex = prepare_experiment(Experiment("mhvae_agent", save_git_info=False))


@ex.config
def config():
    env = "pendulum_sound"  # an alias (pendulum_sound, hyperhot, hyperhot_hits), a Gymnasium id or module:Id
    algo = None  # sac | dqn | ppo; None: from the action space (Box: sac, Discrete: dqn, MultiDiscrete: ppo)
    train_modalities = "image"  # a sensor of the env | both / all (every sensor) | comma-separated list
    mhvae = None  # MHVAE checkpoint path (required unless state=True)
    state = False  # train on the true low-dimensional state instead (reference)
    seed = 0
    timesteps = None  # None: the env's default (agents/config.py)
    episode_steps = None  # None: the env's registered time limit (1000 when it has none)
    latent_stack = None  # consecutive latents the agent sees (None: agents/config.py)
    train_failure_p = None  # per-step sensor failure probability during training (>= 2 training modalities)
    train_sample = False  # train on samples of q(z_c | sensors) instead of their means (evaluation uses means)
    hp = default_hyperparameters(env, algo)  # agents/config.py's HYPERPARAMS[algo]; hp.learning_rate=3e-4 etc.
    eval_freq = 2000  # EvalCallback period (steps)
    n_eval_episodes = 5
    save_freq = 5000  # save the training state every N steps; a re-run with the same settings resumes
    keep_resume = True  # keep the training state after training: a re-run with a larger timesteps continues it
    num_threads = 1  # torch threads (leave cores to others)
    device = "auto"  # auto (CUDA when available) | cpu | cuda[:N]
    progress = True  # SB3's progress bar
    verbose = 1  # SB3's logger on stdout (rollout/ep_rew_mean, eval/mean_reward, ...); 0: quiet
    tensorboard = True
    run_dir = (f"runs/agents/{str(env).replace('/', '_').replace(':', '_')}-"
               f"{'state' if state else condition_name(train_modalities)}-seed{seed}")


check_settings_first(ex, lambda config, command: check_train_settings(config))


@ex.main
def main(_config, _run, hp):  # hp captured: an hp.<name> of another algorithm reaches the check, which names it
    cfg = dict(_config)
    set_threads(cfg["num_threads"])
    return train_agent(cfg["env"], cfg["train_modalities"], cfg["mhvae"], cfg["seed"], cfg["timesteps"],
                       cfg["run_dir"], state=cfg["state"], hp=json.loads(json.dumps(cfg["hp"])),
                       eval_freq=cfg["eval_freq"], n_eval_episodes=cfg["n_eval_episodes"], progress=cfg["progress"],
                       tensorboard=cfg["tensorboard"], latent_stack=cfg["latent_stack"],
                       train_failure_p=cfg["train_failure_p"], train_sample=cfg["train_sample"], device=cfg["device"],
                       log_scalar=_run.log_scalar, save_freq=cfg["save_freq"], keep_resume=cfg["keep_resume"],
                       algo=cfg["algo"], episode_steps=cfg["episode_steps"], verbose=cfg["verbose"])


if __name__ == "__main__":
    ex.run_commandline()
