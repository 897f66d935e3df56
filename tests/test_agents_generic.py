"""Agents on any registered Gymnasium environment: a tiny two-sensor env of this module goes through
agents/train.py -> agents/evaluate.py -> agents/transfer.py; the algorithm follows the action space (Box -> SAC,
Discrete -> DQN, MultiDiscrete -> PPO, ``algo=ppo`` chooses PPO); an env that is not a Dict of >= 2 sensors is
refused before any folder exists; ``module:EnvId`` imports the module the user names, never one a file names;
PendulumSound and Hyperhot are the same generic path with tuned overrides."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.common import load_agent, make_vec_env, read_agent_meta, train_agent
from agents.config import DEFAULT_EPISODE_STEPS
from agents.environments import make_env, resolve_env
from agents.settings import SettingsError
from mhvae_perception import save_checkpoint
from mhvae_perception.data import describe
from mhvae_perception.models.registry import build_model

ACTIONS = {"box": spaces.Box(-1.0, 1.0, (1,), np.float32), "discrete": spaces.Discrete(3),
           "multidiscrete": spaces.MultiDiscrete([3, 2]), "tuple": spaces.Tuple((spaces.Discrete(2),) * 2)}


class TinySensors(gym.Env):
    """A point on [-1, 1] pushed by the actions (reward -|x|), seen by two noisy Box sensors ``pos`` (2 values)
    and ``vel`` (3 values); ``sensors`` keeps the first ones, ``flat`` observes a plain Box instead of a Dict,
    ``names`` renames the two sensors in the observation."""

    def __init__(self, actions: str = "box", sensors: int = 2, flat: bool = False, names=("pos", "vel"),
                 render_mode=None) -> None:
        self.action_space = ACTIONS[actions]
        box = dict(zip(names, (spaces.Box(-1.0, 1.0, (2,), np.float32), spaces.Box(-1.0, 1.0, (3,), np.float32))))
        self.all_names = tuple(box)
        self.names = self.all_names[:sensors]
        self.flat = flat
        self.observation_space = box[self.all_names[0]] if flat else spaces.Dict({k: box[k] for k in self.names})
        self.x = 0.0

    def _obs(self):
        noise = self.np_random.uniform(-0.1, 0.1, 5).astype(np.float32)
        first, second = (np.clip([self.x, -self.x], -1, 1) + noise[:2] * 0.5,
                         np.clip([self.x, 0.5 * self.x, -self.x], -1, 1) + noise[2:] * 0.5)
        values = {k: np.clip(v, -1, 1).astype(np.float32) for k, v in zip(self.all_names, (first, second))}
        return values[self.all_names[0]] if self.flat else {k: values[k] for k in self.names}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.uniform(-0.8, 0.8))
        return self._obs(), {}

    def step(self, action):
        push = float(np.asarray(action).ravel()[0])
        push = push if isinstance(self.action_space, spaces.Box) else push - 1.0
        self.x = float(np.clip(self.x + 0.2 * push, -1.0, 1.0))
        return self._obs(), -abs(self.x), False, False, {}


TINY = {"TinySensorsBox-v0": {}, "TinySensorsDiscrete-v0": {"actions": "discrete"},
        "TinySensorsMultiDiscrete-v0": {"actions": "multidiscrete"}, "TinyFlat-v0": {"flat": True},
        "TinyOneSensor-v0": {"sensors": 1}, "TinyTupleActions-v0": {"actions": "tuple"},
        "TinyStateAndRandom-v0": {"names": ("state", "random")}}
for _id, _kwargs in TINY.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=TinySensors, kwargs=_kwargs, max_episode_steps=20)
if "TinySensorsNoLimit-v0" not in gym.registry:
    gym.register("TinySensorsNoLimit-v0", entry_point=TinySensors)

QUIET = dict(eval_freq=10_000, n_eval_episodes=1, progress=False, tensorboard=False, device="cpu", verbose=0,
             log=lambda s: None)
SAC_HP = {"learning_starts": 40, "batch_size": 16, "buffer_size": 1000, "policy_kwargs": {"net_arch": [16]}}
DQN_HP = {"learning_starts": 40, "batch_size": 16, "buffer_size": 1000, "target_update_interval": 50,
          "policy_kwargs": {"net_arch": [16]}}
PPO_HP = {"n_steps": 32, "batch_size": 16, "n_epochs": 1, "policy_kwargs": {"net_arch": [16]}}


def tiny_checkpoint(path: Path, space: spaces.Dict) -> Path:
    """A tiny randomly initialised MHVAE of ``space``'s sensors (normalised on samples of their spaces)."""
    torch.manual_seed(0)
    space.seed(0)
    arrays = {k: np.stack([s.sample() for _ in range(256)]) for k, s in space.spaces.items()}
    overrides = {name: {"network_kwargs": {"hidden": [16]}} for name in space.spaces}
    config = describe.infer_model_config(space, arrays, "mhvae", verbose=False,
                                         overrides={**overrides, "core": {"latent_dim": 2, "hidden": [16]}})
    return save_checkpoint(path, build_model(config).eval())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt",
                           gym.make("TinySensorsBox-v0").observation_space)


