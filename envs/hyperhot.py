"""Hyperhot: a small Space-Invaders-like shooter observed through an image and a 4-microphone sound sensor."""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.common import HumanRenderMixin, check_discrete_action

# Screen (pixels, x to the right, y downwards).
WIDTH, HEIGHT = 160, 210
SHIP_W, SHIP_H = 24, 8
SHIP_BOTTOM = HEIGHT - 22  # the ship's bottom edge is 22 px above the screen's bottom
SHIP_TOP = SHIP_BOTTOM - SHIP_H
SHIP_SPEED = 5
SHIP_X_MIN, SHIP_X_MAX = 10, 130  # range of the ship's left edge
SHIP_X_START = (WIDTH - SHIP_W) // 2
BULLET = 6  # bullets are BULLET x BULLET squares
BULLET_SPEED = 6
N_ENEMIES = 4
ENEMY_R = 8
ENEMY_Y = 40
ENEMY_X_START = (32, 64, 96, 128)
ENEMY_SPEED = 1
FIRE_EVERY = 6
MAX_ENEMY_BULLETS = 4

# Image: 2x downsampling (max-pool), rows CROP_TOP..CROP_TOP+160 of the full frame -> 80x80.
CROP_TOP = 30
IMG = 80

# Sound.
SAMPLE_RATE = 44_100
N_SAMPLES = 1047
DECAY = 0.025  # amplitude exp(-DECAY * distance in pixels)
# Frequency groups: player bullet, enemies 0-1, enemies 2-3, enemy bullets.
FREQS = np.array([466.16, 261.63, 329.63, 392.00])
ENEMY_GROUP = np.array([1, 1, 2, 2])
MIC_Y = (SHIP_TOP + SHIP_BOTTOM) / 2  # height of the two microphones carried by the ship

ACTIONS = ("noop", "left", "right", "shoot", "shoot+left", "shoot+right")
_MOVE = (0, -1, 1, 0, -1, 1)
_SHOOT = (False, False, False, True, True, True)

_DISK_OFF = np.arange(-ENEMY_R, ENEMY_R + 1)
_DISK = (_DISK_OFF[:, None] ** 2 + _DISK_OFF[None, :] ** 2) <= ENEMY_R**2


def square_waves(freqs: np.ndarray, start_sample: int, n: int = N_SAMPLES, rate: int = SAMPLE_RATE) -> np.ndarray:
    """±1 square waves, +1 on the first half of each cycle [0, 1/2) and -1 on the second, i.e. sign(sin 2πft)
    with +1 at zero, for samples ``start_sample .. start_sample + n - 1`` of a clock that starts at 0.

    One global sample clock makes each tone's phase continuous across steps. Frequencies are taken to 0.01 Hz
    and the number of elapsed half cycles is computed in exact integer arithmetic (no rounding at the
    boundaries, no drift over long episodes). Shape (len(freqs), n).
    """
    centi_hz = np.rint(np.asarray(freqs, dtype=np.float64) * 100).astype(np.int64)
    samples = np.arange(start_sample, start_sample + n, dtype=np.int64)
    half_cycles = (2 * centi_hz[:, None] * samples[None, :]) // (100 * rate)
    return 1.0 - 2.0 * (half_cycles & 1)


