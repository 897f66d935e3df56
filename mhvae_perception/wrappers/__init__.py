"""Gymnasium / Stable-Baselines3 wrappers that give an RL agent the MHVAE's core latent z_c as its observation
(the top layer of the library).

>>> import gymnasium as gym, envs
>>> from mhvae_perception.wrappers import MHVAEObservation, SensorFailure, VecMHVAEObservation
>>> env = MHVAEObservation(gym.make("PendulumSound-v0"), "pendulum_sound-mhvae-pipeline", modalities=("image",))

``adapter`` (observation checks and conversions), ``observation`` (:class:`MHVAEObservation`,
:class:`SensorFailure`), ``vector`` (their ``VecEnv`` forms), ``extractor`` (:class:`MHVAEExtractor`, an SB3
features extractor, frozen or fine-tuned with the policy).
"""
from ..hashing import file_sha256
from ..hub.resolve import resolve_model, shipped_or_path
from .adapter import (LAYOUTS, OUT_OF_RANGE_POLICIES, NonFiniteObservationError, ObservationAdapter,
                      OutOfRangeObservationError, check_observation_space, encode_observations)
from .extractor import MHVAEExtractor
from .observation import MHVAEObservation, SensorFailure
from .vector import VecMHVAEObservation, VecSensorFailure

__all__ = ["MHVAEObservation", "MHVAEExtractor", "VecMHVAEObservation", "SensorFailure", "VecSensorFailure", "ObservationAdapter",
           "NonFiniteObservationError", "OutOfRangeObservationError", "resolve_model", "shipped_or_path",
           "file_sha256", "check_observation_space", "encode_observations", "OUT_OF_RANGE_POLICIES", "LAYOUTS"]
