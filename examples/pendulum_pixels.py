"""Gymnasium's Pendulum-v1 made multimodal with Gymnasium's own wrappers: ``PendulumPixels-v0`` observes
``{"state": (3,) float32, "pixels": (48, 48, 1) uint8 grey, channel-last}``; ``PendulumPixels-v1`` the same with
the last two frames as the pixels' channels, ``(48, 48, 2)`` (older, newer; both the first frame after a reset).

A single frame shows the angle but not the angular velocity, which the state has: the transfer predictor on
``-v0`` finds the velocity in the state's core latent and nowhere in the pixels' (docs/TRANSFER.md), so an agent
that learned to use it from the state is lost from the pixels. Two frames show it, as Atari agents stack frames
and as PendulumSound's image does.

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
TWO_FRAMES_ID = "PendulumPixels-v1"
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


class LastTwoFrames(gym.Wrapper):
    """The pixels as the last two frames (channels older, newer); the state as it is."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Dict({"state": env.observation_space["state"],
                                              "pixels": spaces.Box(0, 255, (SIZE, SIZE, 2), np.uint8)})
        self._previous = None

    def _pair(self, obs: dict) -> dict:
        frame = obs["pixels"][..., 0]
        older = frame if self._previous is None else self._previous
        self._previous = frame
        return {"state": obs["state"], "pixels": np.stack([older, frame], axis=-1)}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._previous = None
        return self._pair(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._pair(obs), reward, terminated, truncated, info


def make_pendulum_pixel_pairs(**kwargs) -> gym.Env:
    return LastTwoFrames(make_pendulum_pixels(**kwargs))


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=make_pendulum_pixels)
if TWO_FRAMES_ID not in gym.registry:
    gym.register(TWO_FRAMES_ID, entry_point=make_pendulum_pixel_pairs)