# ------------------------------------------------------------------ one env id through the three scripts
def test_any_registered_env_through_train_evaluate_and_transfer(checkpoint, tmp_path):
    from agents import evaluate, train, transfer

    run_dir = tmp_path / "agent"
    train.ex.run(config_updates={"env": "TinySensorsBox-v0", "train_modalities": "pos", "mhvae": str(checkpoint),
                                 "timesteps": 100, "hp": SAC_HP, "eval_freq": 50, "n_eval_episodes": 1,
                                 "progress": False, "tensorboard": False, "device": "cpu", "verbose": 0,
                                 "run_dir": str(run_dir)})
    meta = read_agent_meta(run_dir)
    assert (meta["env"], meta["env_id"], meta["algo"]) == ("TinySensorsBox-v0", "TinySensorsBox-v0", "sac")
    assert meta["episode_steps"] == 20 and meta["latent_stack"] == 1 and meta["train_modalities"] == ["pos"]
    assert meta["hyperparameters"]["learning_rate"] == 1e-3  # agents/config.py's SAC defaults under hp
    # evaluated from the other sensor: 20-step episodes (the registered time limit), condition named by the sensor
    evaluate.ex.run(config_updates={"agent": str(run_dir), "modalities": "vel", "episodes": 3, "n_envs": 2,
                                    "device": "cpu", "out_dir": str(tmp_path / "ev")})
    result = json.loads((tmp_path / "ev" / "returns.json").read_text())
    assert result["condition"] == "vel" and result["lengths"] == [20] * 3 and result["episode_steps"] == 20
    assert len(result["random_returns"]) == 3 and all(-20 <= r <= 0 for r in result["returns"])
    # an agent folder written before episode_steps was recorded still evaluates (with the env's time limit)
    del meta["episode_steps"]
    (run_dir / "agent.json").write_text(json.dumps(meta))
    again = evaluate.evaluate({"agent": str(run_dir), "modalities": "both", "episodes": 1, "n_envs": 1, "seed": 0,
                               "random_reference": False, "device": "cpu", "out_dir": str(tmp_path / "ev2")},
                              log=lambda s: None)
    assert again["condition"] == "both" and again["lengths"] == [20]
    logs: list[str] = []  # and its folder is still the same agent: the same command has nothing to do
    train_agent("TinySensorsBox-v0", "pos", str(checkpoint), 0, 100, run_dir, hp=SAC_HP,
                **{**QUIET, "log": logs.append})
    assert any("nothing to do" in m for m in logs)
    # the transfer table over the env's own conditions: each sensor, then both
    out = tmp_path / "transfer"
    transfer.ex.run(config_updates={"env": "TinySensorsBox-v0", "mhvae": str(checkpoint), "seeds": [0],
                                    "timesteps": 50, "test_episodes": 2, "n_eval_envs": 2, "failure_probs": [0.5],
                                    "robustness_episodes": 1, "latent_diagnostics": False, "hp": SAC_HP,
                                    "eval_freq": 1000, "n_eval_episodes": 1, "device": "cpu", "verbose": 0,
                                    "out_dir": str(out)})
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["train_conditions"] == ["pos", "vel", "both"] and "true_state" not in results["results"]
    assert set(results["normalised_transfer"]) == {f"{a}->{b}" for a in ("pos", "vel", "both")
                                                   for b in ("pos", "vel", "both") if a != b}
    assert [r["n_episodes"] for r in results["robustness"]["both"]] == [1]
    assert read_agent_meta(out / "agents" / "both-seed0")["train_modalities"] == ["pos", "vel"]


