"""A Stable-Baselines3 features extractor for ``Dict`` observations: the MHVAE's z_c, frozen or fine-tuned with the
policy (what SB3 users ask for to plug a pretrained encoder into ``MultiInputPolicy``).

>>> from stable_baselines3 import PPO
>>> from mhvae_perception.wrappers import MHVAEExtractor
>>> PPO("MultiInputPolicy", env, policy_kwargs={"features_extractor_class": MHVAEExtractor,
...     "features_extractor_kwargs": {"model": "pendulum_sound-mhvae-pipeline", "modalities": ["image"],
...                                   "fine_tune": True}})

Unlike :class:`~.observation.MHVAEObservation` (an observation wrapper: the latent is computed outside the
policy, never trained), the extractor is part of the policy: with ``fine_tune=True`` the encoders and the core
encoder are trained by the policy's loss. BatchNorm statistics stay those of pretraining (the model is kept in
eval mode; only weights change). The extractor holds its own copy of the model, so the caller's model and a
shipped file are never changed.

SB3 prepares a Dict observation before the extractor sees it: Discrete sensors one-hot, and images that it
recognises (uint8, channel-first after its automatic ``VecTransposeImage``) divided by 255 when
``normalize_images`` is on (the policy's default). ``sb3_normalized_images`` says which of the two the policy
does, so an image is scaled exactly once.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from ..data.describe import SensorLayout
from ..hub.resolve import ModelLike, resolve_model
from .adapter import LayoutArg, _subset, check_observation_space

__all__ = ["MHVAEExtractor"]


class MHVAEExtractor(BaseFeaturesExtractor):
    """Features = the mean of q(z_c | the chosen sensors) of a pretrained model, shape ``(top_latent_dim,)``.

    :param observation_space: the env's ``Dict`` space, as SB3 gives it.
    :param model: a loaded model, a checkpoint path or a shipped model's name.
    :param modalities: the sensors encoded (default: all the model's); the others are absent from z_c's input.
    :param fine_tune: train the model's weights with the policy (default: frozen).
    :param layout: image layouts, as for :class:`~.observation.MHVAEObservation`.
    :param sb3_normalized_images: whether the policy divides SB3-recognised images by 255 (``normalize_images``).
    """

    def __init__(self, observation_space: spaces.Dict, model: ModelLike, modalities: str | Sequence[str] | None = None,
                 fine_tune: bool = False, layout: LayoutArg = None, sb3_normalized_images: bool = True) -> None:
        loaded, _ = resolve_model(model)
        super().__init__(observation_space, features_dim=int(loaded.top_latent_dim))
        self.layouts = check_observation_space(observation_space, loaded, layout)
        self.modalities = _subset(modalities if modalities is not None else loaded.modality_names, loaded)
        self.model = copy.deepcopy(loaded).eval()  # our own copy: fine-tuning never changes the caller's model
        self.model.requires_grad_(bool(fine_tune))
        self.fine_tune = bool(fine_tune)
        self._scaled_by_sb3 = {n: sb3_normalized_images and is_image_space(observation_space.spaces[n])
                               for n in loaded.modality_names}

    def set_modalities(self, modalities: str | Sequence[str]) -> None:
        """Encode from these sensors from now on (e.g. test a policy trained from the image on the sound)."""
        self.modalities = _subset(modalities, self.model)

    def train(self, mode: bool = True) -> "MHVAEExtractor":
        """SB3 switches the policy between training and evaluation; the model stays in eval mode (pretraining's
        BatchNorm statistics, no modality dropout) and only its weights learn."""
        super().train(mode)
        self.model.eval()
        return self

    def _to_model(self, name: str, x: torch.Tensor) -> torch.Tensor:
        layout: SensorLayout = self.layouts[name]
        if layout.kind == "image":
            if layout.layout == "HWC":
                x = x.permute(0, 3, 1, 2)
            elif layout.layout == "HW":
                x = x.unsqueeze(1)
            if layout.scale != 1 and not self._scaled_by_sb3[name]:
                x = x / layout.scale
        return x.float().reshape(x.shape[0], *layout.model_shape)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        batch = {n: self._to_model(n, observations[n]) for n in self.modalities}
        with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
            mu, _ = self.model.posterior(self.model.prepare(batch))
        return mu
