"""Gymnasium's Pendulum-v1 made multimodal with Gymnasium's own wrappers: ``PendulumPixels-v0`` observes
``{"state": (3,) float32, "pixels": (48, 48, 1) uint8 grey, channel-last}``.

``AddRenderObservation`` puts the rendered frame beside the state vector; the 500x500 RGB frame is shrunk to
48x48 grey by PIL inside a ``TransformObservation`` (Gymnasium's ``ResizeObservation`` needs OpenCV, which is not
a dependency here). Importing this module registers the id, so that the library (and the project's scripts,
``env=pendulum_pixels:PendulumPixels-v0`` with ``examples/`` on ``PYTHONPATH``) can make copies of it.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import AddRenderObservation, TransformObservation
from PIL import Image

ENV_ID = "PendulumPixels-v0"
SIZE = 48


def shrink(obs: dict) -> dict:
    """The rendered 500x500 RGB frame as a 48x48 grey uint8 image, channel-last."""
    grey = Image.fromarray(obs["pixels"]).convert("L").resize((SIZE, SIZE), Image.BILINEAR)
    return {"state": obs["state"], "pixels": np.asarray(grey, dtype=np.uint8)[..., None]}


def make_pendulum_pixels(**kwargs) -> gym.Env:
    env = gym.make("Pendulum-v1", render_mode="rgb_array", **kwargs)  # its own TimeLimit(200)
    env = AddRenderObservation(env, render_only=False)  # {"state": ..., "pixels": (500, 500, 3)}
    space = spaces.Dict({"state": env.observation_space["state"],
                         "pixels": spaces.Box(0, 255, (SIZE, SIZE, 1), np.uint8)})
    return TransformObservation(env, shrink, space)


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=make_pendulum_pixels)