def test_transfer_with_sensors_named_like_its_references(tmp_path):
    """A user's sensors called ``state`` and ``random`` (PendulumPixels-v1 has a ``state`` sensor): the cells and
    the references never share a key, a metric or an agent folder; the run writes its table and results."""
    from agents import transfer

    ck = tiny_checkpoint(tmp_path / "named.pt", gym.make("TinyStateAndRandom-v0").observation_space)
    out = tmp_path / "transfer"
    run = transfer.ex.run(config_updates={"env": "TinyStateAndRandom-v0", "mhvae": str(ck), "seeds": [0],
                                          "timesteps": 50, "test_episodes": 2, "n_eval_envs": 1, "failure_probs": [],
                                          "latent_diagnostics": False, "hp": SAC_HP, "eval_freq": 1000,
                                          "n_eval_episodes": 1, "device": "cpu", "verbose": 0, "out_dir": str(out)})
    results = json.loads((out / "results.json").read_text())["results"]
    assert set(results) == {"cells", "random"}  # no true-state reference for this env
    assert set(results["cells"]) == {"state", "random", "both"}
    assert set(results["cells"]["state"]) == {"state", "random", "both"}
    assert results["random"]["n_episodes"] == 2 and "mean" in results["random"]
    table = (out / "table.md").read_text()
    assert "| state | " in table and "| random policy | " in table and run.status == "COMPLETED"


def test_sb3_logs_rollout_and_eval_lines_to_stdout(checkpoint, tmp_path, capsys):
    train_agent("TinySensorsBox-v0", "vel", str(checkpoint), seed=0, timesteps=100, out_dir=tmp_path / "a",
                hp=SAC_HP, **{**QUIET, "eval_freq": 50, "verbose": 1})
    text = capsys.readouterr().out
    assert "rollout/" in text and "ep_rew_mean" in text  # SB3's table of training episodes
    assert "eval/" in text and "mean_reward" in text  # the EvalCallback's line in SB3's logger
    assert "Eval num_timesteps=50" in text
    train_agent("TinySensorsBox-v0", "vel", str(checkpoint), seed=0, timesteps=100, out_dir=tmp_path / "b",
                hp=SAC_HP, **{**QUIET, "eval_freq": 50})
    assert "ep_rew_mean" not in capsys.readouterr().out  # verbose=0: quiet


# ------------------------------------------------------------------------- the algorithm per action space
@pytest.mark.parametrize("env_id, algo, hp, action_shape", [
    ("TinySensorsDiscrete-v0", "dqn", DQN_HP, (2,)),
    ("TinySensorsMultiDiscrete-v0", "ppo", PPO_HP, (2, 2)),
])
def test_the_algorithm_follows_the_action_space(checkpoint, tmp_path, env_id, algo, hp, action_shape):
    assert resolve_env(env_id).algo == algo
    meta = train_agent(env_id, "pos", str(checkpoint), seed=0, timesteps=64, out_dir=tmp_path / "a", hp=hp, **QUIET)
    assert meta["algo"] == algo and read_agent_meta(tmp_path / "a")["algo"] == algo
    agent, _ = load_agent(tmp_path / "a", device="cpu")
    venv = make_vec_env(env_id, "vel", str(checkpoint), n_envs=2)
    action, _ = agent.predict(venv.reset(), deterministic=True)
    assert action.shape == action_shape and venv.action_space.contains(action[0])


@pytest.mark.parametrize("space", [spaces.MultiDiscrete([3, 2], start=[1, -1]), spaces.MultiBinary(4),
                                   spaces.MultiBinary([2, 3]), spaces.Discrete(3, start=1),
                                   spaces.Box(-1.0, 2.0, (2,), np.float32)])
def test_action_spaces_are_stored_as_json_and_rebuilt_equal(space):
    from agents.common import space_from_json, space_to_json

    assert space_from_json(json.loads(json.dumps(space_to_json(space)))) == space


