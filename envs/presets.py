"""The hand-tuned networks of PendulumSound-v0 and Hyperhot-v0, registered with the library on import.

They are exactly the networks the project's results were measured with (same state-dict keys and shapes);
other environments get an inferred description (:mod:`mhvae_perception.data.describe`).
"""
from __future__ import annotations

import dataclasses

from envs.hyperhot import N_SAMPLES
from mhvae_perception.data.presets import register_env_preset
from mhvae_perception.models.specs import CoreSpec, ModalitySpec

PENDULUM_SOUND = (
    ModalitySpec("image", (2, 60, 60), "bernoulli", 16, "conv",
                 {"conv_layers": [[32, 4, 2, 1], [64, 4, 2, 1]], "hidden": 128, "activation": "swish"}),
    ModalitySpec("sound", (2, 3, 2), "gaussian", 8, "mlp",
                 {"hidden": [50, 50], "activation": "swish", "batchnorm": False}),
)
HYPERHOT = (
    ModalitySpec("image", (2, 80, 80), "bernoulli", 64, "conv",
                 {"conv_layers": [[32, 8, 4, 0], [64, 4, 2, 0], [64, 3, 1, 0]], "hidden": 512,
                  "activation": "swish"}),
    ModalitySpec("sound", (2, 4, 1047), "gaussian", 64, "mlp",
                 {"hidden": [512, 512], "activation": "swish", "batchnorm": False}),
)
#: Hyperhot's networks with the sound as spectra (envs.common.MagnitudeSpectrum: 1047 samples -> 524 frequencies)
HYPERHOT_SPECTRUM = (HYPERHOT[0], dataclasses.replace(HYPERHOT[1], shape=(*HYPERHOT[1].shape[:-1], N_SAMPLES // 2 + 1)))
HYPERHOT_CORE = CoreSpec(40, (512, 512, 512))


def register_presets() -> None:
    """Register both presets (idempotent)."""
    register_env_preset("PendulumSound-v0", PENDULUM_SOUND, CoreSpec(10, (256, 256, 256)), baseline_latent=10,
                        alias="pendulum_sound", dataset_sizes=(20_000, 2_000),
                        figure_hints={"feature_names": ["Doppler frequency (Hz)", "amplitude 1/d²"]})
    register_env_preset("Hyperhot-v0", HYPERHOT, HYPERHOT_CORE, baseline_latent=40,
                        alias="hyperhot", dataset_sizes=(32_000, 8_000))
    register_env_preset("HyperhotSpectrum-v0", HYPERHOT_SPECTRUM, HYPERHOT_CORE, baseline_latent=40,
                        alias="hyperhot_spectrum", dataset_sizes=(32_000, 8_000))
