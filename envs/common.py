"""Small helpers shared by the multimodal environments: registered wrappers, action checks, a lazy pygame viewer."""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import WrapperSpec

N_STACK = 2  # frames stacked by gymnasium.wrappers.FrameStackObservation (registered with each env id)


class TruncationPenalty(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Add ``penalty`` to the reward of a step that is truncated (and not terminated), whichever wrapper or
    limit truncated it. Hyperhot's "-1 at the time limit" lives here, outside Gymnasium's ``TimeLimit``."""

    def __init__(self, env: gym.Env, penalty: float = -1.0) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, penalty=penalty)
        gym.Wrapper.__init__(self, env)
        self.penalty = float(penalty)

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated and not terminated:
            reward = float(reward) + self.penalty
        return obs, reward, terminated, truncated, info


class InfoStateObservation(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observe ``info[key]`` (the true low-dimensional state an env reports beside its sensors) instead of the
    sensors, rescaled from ``[low, high]`` to ``[0, 1]`` per element.

    Why: the true-state reference of a transfer table (an agent that sees what the sensors are about) for envs
    whose state lives only in ``info``; the rescaling keeps pixel coordinates and 0/1 flags on one scale for the
    agent's network. A value outside ``[low, high]`` is an error naming it, not a silent clip."""

    def __init__(self, env: gym.Env, low, high, key: str = "state") -> None:
        gym.utils.RecordConstructorArgs.__init__(self, low=low, high=high, key=key)
        gym.Wrapper.__init__(self, env)
        self.low, self.high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
        if self.low.shape != self.high.shape or self.low.ndim != 1 or not np.all(self.high > self.low):
            raise ValueError(f"InfoStateObservation: low and high must be 1-d of one shape with high > low, got "
                             f"{self.low.shape} and {self.high.shape}")
        self.key = key
        self.observation_space = spaces.Box(0.0, 1.0, shape=self.low.shape, dtype=np.float32)

    def _observe(self, info: dict) -> np.ndarray:
        if self.key not in info:
            raise KeyError(f"InfoStateObservation: the env's info has no {self.key!r} (keys: {sorted(info)}); pass "
                           f"key= naming the true state")
        state = np.asarray(info[self.key], dtype=np.float64)
        if state.shape != self.low.shape:
            raise ValueError(f"InfoStateObservation: info[{self.key!r}] has shape {state.shape}, the bounds "
                             f"{self.low.shape}")
        outside = np.flatnonzero((state < self.low) | (state > self.high))
        if outside.size:
            i = int(outside[0])
            raise ValueError(f"InfoStateObservation: info[{self.key!r}][{i}] = {state[i]} is outside "
                             f"[{self.low[i]}, {self.high[i]}]; widen the declared bounds")
        return ((state - self.low) / (self.high - self.low)).astype(np.float32)

    def reset(self, **kwargs):
        _, info = self.env.reset(**kwargs)
        return self._observe(info), info

    def step(self, action: Any):
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(info), reward, terminated, truncated, info


class MagnitudeSpectrum(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Replace the waveforms of the named ``Dict`` sensors by their log-magnitude spectra, log(1 + |rfft|) along
    the last axis (n samples -> n // 2 + 1 frequencies): the loudness of each tone whatever its phase.

    Why: a tone's amplitude at a microphone says how far its source is, but in the raw waveform it is mixed with a
    phase that changes every step; Hyperhot's ship position is read from the spectrum far better than from the
    waveform (MLP probe R² 0.77 against 0.37, docs/TRANSFER.md). The declared bounds are exact: |rfft| is at
    most n times the waveform's largest absolute bound."""

    def __init__(self, env: gym.Env, keys: tuple[str, ...] | list[str] = ("sound",)) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, keys=tuple(keys))
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not isinstance(space, spaces.Dict):
            raise TypeError(f"MagnitudeSpectrum needs a Dict observation space of named sensors, got {space}")
        self.keys = tuple(keys)
        new = dict(space.spaces)
        for key in self.keys:
            sub = space.spaces.get(key)
            if not isinstance(sub, spaces.Box) or len(sub.shape) == 0 or not sub.is_bounded():
                raise ValueError(f"MagnitudeSpectrum: sensor {key!r} must be a bounded Box with a time axis last "
                                 f"(the observation space has {dict(space.spaces)}); pass keys= naming waveforms")
            n = sub.shape[-1]
            bound = float(max(np.abs(sub.low).max(), np.abs(sub.high).max()))
            new[key] = spaces.Box(0.0, float(np.log1p(n * bound)), shape=(*sub.shape[:-1], n // 2 + 1),
                                  dtype=np.float32)
        self.observation_space = spaces.Dict(new)

    def observation(self, observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(observation)
        for key in self.keys:
            magnitude = np.abs(np.fft.rfft(np.asarray(observation[key], dtype=np.float64), axis=-1))
            out[key] = np.log1p(magnitude).astype(np.float32)
        return out


def registered_wrappers(penalty: float | None = None, spectrum: tuple[str, ...] = (),
                        info_state: tuple[list[float], list[float]] | None = None) -> tuple[WrapperSpec, ...]:
    """The wrappers ``gym.make`` adds after ``TimeLimit``: an optional :class:`InfoStateObservation` with the
    bounds ``info_state = (low, high)`` (the true state replaces the sensors), an optional
    :class:`TruncationPenalty`, an optional :class:`MagnitudeSpectrum` of the ``spectrum`` sensors (each frame),
    then the stacking of the last :data:`N_STACK` observations on a new axis 0 (oldest first; the first frame
    repeated at reset)."""
    stack = WrapperSpec("FrameStackObservation", "gymnasium.wrappers:FrameStackObservation",
                        {"stack_size": N_STACK, "padding_type": "reset"})
    wrappers = []
    if info_state is not None:
        low, high = info_state
        wrappers.append(WrapperSpec("InfoStateObservation", "envs.common:InfoStateObservation",
                                    {"low": list(low), "high": list(high), "key": "state"}))
    if penalty is not None:
        wrappers.append(WrapperSpec("TruncationPenalty", "envs.common:TruncationPenalty", {"penalty": float(penalty)}))
    if spectrum:
        wrappers.append(WrapperSpec("MagnitudeSpectrum", "envs.common:MagnitudeSpectrum", {"keys": tuple(spectrum)}))
    return (*wrappers, stack)


def check_box_action(action: Any, space: spaces.Box) -> np.ndarray:
    """Return ``action`` as an array of ``space.dtype``; raise ``ValueError`` if it is not in ``space``.

    Unlike ``Box.contains`` this accepts any real dtype (e.g. float64 arrays or Python lists) as long as the
    shape matches and the values are finite and within the bounds.
    """
    try:
        arr = np.asarray(action, dtype=space.dtype)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid action {action!r}: not in action space {space}") from e
    if (
        arr.shape != space.shape
        or not np.all(np.isfinite(arr))
        or np.any(arr < space.low)
        or np.any(arr > space.high)
    ):
        raise ValueError(f"Invalid action {action!r}: not in action space {space}")
    return arr


def check_discrete_action(action: Any, space: spaces.Discrete) -> int:
    """Return ``action`` as a Python int; raise ``ValueError`` if it is not in ``space``."""
    if isinstance(action, (bool, np.bool_)) or not space.contains(action):
        raise ValueError(f"Invalid action {action!r}: not in action space {space}")
    return int(action)


def use_dummy_display_when_headless() -> bool:
    """On Linux without a display (no ``DISPLAY`` / ``WAYLAND_DISPLAY``) and no SDL video driver chosen, choose SDL's
    ``dummy`` driver, so that ``render_mode="human"`` (e.g. in Gymnasium's ``check_env``) never tries to open a
    window where none can exist; warns that nothing is shown. Returns whether it did."""
    headless = sys.platform.startswith("linux") and not os.environ.get("DISPLAY") \
        and not os.environ.get("WAYLAND_DISPLAY")
    if not headless or os.environ.get("SDL_VIDEODRIVER"):
        return False
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    warnings.warn('no display: render_mode="human" draws to SDL\'s dummy driver and nothing is shown; use '
                  'render_mode="rgb_array" to get the frames (docs/ENVS.md, "Rendering without a display")',
                  UserWarning, stacklevel=4)
    return True


class HumanViewer:
    """Show RGB frames in a pygame window; pygame is imported only when the first frame is shown."""

    def __init__(self, caption: str, fps: int) -> None:
        self.caption = caption
        self.fps = fps
        self.screen = None
        self.clock = None

    def show(self, frame: np.ndarray) -> None:
        """Display an ``(H, W, 3)`` uint8 frame and wait to keep ``fps``."""
        try:
            import pygame
        except ImportError as e:  # pragma: no cover - pygame is an optional dependency
            raise ImportError('render_mode="human" needs pygame: pip install pygame') from e
        if self.screen is None:
            use_dummy_display_when_headless()
            pygame.display.init()
            pygame.display.set_caption(self.caption)
            self.screen = pygame.display.set_mode((frame.shape[1], frame.shape[0]))
            self.clock = pygame.time.Clock()
        pygame.event.pump()
        surf = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        self.screen.blit(surf, (0, 0))
        pygame.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        """Close the window if one was opened."""
        if self.screen is not None:
            import pygame

            pygame.display.quit()
            self.screen = None


class HumanRenderMixin:
    """``render_mode="human"`` for an env whose render draws an RGB frame: ``_present`` shows the frame in a
    window (returning None, as Gymnasium expects) or returns it for ``"rgb_array"``; ``close`` closes the window."""

    render_mode: str | None
    metadata: dict[str, Any]
    window_caption: str = "mhvae-perception"
    _viewer: HumanViewer | None = None

    def _present(self, frame: np.ndarray) -> np.ndarray | None:
        if self.render_mode != "human":
            return frame
        if self._viewer is None:
            self._viewer = HumanViewer(self.window_caption, self.metadata["render_fps"])
        self._viewer.show(frame)
        return None

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