def test_algo_ppo_is_chosen_on_box_actions_and_a_mismatched_algo_is_refused(checkpoint, tmp_path):
    assert resolve_env("TinySensorsBox-v0").algo == "sac"
    meta = train_agent("TinySensorsBox-v0", "both", str(checkpoint), seed=0, timesteps=64, out_dir=tmp_path / "p",
                       hp=PPO_HP, algo="ppo", keep_resume=True, save_freq=32, **QUIET)
    assert meta["algo"] == "ppo" and meta["hyperparameters"]["gae_lambda"] == 0.95  # PPO's defaults under hp
    assert (tmp_path / "p" / "resume" / "resume.json").is_file()  # on-policy: a training state without transitions
    more = train_agent("TinySensorsBox-v0", "both", str(checkpoint), seed=0, timesteps=96, out_dir=tmp_path / "p",
                       hp=PPO_HP, algo="ppo", keep_resume=True, save_freq=32, **QUIET)
    assert more["resumed_from_step"] == 64
    agent, _ = load_agent(tmp_path / "p", device="cpu")
    assert type(agent).__name__ == "PPO"
    with pytest.raises(SettingsError, match=r"algo='dqn': DQN does not act in .*Box action space.*\['sac', 'ppo'\]"):
        train_agent("TinySensorsBox-v0", "pos", str(checkpoint), 0, 10, tmp_path / "x", algo="dqn", **QUIET)
    with pytest.raises(SettingsError, match=r"hp\.n_steps=1 .*integer >= 2"):
        train_agent("TinySensorsBox-v0", "pos", str(checkpoint), 0, 10, tmp_path / "x", algo="ppo",
                    hp={"n_steps": 1}, **QUIET)
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------- refused before any folder exists
@pytest.mark.parametrize("env_id, message", [
    ("TinyFlat-v0", r"env='TinyFlat-v0': its observation space is Box\(.*not a Dict of sensors.*AddRenderObservation"),
    ("TinyOneSensor-v0", r"env='TinyOneSensor-v0': its Dict observation has 1 sensor \('pos',\); cross-modal agents "
                         r"need at least two.*AddRenderObservation"),
    ("NoSuchEnv-v9", r"env='NoSuchEnv-v9' is not allowed: no Gymnasium environment 'NoSuchEnv-v9' is registered"),
    ("no_such_module_xyz:Tiny-v0", r"env='no_such_module_xyz:Tiny-v0': its module 'no_such_module_xyz' cannot be"),
    ("TinyTupleActions-v0", r"env='TinyTupleActions-v0': its action space Tuple\(.*has no algorithm here; the agents "
                            r"act in \('Box', 'Discrete', 'MultiDiscrete', 'MultiBinary'\) action spaces"),
])
def test_an_env_without_two_sensors_is_refused_before_any_folder(checkpoint, tmp_path, env_id, message):
    from agents import train, transfer

    with pytest.raises(SettingsError, match=message):
        train_agent(env_id, "pos", str(checkpoint), 0, 10, tmp_path / "a", **QUIET)
    with pytest.raises(SettingsError, match=message):
        train.ex.run(config_updates={"env": env_id, "train_modalities": "pos", "mhvae": str(checkpoint),
                                     "run_dir": str(tmp_path / "b"), "progress": False})
    with pytest.raises(SettingsError, match=message):
        transfer.ex.run(config_updates={"env": env_id, "mhvae": str(checkpoint), "out_dir": str(tmp_path / "c")})
    assert not list(tmp_path.iterdir())


