"""PendulumSound: Gymnasium's Pendulum-v1 observed through an image and a sound sensor."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.common import HumanRenderMixin, check_box_action

# Physics: identical to gymnasium.envs.classic_control.PendulumEnv.
MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
G = 10.0
MASS = 1.0
LENGTH = 1.0
DEFAULT_X = np.pi  # reset bounds, as in Pendulum-v1
DEFAULT_Y = 1.0

# Image sensor.
BOUND = 2.2  # the canvas covers [-BOUND, BOUND]^2
CANVAS_PX = 100
CROP_PX = 60
ROD_WIDTH = 0.2

# Sound sensor.
F0 = 440.0  # Hz, emitted by the rod's tip
SOUND_SPEED = 20.0
MICROPHONES = np.array([[-BOUND, -BOUND], [BOUND, -BOUND], [0.0, BOUND]], dtype=np.float64)


def angle_normalize(x: float) -> float:
    """Map an angle to [-pi, pi), as Pendulum-v1 does."""
    return ((x + np.pi) % (2 * np.pi)) - np.pi


def pixel_grid(n_px: int, crop_px: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates (x, y) of the pixel centres of the central ``crop_px``² of an ``n_px``² canvas.

    Rows go from top (+y) to bottom (-y), columns from left (-x) to right (+x).
    """
    step = 2 * BOUND / n_px
    start = (n_px - crop_px) // 2
    idx = np.arange(start, start + crop_px)
    xs = -BOUND + (idx + 0.5) * step
    ys = BOUND - (idx + 0.5) * step
    return np.meshgrid(xs, ys)  # each (crop_px, crop_px), indexed [row, col]


def rod_mask(theta: float, gx: np.ndarray, gy: np.ndarray, width: float = ROD_WIDTH) -> np.ndarray:
    """Boolean mask of the pixels within ``width / 2`` of the segment from (0, 0) to (sin θ, cos θ)."""
    bx, by = LENGTH * np.sin(theta), LENGTH * np.cos(theta)
    t = np.clip((gx * bx + gy * by) / (LENGTH**2), 0.0, 1.0)
    dx = gx - t * bx
    dy = gy - t * by
    return dx * dx + dy * dy <= (width / 2) ** 2


def sound_features(theta: float, theta_dot: float, microphones: np.ndarray = MICROPHONES) -> np.ndarray:
    """Doppler frequency and 1/d² amplitude of the tip's 440 Hz tone at each microphone, shape (n_mics, 2).

    Tip at p = l (sin θ, cos θ), velocity v = l θ̇ (cos θ, -sin θ). With ``v_r`` the component of v along the
    unit vector from the tip to the microphone (positive when approaching), f = f0 · c / (c - v_r).
    """
    p = LENGTH * np.array([np.sin(theta), np.cos(theta)])
    v = LENGTH * theta_dot * np.array([np.cos(theta), -np.sin(theta)])
    delta = microphones - p
    d = np.sqrt(np.sum(delta * delta, axis=1))
    v_r = delta @ v / d
    out = np.empty((len(microphones), 2), dtype=np.float32)
    out[:, 0] = F0 * SOUND_SPEED / (SOUND_SPEED - v_r)
    out[:, 1] = 1.0 / (d * d)
    return out


def sound_bounds(microphones: np.ndarray = MICROPHONES) -> tuple[np.ndarray, np.ndarray]:
    """Exact per-microphone bounds of :func:`sound_features`, shape (n_mics, 2) each, loosened by 1e-5 relative.

    |v_r| <= l·max_speed (reached where the tip moves along the line to the microphone), and the tip-to-mic
    distance lies in [R - l, R + l] with R = |mic| > l.
    """
    vmax = LENGTH * MAX_SPEED
    r = np.linalg.norm(microphones, axis=1)
    low = np.stack([np.full_like(r, F0 * SOUND_SPEED / (SOUND_SPEED + vmax)), 1.0 / (r + LENGTH) ** 2], axis=1)
    high = np.stack([np.full_like(r, F0 * SOUND_SPEED / (SOUND_SPEED - vmax)), 1.0 / (r - LENGTH) ** 2], axis=1)
    return (low * (1 - 1e-5)).astype(np.float32), (high * (1 + 1e-5)).astype(np.float32)


STATE_NAMES = ("cos_theta", "sin_theta", "theta_dot")


