"""Small helpers shared by the multimodal environments: frame stacking, action checks, a lazy pygame viewer."""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

N_STACK = 2


class FrameStack:
    """Keep the last ``N_STACK`` frames of one modality in a preallocated array (oldest first)."""

    def __init__(self, frame_shape: tuple[int, ...], dtype: np.dtype | type = np.float32) -> None:
        self.frames = np.zeros((N_STACK, *frame_shape), dtype=dtype)

    def reset(self, frame: np.ndarray) -> np.ndarray:
        """Fill every slot with ``frame`` (the first frame repeated) and return a copy of the stack."""
        self.frames[:] = frame
        return self.frames.copy()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """Drop the oldest frame, append ``frame`` and return a copy of the stack."""
        self.frames[:-1] = self.frames[1:]
        self.frames[-1] = frame
        return self.frames.copy()


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