def test_sensors_and_conditions_are_the_envs_own(checkpoint, tmp_path):
    from agents import transfer

    with pytest.raises(SettingsError, match=r"train_modalities='image' .*the sensors \('pos', 'vel'\)"):
        train_agent("TinySensorsBox-v0", "image", str(checkpoint), 0, 10, tmp_path / "a", **QUIET)
    with pytest.raises(SettingsError, match=r"train_conditions\[0\]='sound' .*one of \('pos', 'vel', 'both'\)"):
        transfer.ex.run(config_updates={"env": "TinySensorsBox-v0", "mhvae": str(checkpoint),
                                        "train_conditions": ["sound"], "out_dir": str(tmp_path / "c")})
    # an MHVAE of other sensors (another environment's) is refused from its description, before any folder
    other = tiny_checkpoint(tmp_path.parent / f"{tmp_path.name}-other.pt",
                            spaces.Dict({"pos": spaces.Box(-1, 1, (2,)), "sonar": spaces.Box(-1, 1, (4,))}))
    refused = r"mhvae='.*other.pt': the model encodes the sensors \('pos', 'sonar'\) and env='TinySensorsBox-v0' has"
    with pytest.raises(SettingsError, match=refused + r".*\['vel'\] would be observed but are not encoded; "
                                                      r"\['sonar'\] are not sensors of the env.*pretrain/run.py"):
        train_agent("TinySensorsBox-v0", "vel", str(other), 0, 10, tmp_path / "b", **QUIET)
    quick = {"env": "TinySensorsBox-v0", "out_dir": str(tmp_path / "c"), "train_conditions": ["pos"]}
    with pytest.raises(SettingsError, match=refused + r" \('pos', 'vel'\); \['sonar'\] are not sensors"):
        transfer.ex.run(config_updates={**quick, "mhvae": str(other), "test_conditions": ["pos"], "failure_probs": []})
    pos_only = tiny_checkpoint(tmp_path.parent / f"{tmp_path.name}-pos.pt",
                               spaces.Dict({"pos": spaces.Box(-1, 1, (2,))}))
    with pytest.raises(SettingsError, match=r"\['vel'\] would be observed but are not encoded\. Pass"):
        transfer.ex.run(config_updates={**quick, "mhvae": str(pos_only), "test_conditions": ["pos", "vel"]})
    train_agent("TinySensorsBox-v0", "pos", str(pos_only), 0, 1, tmp_path / "a", hp=SAC_HP, **QUIET)  # encodes pos
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_episode_length_comes_from_the_spec_with_a_default_and_an_override():
    assert resolve_env("TinySensorsBox-v0").episode_steps == 20
    assert resolve_env("TinySensorsNoLimit-v0").episode_steps == DEFAULT_EPISODE_STEPS
    env = make_env(resolve_env("TinySensorsNoLimit-v0"), episode_steps=7)
    env.reset(seed=0)
    steps = next(t for t in range(1, 100) if env.step(env.action_space.sample())[3])
    assert steps == 7


# ------------------------------------------------------------------------------------- module:EnvId
MODULE = '''
import gymnasium as gym
from gymnasium import spaces
import numpy as np

class Env(gym.Env):
    observation_space = spaces.Dict({"pos": spaces.Box(-1, 1, (2,), np.float32),
                                     "vel": spaces.Box(-1, 1, (3,), np.float32)})
    action_space = spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}

gym.register("TinyModuleEnv-v0", entry_point=Env, max_episode_steps=10)
'''


def _forget(module: str, env_id: str) -> None:
    """As in a fresh process: the module not imported, the id not registered."""
    sys.modules.pop(module, None)
    gym.registry.pop(env_id, None)


