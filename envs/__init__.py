"""Multimodal (image + sound) Gymnasium environments; importing this package registers them.

>>> import gymnasium, envs
>>> env = gymnasium.make("PendulumSound-v0")  # or "Hyperhot-v0"
"""
from gymnasium.envs.registration import register, registry

from envs.hyperhot import HyperhotEnv
from envs.pendulum_sound import PendulumSoundEnv

__all__ = ["PendulumSoundEnv", "HyperhotEnv", "ENV_IDS"]

ENV_IDS = ("PendulumSound-v0", "Hyperhot-v0")

# The time limits live inside the environments (kwarg ``time_limit``) because Hyperhot gives -1 on truncation;
# so no TimeLimit wrapper is added (spec.max_episode_steps is None).
if "PendulumSound-v0" not in registry:
    register(id="PendulumSound-v0", entry_point="envs.pendulum_sound:PendulumSoundEnv")
if "Hyperhot-v0" not in registry:
    register(id="Hyperhot-v0", entry_point="envs.hyperhot:HyperhotEnv")