def mix(mics: np.ndarray, sources: np.ndarray, groups: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Sum over sources of exp(-DECAY·d) · wave[group] at each microphone, clipped to [-1, 1].

    :param mics: (n_mics, 2) positions; :param sources: (n_src, 2) positions; :param groups: (n_src,) indices
    into the rows of ``waves`` (n_groups, n_samples). Returns float32 (n_mics, n_samples).
    """
    if len(sources) == 0:
        return np.zeros((len(mics), waves.shape[1]), dtype=np.float32)
    d = np.sqrt(((mics[:, None, :] - sources[None, :, :]) ** 2).sum(-1))  # (n_mics, n_src)
    amp = np.exp(-DECAY * d)
    weights = amp @ np.eye(len(waves))[groups]  # weights[m, g] = sum of amplitudes of the sources in group g
    return np.clip(weights @ waves, -1.0, 1.0).astype(np.float32)


def _state_names() -> tuple[str, ...]:
    enemies = [f"enemy{i}_{field}" for field in ("alive", "x") for i in range(N_ENEMIES)]
    bullets = [f"enemy_bullet{i}_{field}" for field in ("active", "x", "y") for i in range(N_ENEMIES)]
    return ("ship_x", *enemies, "enemy_dir", "bullet_active", "bullet_x", "bullet_y", *bullets)


#: Layout of ``info["state"]`` (25 float32 values, pixels of the full 160x210 screen, y downwards):
#: ship_x (left edge); enemy{0..3}_alive (0/1); enemy{0..3}_x (centre; dead enemies keep moving with the
#: formation); enemy_dir (-1/+1); bullet_active, bullet_x, bullet_y (the player's bullet, top-left corner);
#: enemy_bullet{0..3}_active, enemy_bullet{0..3}_x, enemy_bullet{0..3}_y (top-left). Inactive bullets: 0, 0, 0.
STATE_NAMES = _state_names()


def _state_bounds() -> tuple[np.ndarray, np.ndarray]:
    """Bounds of each value of ``info["state"]``: the ship's clip range; an enemy's centre within a screen width
    beyond either edge (dead enemies keep moving with the formation, which turns at the screen's edges); bullets'
    corners on the screen (0 when inactive); flags 0/1; the formation's direction -1/+1."""
    n = N_ENEMIES
    low = [SHIP_X_MIN, *[0] * n, *[-WIDTH] * n, -1, 0, 0, 0, *[0] * n, *[0] * n, *[0] * n]
    high = [SHIP_X_MAX, *[1] * n, *[2 * WIDTH] * n, 1, 1, WIDTH, HEIGHT, *[1] * n, *[WIDTH] * n, *[HEIGHT] * n]
    return np.array(low, dtype=np.float32), np.array(high, dtype=np.float32)


STATE_LOW, STATE_HIGH = _state_bounds()


class HyperhotEnv(HumanRenderMixin, gym.Env[dict[str, np.ndarray], int]):
    """Shoot the four enemies before they hit you; observed one frame at a time as
    ``{"image": (80, 80), "sound": (4, 1047)}``.

    ``gym.make("Hyperhot-v0")`` adds the registered wrappers: ``TimeLimit(450)``, the truncation penalty
    (:class:`envs.common.TruncationPenalty`, -1) and ``FrameStackObservation(2)``, giving
    ``{"image": (2, 80, 80), "sound": (2, 4, 1047)}``.

    Rewards: +10 (terminated) when the last enemy dies, -1 (terminated) when an enemy bullet hits the ship,
    -1 (truncated, added by the registered penalty wrapper) at the time limit; 0 otherwise (also for killing
    one enemy). If the ship is hit in the step that kills the last enemy, the hit wins (-1). Variant:
    ``hit_reward`` (default 0) is added for every enemy killed, the last one included.
    ``info``: ``"state"`` (see :data:`STATE_NAMES`) on reset and step, ``"enemies_alive"`` after each step.

    :param render_mode: ``None``, ``"rgb_array"`` (420x320x3 uint8 colour view) or ``"human"`` (pygame).
    :param time_limit: optional extra limit inside the environment (older code's keyword); the registered
        limit is ``max_episode_steps``.
    :param hit_reward: reward per enemy killed (a denser-reward variant; 0 keeps the original game).
    """

    window_caption = "Hyperhot-v0"
    state_names = STATE_NAMES

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, time_limit: int | None = None, hit_reward: float = 0.0) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if not np.isfinite(hit_reward):
            raise ValueError(f"hit_reward must be a finite number, got {hit_reward!r}")
        self.render_mode = render_mode
        self.time_limit = None if time_limit is None else int(time_limit)
        self.hit_reward = float(hit_reward)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0.0, 1.0, shape=(IMG, IMG), dtype=np.float32),
                "sound": spaces.Box(-1.0, 1.0, shape=(4, N_SAMPLES), dtype=np.float32),
            }
        )
        self._canvas = np.zeros((2 * IMG, WIDTH), dtype=bool)
        # Game state (public so that tests and tools can set up situations).
        self.player_x = SHIP_X_START
        self.player_bullet: np.ndarray | None = None  # top-left (x, y)
        self.enemy_x = np.array(ENEMY_X_START, dtype=np.int64)
        self.enemy_alive = np.ones(N_ENEMIES, dtype=bool)
        self.enemy_dir = 1
        self.enemy_bullets = np.zeros((N_ENEMIES, 2), dtype=np.int64)  # top-left (x, y), one slot per enemy
        self.enemy_bullet_active = np.zeros(N_ENEMIES, dtype=bool)
        self.steps = 0
        self.sample_clock = 0  # index of the first audio sample of the current frame

    # --- sensors -------------------------------------------------------------------------------------------
    def _rect(self, canvas: np.ndarray, x: int, y: int, w: int, h: int) -> None:
        y0, y1 = max(y - CROP_TOP, 0), min(y + h - CROP_TOP, canvas.shape[0])
        x0, x1 = max(x, 0), min(x + w, WIDTH)
        if y0 < y1 and x0 < x1:
            canvas[y0:y1, x0:x1] = True

    def _draw(self, canvas: np.ndarray) -> None:
        """Binary drawing of rows CROP_TOP..CROP_TOP+canvas_height of the full-resolution frame."""
        canvas[:] = False
        self._rect(canvas, self.player_x, SHIP_TOP, SHIP_W, SHIP_H)
        if self.player_bullet is not None:
            self._rect(canvas, int(self.player_bullet[0]), int(self.player_bullet[1]), BULLET, BULLET)
        for i in np.flatnonzero(self.enemy_bullet_active):
            self._rect(canvas, int(self.enemy_bullets[i, 0]), int(self.enemy_bullets[i, 1]), BULLET, BULLET)
        cy = ENEMY_Y - ENEMY_R - CROP_TOP
        for x in self.enemy_x[self.enemy_alive]:
            x0 = int(x) - ENEMY_R
            lo, hi = max(x0, 0), min(x0 + 2 * ENEMY_R + 1, WIDTH)
            canvas[cy : cy + 2 * ENEMY_R + 1, lo:hi] |= _DISK[:, lo - x0 : hi - x0]

    def _image_frame(self) -> np.ndarray:
        c = self._canvas
        self._draw(c)
        # 2x2 max-pool (a pixel is lit if any of its 4 source pixels is); strided ORs are ~15x faster than .any
        return (c[0::2, 0::2] | c[1::2, 0::2] | c[0::2, 1::2] | c[1::2, 1::2]).astype(np.float32)

    def microphones(self) -> np.ndarray:
        """(4, 2) microphone positions: bottom-left, bottom-right corners, ship's left and right edges."""
        return np.array(
            [[0.0, HEIGHT], [WIDTH, HEIGHT], [self.player_x, MIC_Y], [self.player_x + SHIP_W, MIC_Y]]
        )

    def sources(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres (n, 2) of the sound sources present and their frequency-group indices (into ``FREQS``)."""
        pos, groups = [], []
        if self.player_bullet is not None:
            pos.append(self.player_bullet + BULLET / 2)
            groups.append(0)
        for i in np.flatnonzero(self.enemy_alive):
            pos.append((self.enemy_x[i], ENEMY_Y))
            groups.append(ENEMY_GROUP[i])
        for i in np.flatnonzero(self.enemy_bullet_active):
            pos.append(self.enemy_bullets[i] + BULLET / 2)
            groups.append(3)
        return np.asarray(pos, dtype=np.float64).reshape(-1, 2), np.asarray(groups, dtype=np.int64)

    def _sound_frame(self) -> np.ndarray:
        pos, groups = self.sources()
        return mix(self.microphones(), pos, groups, square_waves(FREQS, self.sample_clock))

    def _obs(self) -> dict[str, np.ndarray]:
        return {"image": self._image_frame(), "sound": self._sound_frame()}

    def true_state(self) -> np.ndarray:
        """The game state as 25 float32 values laid out as :data:`STATE_NAMES`."""
        bullet = (np.zeros(3) if self.player_bullet is None
                  else np.array([1.0, self.player_bullet[0], self.player_bullet[1]]))
        active = self.enemy_bullet_active
        eb = np.where(active[:, None], self.enemy_bullets, 0)
        return np.concatenate([[self.player_x], self.enemy_alive, self.enemy_x, [self.enemy_dir], bullet,
                               active, eb[:, 0], eb[:, 1]]).astype(np.float32)

    # --- Gymnasium API -------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new game; the enemies' initial direction is drawn from ``np_random``."""
        super().reset(seed=seed)
        self.player_x = SHIP_X_START
        self.player_bullet = None
        self.enemy_x = np.array(ENEMY_X_START, dtype=np.int64)
        self.enemy_alive[:] = True
        self.enemy_dir = int(self.np_random.choice([-1, 1]))
        self.enemy_bullet_active[:] = False
        self.steps = 0
        self.sample_clock = 0
        obs = self._obs()
        if self.render_mode == "human":
            self.render()
        return obs, {"state": self.true_state()}

    def _hits_ship(self, bx: int, by: int) -> bool:
        return bx < self.player_x + SHIP_W and self.player_x < bx + BULLET and by < SHIP_BOTTOM and SHIP_TOP < by + BULLET

    def step(self, action: int):
        """Move, shoot, advance bullets and enemies, resolve collisions; see the class docstring for rewards."""
        a = check_discrete_action(action, self.action_space)
        self.steps += 1
        # 1. ship
        self.player_x = int(np.clip(self.player_x + _MOVE[a] * SHIP_SPEED, SHIP_X_MIN, SHIP_X_MAX))
        # 2. bullets already in flight
        if self.player_bullet is not None:
            self.player_bullet[1] -= BULLET_SPEED
            if self.player_bullet[1] + BULLET <= 0:
                self.player_bullet = None
        self.enemy_bullets[self.enemy_bullet_active, 1] += BULLET_SPEED
        self.enemy_bullet_active &= self.enemy_bullets[:, 1] < HEIGHT
        # 3. new player bullet (at most one on screen), from the ship's top centre
        if _SHOOT[a] and self.player_bullet is None:
            self.player_bullet = np.array([self.player_x + SHIP_W // 2 - BULLET // 2, SHIP_TOP - BULLET], dtype=np.int64)
        # 4. enemies move together and reverse at the screen borders
        if self.enemy_alive.any():
            self.enemy_x += self.enemy_dir * ENEMY_SPEED
            alive_x = self.enemy_x[self.enemy_alive]
            if (self.enemy_dir < 0 and alive_x.min() - ENEMY_R <= 0) or (
                self.enemy_dir > 0 and alive_x.max() + ENEMY_R >= WIDTH
            ):
                self.enemy_dir = -self.enemy_dir
        # 5. every FIRE_EVERY steps, a random living enemy without a bullet in flight fires
        if self.steps % FIRE_EVERY == 0 and self.enemy_bullet_active.sum() < MAX_ENEMY_BULLETS:
            candidates = np.flatnonzero(self.enemy_alive & ~self.enemy_bullet_active)
            if len(candidates):
                i = int(candidates[self.np_random.integers(len(candidates))])
                self.enemy_bullets[i] = (self.enemy_x[i] - BULLET // 2, ENEMY_Y + ENEMY_R)
                self.enemy_bullet_active[i] = True
        # 6. collisions: player bullet vs enemies (circle / square), enemy bullets vs ship
        kills = 0
        if self.player_bullet is not None:
            bx, by = self.player_bullet
            nx = np.clip(self.enemy_x, bx, bx + BULLET)
            ny = np.clip(ENEMY_Y, by, by + BULLET)
            hit = self.enemy_alive & ((nx - self.enemy_x) ** 2 + (ny - ENEMY_Y) ** 2 < ENEMY_R**2)
            if hit.any():
                self.enemy_alive[np.flatnonzero(hit)[0]] = False
                self.player_bullet = None
                kills = 1
        ship_hit = any(self._hits_ship(*self.enemy_bullets[i]) for i in np.flatnonzero(self.enemy_bullet_active))
        # 7. outcome
        reward, terminated = 0.0, False
        if ship_hit:
            reward, terminated = -1.0, True
        elif not self.enemy_alive.any():
            reward, terminated = 10.0, True
        if kills and self.hit_reward:
            reward += self.hit_reward * kills
        truncated = not terminated and self.time_limit is not None and self.steps >= self.time_limit
        self.sample_clock += N_SAMPLES
        obs = self._obs()
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, {"enemies_alive": int(self.enemy_alive.sum()),
                                                    "state": self.true_state()}

    def render(self) -> np.ndarray | None:
        """Colour view of the full 210x160 screen, scaled 2x: (420, 320, 3) uint8."""
        if self.render_mode is None:
            gym.logger.warn('render() called without a render_mode; use render_mode="rgb_array" or "human"')
            return None
        frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        frame[SHIP_TOP:SHIP_BOTTOM, self.player_x : self.player_x + SHIP_W] = (80, 220, 80)
        colours = ((230, 120, 60), (230, 120, 60), (200, 90, 220), (200, 90, 220))
        for i in np.flatnonzero(self.enemy_alive):
            x0 = int(self.enemy_x[i]) - ENEMY_R
            lo, hi = max(x0, 0), min(x0 + 2 * ENEMY_R + 1, WIDTH)
            sub = frame[ENEMY_Y - ENEMY_R : ENEMY_Y + ENEMY_R + 1, lo:hi]
            sub[_DISK[:, lo - x0 : hi - x0]] = colours[i]
        if self.player_bullet is not None:
            x, y = (int(v) for v in self.player_bullet)
            frame[max(y, 0) : max(y + BULLET, 0), max(x, 0) : x + BULLET] = (255, 255, 255)
        for i in np.flatnonzero(self.enemy_bullet_active):
            x, y = (int(v) for v in self.enemy_bullets[i])
            frame[max(y, 0) : y + BULLET, max(x, 0) : x + BULLET] = (250, 60, 60)
        frame = frame.repeat(2, axis=0).repeat(2, axis=1)
        return self._present(frame)