def test_module_env_id_imports_the_users_module_never_one_a_file_names(checkpoint, tmp_path, monkeypatch):
    from agents.evaluate import evaluate

    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "tiny_agents_envmod.py").write_text(MODULE)
    marker = tmp_path / "imported"
    (tmp_path / "tiny_agents_evilmod.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    _forget("tiny_agents_envmod", "TinyModuleEnv-v0")
    try:
        meta = train_agent("tiny_agents_envmod:TinyModuleEnv-v0", "pos", str(checkpoint), 0, 50, tmp_path / "a",
                           hp=SAC_HP, **QUIET)
        assert meta["env"] == meta["env_id"] == "TinyModuleEnv-v0" and meta["episode_steps"] == 10
        _forget("tiny_agents_envmod", "TinyModuleEnv-v0")
        cfg = {"agent": str(tmp_path / "a"), "episodes": 1, "n_envs": 1, "random_reference": False, "device": "cpu",
               "seed": 0, "out_dir": str(tmp_path / "ev")}
        with pytest.raises(SettingsError, match=r"trained on env 'TinyModuleEnv-v0' \(its agent.json\), which is not "
                                                r"registered.*pass env=<module>:TinyModuleEnv-v0"):
            evaluate(cfg, log=lambda s: None)
        assert "tiny_agents_envmod" not in sys.modules
        with pytest.raises(SettingsError, match="names 'TinySensorsBox-v0', but the agent was trained on "
                                                "'TinyModuleEnv-v0': pass env=<module>:TinyModuleEnv-v0"):
            evaluate({**cfg, "env": "TinySensorsBox-v0"}, log=lambda s: None)
        result = evaluate({**cfg, "env": "tiny_agents_envmod:TinyModuleEnv-v0"}, log=lambda s: None)
        assert result["lengths"] == [10]
        # collecting on the agent's states: the same rule (--env module:Id), the recorded env otherwise
        from agents import collect_on_policy
        from mhvae_perception.data import collect as collector

        monkeypatch.setattr(collector, "POLICY_LOADERS", [])  # main() registers its loader there
        args = ["--agent", str(tmp_path / "a"), "--n-train", "20", "--n-test", "10", "--no-progress"]
        _forget("tiny_agents_envmod", "TinyModuleEnv-v0")
        with pytest.raises(SettingsError, match="pass env=<module>:TinyModuleEnv-v0"):
            collect_on_policy.main([*args, "--out", str(tmp_path / "none.npz")])
        assert "tiny_agents_envmod" not in sys.modules and not (tmp_path / "none.npz").exists()
        collect_on_policy.main([*args, "--env", "tiny_agents_envmod:TinyModuleEnv-v0",
                                "--out", str(tmp_path / "c.npz")])
        assert collector.read_collected(tmp_path / "c.npz")[1]["env_id"] == "TinyModuleEnv-v0"
        # a crafted agent.json naming module:Id is refused without importing the module
        crafted = dict(read_agent_meta(tmp_path / "a"), env="tiny_agents_evilmod:Evil-v0")
        (tmp_path / "a" / "agent.json").write_text(json.dumps(crafted))
        with pytest.raises(SettingsError, match="a file never chooses a module to import"):
            evaluate(cfg, log=lambda s: None)
        assert not marker.exists() and "tiny_agents_evilmod" not in sys.modules
    finally:
        _forget("tiny_agents_envmod", "TinyModuleEnv-v0")


# ------------------------------------------------------- this project's envs: the generic path + overrides
def test_pendulum_sound_and_hyperhot_are_the_generic_path_with_tuned_overrides():
    from agents.config import GENERIC, TUNED

    pendulum = resolve_env("pendulum_sound")
    assert (pendulum.env_id, pendulum.algo, pendulum.episode_steps, pendulum.sensors) == \
           ("PendulumSound-v0", "sac", 300, ("image", "sound"))  # algorithm and length from the env itself
    assert pendulum["latent_stack"] == 2 and pendulum["state_env_id"] == "Pendulum-v1"
    assert resolve_env("PendulumSound-v0").name == "pendulum_sound"  # one agent, either spelling
    hyperhot = resolve_env("hyperhot")
    assert (hyperhot.algo, hyperhot.episode_steps, hyperhot["win_return"]) == ("dqn", 450, 10.0)
    hits = resolve_env("hyperhot_hits")
    assert hits.name == "hyperhot_hits" and hits.env_kwargs == {"hit_reward": 1.0} and hits["dataset"] == "hyperhot"
    # the true-state reference: the same game observing info["state"], with the variant's reward
    assert hyperhot["state_env_id"] == hits["state_env_id"] == "HyperhotState-v0"
    from agents.common import _raw_env

    state_env = _raw_env(hits, state=True)
    assert state_env.unwrapped.hit_reward == 1.0 and state_env.observation_space.shape == (2, 25)
    assert set(TUNED["PendulumSound-v0"]) <= set(GENERIC) and "algo" not in TUNED["PendulumSound-v0"]
    tiny = resolve_env("TinySensorsBox-v0")
    assert {k: tiny[k] for k in GENERIC} == GENERIC  # an env without overrides gets the generic settings


def test_agents_warn_by_default_and_count_observations_outside_the_training_range(tmp_path):
    """An agent explores beyond the pretraining data: training and evaluation go on (one warning) and report how
    many observations per sensor were outside the MHVAE's training range; on_out_of_range="error" still stops."""
    from agents import evaluate
    from mhvae_perception.wrappers.adapter import OutOfRangeObservationError

    space = gym.make("TinySensorsBox-v0").observation_space
    torch.manual_seed(0)
    narrow = {k: 1e-3 * np.stack([s.sample() for _ in range(256)]) for k, s in space.spaces.items()}  # |x| << 1
    config = describe.infer_model_config(space, narrow, "mhvae", verbose=False,
                                         overrides={"pos": {"network_kwargs": {"hidden": [16]}},
                                                    "vel": {"network_kwargs": {"hidden": [16]}},
                                                    "core": {"latent_dim": 2, "hidden": [16]}})
    ck = save_checkpoint(tmp_path / "narrow.pt", build_model(config).eval())
    run_dir = tmp_path / "agent"
    with pytest.warns(UserWarning, match="outside"):
        train_agent("TinySensorsBox-v0", "pos", str(ck), 0, 60, run_dir, hp=SAC_HP, **QUIET)
    assert read_agent_meta(run_dir)["out_of_range_observations"]["pos"] > 0
    result = evaluate.evaluate({"agent": str(run_dir), "modalities": "pos", "episodes": 2, "n_envs": 1, "seed": 0,
                                "random_reference": False, "device": "cpu", "out_dir": str(tmp_path / "ev")},
                               log=lambda s: None)
    assert result["out_of_range_observations"]["pos"] >= sum(result["lengths"])  # every step (+ resets, bounds)
    with pytest.raises(OutOfRangeObservationError):
        evaluate.evaluate({"agent": str(run_dir), "modalities": "pos", "episodes": 1, "n_envs": 1, "seed": 0,
                           "random_reference": False, "device": "cpu", "out_dir": str(tmp_path / "ev2"),
                           "on_out_of_range": "error"}, log=lambda s: None)


def test_collect_on_policy_refuses_a_bad_thread_count_before_reading_the_agent(tmp_path, capsys):
    from agents import collect_on_policy

    with pytest.raises(SystemExit):
        collect_on_policy.main(["--agent", str(tmp_path / "none"), "--out", str(tmp_path / "c.npz"),
                                "--num-threads", "0"])
    assert "--num-threads must be >= 1" in capsys.readouterr().err and not (tmp_path / "c.npz").exists()


def test_the_latent_diagnostics_read_the_dataset_of_the_pretraining_state_source(monkeypatch):
    """A dataset collected with a state source other than auto has a file of its own: transfer.py finds it."""
    from agents import transfer
    from mhvae_perception import data

    calls = []
    monkeypatch.setattr(data, "load_env_splits", lambda env_id, **kw: calls.append((env_id, kw)) or "splits")
    monkeypatch.setattr(data, "load_dataset", lambda name, **kw: calls.append((name, "default")) or "default splits")
    assert transfer.diagnostics_data("PendulumSound-v0", "sensor:sound") == "splits"
    assert calls == [("PendulumSound-v0", {"collect_if_missing": False, "state_source": "sensor:sound"})]
    assert transfer.diagnostics_data("PendulumSound-v0") == "default splits"
    with pytest.raises(SettingsError, match="state_source must be one of"):
        transfer.check_transfer_settings({"env": "PendulumSound-v0", "state_source": "bogus"})


def test_transfer_figures_have_titles_and_legends(tmp_path, monkeypatch):
    import matplotlib.figure

    from agents.transfer import write_outputs

    seen = {}
    real = matplotlib.figure.Figure.savefig

    def spy(self, path, *args, **kwargs):
        ax = self.axes[0]
        seen[Path(path).name] = (ax.get_title(), ax.get_legend() is not None)
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    r = {"mean": -10.0, "std": 2.0, "seed_std": 1.0, "per_step_mean": -0.5}
    conds = ["state", "pixels"]
    cfg = {"env": "Tiny-v0", "out_dir": str(tmp_path), "seeds": [0, 1], "test_episodes": 3, "timesteps": 10,
           "train_conditions": conds, "test_conditions": conds + ["both"], "robustness_conditions": conds}
    results = {"cells": {c: {t: r for t in cfg["test_conditions"]} for c in conds}, "random": r}
    robust = {"failure_probs": [0.0, 0.5], "episodes_per_seed": 2, **{c: [r, r] for c in conds}}
    write_outputs(cfg, results, {"state->pixels": 100.0}, robust, {}, {})
    assert set(seen) == {"transfer.png", "robustness.png"}
    assert all(title.startswith("Tiny-v0: ") and legend for title, legend in seen.values()), seen