class PendulumSoundEnv(HumanRenderMixin, gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Pendulum-v1 dynamics and reward, observed one frame at a time as ``{"image": (60, 60), "sound": (3, 2)}``.

    ``gym.make("PendulumSound-v0")`` adds the registered wrappers: ``TimeLimit(300)`` and
    ``FrameStackObservation(2)``, giving ``{"image": (2, 60, 60), "sound": (2, 3, 2)}``. ``info["state"]`` is
    the true state (cos θ, sin θ, θ̇) as float32 on reset and step (names in :attr:`state_names`).

    :param render_mode: ``None``, ``"rgb_array"`` (a 300x300x3 uint8 colour view) or ``"human"`` (pygame).
    :param time_limit: optional extra limit inside the environment (older code's keyword); the registered
        limit is ``max_episode_steps`` (``gym.make(..., max_episode_steps=N)`` changes it).
    """

    window_caption = "PendulumSound-v0"
    state_names = STATE_NAMES

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 20}

    def __init__(self, render_mode: str | None = None, time_limit: int | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        self.time_limit = None if time_limit is None else int(time_limit)
        self.action_space = spaces.Box(low=-MAX_TORQUE, high=MAX_TORQUE, shape=(1,), dtype=np.float32)
        s_low, s_high = sound_bounds()
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0.0, 1.0, shape=(CROP_PX, CROP_PX), dtype=np.float32),
                "sound": spaces.Box(s_low, s_high, dtype=np.float32),
            }
        )
        self._gx, self._gy = pixel_grid(CANVAS_PX, CROP_PX)
        self.state: np.ndarray | None = None
        self.last_u: float | None = None
        self.steps = 0
        self._render_grid: tuple[np.ndarray, np.ndarray] | None = None

    # --- sensors -------------------------------------------------------------------------------------------
    def _image_frame(self) -> np.ndarray:
        return rod_mask(self.state[0], self._gx, self._gy).astype(np.float32)

    def _sound_frame(self) -> np.ndarray:
        return sound_features(self.state[0], self.state[1])

    def _obs(self) -> dict[str, np.ndarray]:
        return {"image": self._image_frame(), "sound": self._sound_frame()}

    def _info(self) -> dict[str, Any]:
        th, thdot = self.state
        return {"state": np.array([np.cos(th), np.sin(th), thdot], dtype=np.float32)}

    # --- Gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Draw θ ∈ [-π, π], θ̇ ∈ [-1, 1] exactly like Pendulum-v1 (``options`` may set ``x_init``/``y_init``)."""
        super().reset(seed=seed)
        options = options or {}
        high = np.array([float(options.get("x_init", DEFAULT_X)), float(options.get("y_init", DEFAULT_Y))])
        self.state = self.np_random.uniform(low=-high, high=high)
        self.last_u = None
        self.steps = 0
        obs = self._obs()
        if self.render_mode == "human":
            self.render()
        return obs, self._info()

    def step(self, action: np.ndarray):
        """Apply a torque in [-2, 2]; raise ``ValueError`` for an action outside the action space."""
        if self.state is None:
            raise RuntimeError("Call reset() before step()")
        action = check_box_action(action, self.action_space)
        th, thdot = self.state
        # Same operations and dtypes as Pendulum-v1.step, so that trajectories are bit-identical.
        u = np.clip(action, -MAX_TORQUE, MAX_TORQUE)[0]
        self.last_u = u
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)
        newthdot = thdot + (3 * G / (2 * LENGTH) * np.sin(th) + 3.0 / (MASS * LENGTH**2) * u) * DT
        newthdot = np.clip(newthdot, -MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        self.state = np.array([newth, newthdot])
        self.steps += 1
        obs = self._obs()
        truncated = self.time_limit is not None and self.steps >= self.time_limit
        if self.render_mode == "human":
            self.render()
        return obs, float(-costs), False, truncated, self._info()

    def render(self) -> np.ndarray | None:
        """Colour view of the whole canvas: rod (red), pivot (black), microphones (blue)."""
        if self.render_mode is None:
            gym.logger.warn('render() called without a render_mode; use render_mode="rgb_array" or "human"')
            return None
        if self.state is None:
            raise RuntimeError("Call reset() before render()")
        if self._render_grid is None:
            self._render_grid = pixel_grid(300, 300)
        gx, gy = self._render_grid
        frame = np.full((300, 300, 3), 255, dtype=np.uint8)
        frame[rod_mask(self.state[0], gx, gy)] = (204, 77, 77)
        frame[gx * gx + gy * gy <= 0.05**2] = (0, 0, 0)
        for mx, my in MICROPHONES:
            frame[(np.abs(gx - mx) <= 0.12) & (np.abs(gy - my) <= 0.12)] = (40, 80, 220)
        return self._present(frame)
