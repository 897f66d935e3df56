"""Multimodal (image + sound) Gymnasium environments; importing this package registers them and their presets.

>>> import gymnasium, envs
>>> env = gymnasium.make("PendulumSound-v0")  # or "Hyperhot-v0", "HyperhotSpectrum-v0"

Registration: the time limit is Gymnasium's ``TimeLimit`` (``max_episode_steps``: 300 and 450), Hyperhot's
-1 at the time limit is :class:`envs.common.TruncationPenalty` (applied after ``TimeLimit``), and the last two
frames of each sensor are stacked by ``gymnasium.wrappers.FrameStackObservation``. The classes themselves
return single frames. ``HyperhotSpectrum-v0`` is Hyperhot with its sound given as log-magnitude spectra
(:class:`envs.common.MagnitudeSpectrum`, each frame before the stacking): the same game, rewards and image.
``HyperhotState-v0`` is the game observing its true state instead (``info["state"]`` rescaled to [0, 1],
:class:`envs.common.InfoStateObservation`): the true-state reference of Hyperhot's transfer tables.
The hand-tuned model networks are registered with
:func:`mhvae_perception.data.presets.register_env_preset` (aliases ``pendulum_sound`` and ``hyperhot``).
"""
from gymnasium.envs.registration import register, registry

from envs.common import registered_wrappers
from envs.hyperhot import STATE_HIGH, STATE_LOW, HyperhotEnv
from envs.pendulum_sound import PendulumSoundEnv
from envs.presets import register_presets

__all__ = ["PendulumSoundEnv", "HyperhotEnv", "ENV_IDS", "MAX_EPISODE_STEPS"]

ENV_IDS = ("PendulumSound-v0", "Hyperhot-v0", "HyperhotSpectrum-v0")
MAX_EPISODE_STEPS = {"PendulumSound-v0": 300, "Hyperhot-v0": 450, "HyperhotSpectrum-v0": 450, "HyperhotState-v0": 450}

if "PendulumSound-v0" not in registry:
    register(id="PendulumSound-v0", entry_point="envs.pendulum_sound:PendulumSoundEnv",
             max_episode_steps=MAX_EPISODE_STEPS["PendulumSound-v0"], additional_wrappers=registered_wrappers())
if "Hyperhot-v0" not in registry:
    register(id="Hyperhot-v0", entry_point="envs.hyperhot:HyperhotEnv",
             max_episode_steps=MAX_EPISODE_STEPS["Hyperhot-v0"], additional_wrappers=registered_wrappers(penalty=-1.0))
if "HyperhotSpectrum-v0" not in registry:
    register(id="HyperhotSpectrum-v0", entry_point="envs.hyperhot:HyperhotEnv",
             max_episode_steps=MAX_EPISODE_STEPS["HyperhotSpectrum-v0"],
             additional_wrappers=registered_wrappers(penalty=-1.0, spectrum=("sound",)))
if "HyperhotState-v0" not in registry:  # the true-state reference of Hyperhot's transfer tables (no sensors)
    register(id="HyperhotState-v0", entry_point="envs.hyperhot:HyperhotEnv",
             max_episode_steps=MAX_EPISODE_STEPS["HyperhotState-v0"],
             additional_wrappers=registered_wrappers(penalty=-1.0,
                                                     info_state=(STATE_LOW.tolist(), STATE_HIGH.tolist())))
register_presets()
