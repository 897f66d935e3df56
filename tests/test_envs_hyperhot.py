"""Hyperhot: game rules in constructed situations, image and sound sensors."""
import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.hyperhot import (
    BULLET,
    ENEMY_Y,
    N_SAMPLES,
    SHIP_TOP,
    HyperhotEnv,
    mix,
    square_waves,
)

NOOP, LEFT, RIGHT, SHOOT, SHOOT_LEFT, SHOOT_RIGHT = range(6)
# the specification's constants, written out so that a changed module constant fails the tests
DECAY = 0.025
SAMPLE_RATE = 44_100
FREQS = np.array([466.16, 261.63, 329.63, 392.00])  # player bullet, enemies 0-1, enemies 2-3, enemy bullets


def make(seed: int = 0, **kwargs) -> HyperhotEnv:
    env = HyperhotEnv(**kwargs)
    env.reset(seed=seed)
    return env


def test_reset_state():
    env = make()
    np.testing.assert_array_equal(env.enemy_x, [32, 64, 96, 128])
    assert env.enemy_alive.all() and env.player_bullet is None and not env.enemy_bullet_active.any()
    assert env.player_x == 68 and env.enemy_dir in (-1, 1)
    dirs = {make(seed).enemy_dir for seed in range(20)}
    assert dirs == {-1, 1}  # the initial direction is random


def test_ship_moves_5px_and_stays_in_range():
    env = make()
    env.step(LEFT)
    assert env.player_x == 63
    env.step(RIGHT)
    env.step(RIGHT)
    assert env.player_x == 73
    for _ in range(40):
        env.step(LEFT)
        env.enemy_bullet_active[:] = False  # keep the ship alive
    assert env.player_x == 10
    for _ in range(40):
        env.step(RIGHT)
        env.enemy_bullet_active[:] = False
    assert env.player_x == 130


def test_player_bullet_single_and_moves_up():
    env = make()
    env.step(SHOOT)
    assert env.player_bullet is not None
    x, y = env.player_bullet
    assert x == env.player_x + 12 - 3 and y == SHIP_TOP - BULLET
    env.step(SHOOT)  # a second shot is ignored while one is on screen
    np.testing.assert_array_equal(env.player_bullet, [x, y - 6])


def test_enemies_move_together_and_reverse_at_border():
    env = make()
    env.enemy_dir = 1
    env.enemy_x[:] = [23, 55, 87, 150]
    env.step(NOOP)
    np.testing.assert_array_equal(env.enemy_x, [24, 56, 88, 151])  # 151 + 8 = 159 < 160
    env.step(NOOP)
    np.testing.assert_array_equal(env.enemy_x, [25, 57, 89, 152])  # touches the border: reverse
    assert env.enemy_dir == -1
    env.step(NOOP)
    np.testing.assert_array_equal(env.enemy_x, [24, 56, 88, 151])


def test_enemy_fire_schedule_and_limit():
    env = make(seed=2)
    for t in range(1, 6):
        env.step(NOOP)
        assert not env.enemy_bullet_active.any()
    env.step(NOOP)  # step 6
    assert env.enemy_bullet_active.sum() == 1
    i = int(np.flatnonzero(env.enemy_bullet_active)[0])
    np.testing.assert_array_equal(env.enemy_bullets[i], [env.enemy_x[i] - 3, ENEMY_Y + 8])
    # over a long game never more than 4 at once, and only enemies without a bullet in flight fire
    env = make(seed=3)
    counts = []
    for _ in range(400):
        before = env.enemy_bullet_active.copy()
        _, _, term, trunc, _ = env.step(NOOP)
        counts.append(env.enemy_bullet_active.sum())
        new = env.enemy_bullet_active & ~before
        assert new.sum() <= 1
        if term or trunc:
            env.reset()
    assert max(counts) <= 4 and max(counts) >= 2


def test_killing_one_enemy_gives_zero_and_continues():
    env = make()
    env.enemy_dir = 1
    x = int(env.enemy_x[1])
    env.player_bullet = np.array([x - 3, ENEMY_Y + 8 + 2])  # will move up to y = 44: overlaps enemy 1
    _, r, term, trunc, info = env.step(NOOP)
    assert r == 0.0 and not term and not trunc
    np.testing.assert_array_equal(env.enemy_alive, [True, False, True, True])
    assert env.player_bullet is None and info["enemies_alive"] == 3


def test_bullet_passing_beside_enemy_misses():
    env = make()
    env.enemy_dir = 1
    x = int(env.enemy_x[1]) + 1  # enemy 1 after the move
    env.player_bullet = np.array([x + 8 + 1, ENEMY_Y + 8 + 2])  # left edge 1 px right of the circle
    env.step(NOOP)
    assert env.enemy_alive.all() and env.player_bullet is not None


def test_win_gives_plus_10_and_terminates():
    env = make()
    env.enemy_alive[:] = [False, False, True, False]
    env.enemy_dir = -1
    x = int(env.enemy_x[2])
    env.player_bullet = np.array([x - 3, ENEMY_Y + 8 + 2])
    _, r, term, trunc, _ = env.step(NOOP)
    assert (r, term, trunc) == (10.0, True, False)


def test_hit_gives_minus_1_and_terminates():
    env = make()
    env.enemy_bullets[0] = (env.player_x + 9, SHIP_TOP - BULLET - 3)  # lands on the ship after moving 6 px
    env.enemy_bullet_active[0] = True
    _, r, term, trunc, _ = env.step(NOOP)
    assert (r, term, trunc) == (-1.0, True, False)


def test_dodging_a_bullet():
    outcomes = {}
    for action in (NOOP, LEFT):
        env = make()
        # bullet columns 88..94 overlap the ship (68..92) unless it moves 5 px left (63..87)
        env.enemy_bullets[0] = (env.player_x + 20, SHIP_TOP - BULLET - 3)
        env.enemy_bullet_active[0] = True
        outcomes[action] = env.step(action)[1:3]
    assert outcomes == {NOOP: (-1.0, True), LEFT: (0.0, False)}


def test_hit_takes_precedence_over_win():
    env = make()
    env.enemy_alive[:] = [True, False, False, False]
    env.enemy_dir = 1
    env.player_bullet = np.array([int(env.enemy_x[0]) - 3, ENEMY_Y + 8 + 2])
    env.enemy_bullets[1] = (env.player_x, SHIP_TOP - 3)
    env.enemy_bullet_active[1] = True
    _, r, term, _, _ = env.step(NOOP)
    assert not env.enemy_alive.any() and (r, term) == (-1.0, True)


def test_time_limit_truncates_with_minus_1():
    env = gym.make("Hyperhot-v0", time_limit=5)
    env.reset(seed=0)
    out = [env.step(NOOP)[1:4] for _ in range(5)]
    assert out == [(0.0, False, False)] * 4 + [(-1.0, False, True)]
    # the same through the registration's limit, which is 450 by default
    env = gym.make("Hyperhot-v0", max_episode_steps=5)
    env.reset(seed=0)
    assert [env.step(NOOP)[1:4] for _ in range(5)] == out
    assert gym.spec("Hyperhot-v0").max_episode_steps == 450
    assert HyperhotEnv().time_limit is None  # the class itself has no limit (nor the penalty)


# --- image ----------------------------------------------------------------------------------------------
def test_image_downsampled_and_cropped():
    env = make()
    env.enemy_bullet_active[:] = False
    env.player_bullet = None
    img = env._image_frame()
    # ship: full-res rows 180..188, cols 68..92 -> half-res rows (180-30)/2 = 75..79, cols 34..46
    assert img[75:79, 34:46].all() and not img[79:, :].any()
    assert not img[75:79, :34].any() and not img[75:79, 46:].any()
    # enemy 0 centre (32, 40) -> half-res (row 5, col 16); the disk spans rows 1..9
    assert img[5, 16] == 1.0 and img[5, 12] == 1.0 and img[5, 8] == 0.0
    assert img[1:10, :].sum() == pytest.approx(4 * img[1:10, 8:25].sum())  # four identical enemy blobs
    assert 4 * np.pi * 8**2 / 4 * 0.8 < img[1:10].sum() < 4 * np.pi * 9**2 / 4 * 1.2


# --- sound ----------------------------------------------------------------------------------------------
def _crossings(signal: np.ndarray) -> np.ndarray:
    s = np.sign(signal)
    return np.flatnonzero(s[1:] != s[:-1])


@pytest.mark.parametrize("freq", [261.63, 329.63, 392.00, 466.16])
def test_square_wave_frequency_and_phase_continuity(freq):
    w = np.concatenate([square_waves(np.array([freq]), k * N_SAMPLES)[0] for k in range(3)])
    assert set(np.unique(w)) == {-1.0, 1.0}
    c = _crossings(w)
    half_period = SAMPLE_RATE / (2 * freq)
    gaps = np.diff(c)
    assert np.all(np.abs(gaps - half_period) <= 1)  # also across the two frame boundaries
    slope = np.polyfit(np.arange(len(c)), c, 1)[0]
    assert slope == pytest.approx(half_period, rel=2e-3)
    # FFT peak at the fundamental
    spec = np.abs(np.fft.rfft(w, n=1 << 16))
    f_peak = np.argmax(spec) * SAMPLE_RATE / (1 << 16)
    assert f_peak == pytest.approx(freq, abs=2.0)


def test_mix_single_source_amplitude_and_clip():
    waves = square_waves(FREQS, 0)
    mics = np.array([[0.0, 210.0], [30.0, 40.0]])
    src = np.array([[30.0, 50.0]])
    out = mix(mics, src, np.array([1]), waves)
    d0 = np.hypot(30.0, 160.0)
    np.testing.assert_allclose(out[0], np.exp(-DECAY * d0) * waves[1], rtol=1e-6)
    np.testing.assert_allclose(out[1], np.exp(-DECAY * 10.0) * waves[1], rtol=1e-6)
    # two coincident in-phase sources at distance 0 sum to 2 -> clipped to ±1
    loud = mix(mics[1:], np.array([[30.0, 40.0]] * 2), np.array([1, 1]), waves)
    assert np.abs(loud).max() == 1.0
    assert mix(mics, np.zeros((0, 2)), np.zeros(0, dtype=int), waves).shape == (2, N_SAMPLES)


@pytest.mark.parametrize("enemy, freq", [(0, 261.63), (1, 261.63), (2, 329.63), (3, 329.63)])
def test_env_sound_single_enemy(enemy, freq):
    env = make()
    env.enemy_alive[:] = False
    env.enemy_alive[enemy] = True
    prev, *_ = env.step(NOOP)
    obs, *_ = env.step(NOOP)  # both frames now hold the single source
    ex = env.enemy_x[enemy]
    mics = env.microphones()
    np.testing.assert_array_equal(mics[:2], [[0, 210], [160, 210]])
    np.testing.assert_array_equal(mics[2:, 0], [env.player_x, env.player_x + 24])
    for m in range(4):
        d = np.hypot(ex - mics[m, 0], ENEMY_Y - mics[m, 1])
        sig = obs["sound"][m]
        np.testing.assert_allclose(np.abs(sig), np.exp(-DECAY * d), rtol=1e-6)
        gaps = np.diff(_crossings(np.concatenate([prev["sound"][m], sig])))  # continuous across frames
        assert np.all(np.abs(gaps - SAMPLE_RATE / (2 * freq)) <= 1)


def test_env_sound_bullets():
    env = make()
    env.enemy_alive[:] = False  # (the game is won, but the observation is still produced)
    env.player_bullet = np.array([40, 100])
    obs, *_ = env.step(NOOP)
    centre = env.player_bullet + BULLET / 2  # after moving 6 px up
    d = np.hypot(*(centre - [0.0, 210.0]))
    sig = obs["sound"][0]
    np.testing.assert_allclose(np.abs(sig), np.exp(-DECAY * d), rtol=1e-6)
    assert np.mean(np.diff(_crossings(sig))) == pytest.approx(SAMPLE_RATE / (2 * 466.16), rel=0.02)

    env = make()
    env.enemy_alive[:] = False
    env.enemy_bullets[2] = (100, 60)
    env.enemy_bullet_active[2] = True
    obs, *_ = env.step(NOOP)
    d = np.hypot(*(env.enemy_bullets[2] + BULLET / 2 - [160.0, 210.0]))
    sig = obs["sound"][1]
    np.testing.assert_allclose(np.abs(sig), np.exp(-DECAY * d), rtol=1e-6)
    assert np.mean(np.diff(_crossings(sig))) == pytest.approx(SAMPLE_RATE / (2 * 392.0), rel=0.02)


def test_env_sound_is_sum_of_sources():
    env = make(seed=4)
    for _ in range(13):
        obs, *_ = env.step(SHOOT)
    pos, groups = env.sources()
    assert len(pos) >= 6  # 4 enemies + player bullet + at least one enemy bullet
    d = np.sqrt(((env.microphones()[:, None] - pos[None]) ** 2).sum(-1))
    waves = square_waves(FREQS, 13 * N_SAMPLES)
    expected = np.clip(np.exp(-DECAY * d) @ waves[groups], -1, 1)
    np.testing.assert_allclose(obs["sound"], expected, rtol=1e-5, atol=1e-6)


def test_square_wave_exact_at_half_cycle_boundaries():
    from fractions import Fraction

    # 392 Hz at 44.1 kHz: every 225 samples lands exactly on a half cycle, where float phases are ambiguous
    for freq, centi in zip(FREQS, (46616, 26163, 32963, 39200)):
        for s in (0, 225, 450, 675, 44_100, 123_456, 10**9 + 7):
            phase = Fraction(centi * s, 100 * SAMPLE_RATE) % 1
            assert square_waves(np.array([freq]), s, n=1)[0, 0] == (1.0 if phase < Fraction(1, 2) else -1.0)
    # no drift: after 10^9 samples the wave still equals the one computed from scratch for that offset
    long = square_waves(FREQS, 10**9)
    assert np.array_equal(long[:, 1:], square_waves(FREQS, 10**9 + 1, n=N_SAMPLES - 1))


def _kill_one(env: HyperhotEnv) -> tuple[float, bool]:
    """Put the player's bullet just below enemy 0 and step once: it hits."""
    env.player_bullet = np.array([int(env.enemy_x[0]) - 3, ENEMY_Y + 8 + 2])
    _, r, term, _, _ = env.step(NOOP)
    return r, term


@pytest.mark.parametrize("hit_reward", [0.0, 0.25])
def test_hit_reward_variant(hit_reward):
    """Off by default (0 for one kill); with hit_reward every kill pays it, the last one on top of +10."""
    env = make(hit_reward=hit_reward) if hit_reward else make()
    r, term = _kill_one(env)
    assert not env.enemy_alive[0] and not term and r == hit_reward
    env.enemy_alive[1:] = False
    env.enemy_alive[0] = True
    r, term = _kill_one(env)
    assert term and r == 10.0 + hit_reward
    env = gym.make("Hyperhot-v0", hit_reward=hit_reward)
    env.reset(seed=0)
    env.unwrapped.player_bullet = np.array([int(env.unwrapped.enemy_x[0]) - 3, ENEMY_Y + 8 + 2])
    assert env.step(NOOP)[1] == hit_reward
    with pytest.raises(ValueError, match="hit_reward must be a finite number"):
        HyperhotEnv(hit_reward=float("nan"))


def test_truncation_penalty_is_added_after_the_time_limit():
    from envs.common import TruncationPenalty

    env = TruncationPenalty(gym.wrappers.TimeLimit(HyperhotEnv(hit_reward=0.5), 3), penalty=-1.0)
    env.reset(seed=0)
    rewards = []
    for _ in range(3):
        env.unwrapped.enemy_bullet_active[:] = False  # no hit
        rewards.append(env.step(NOOP)[1])
    assert rewards == [0.0, 0.0, -1.0]


def test_state_env_observes_the_rescaled_true_state_with_the_games_reward():
    """HyperhotState-v0 (the true-state reference): each observation is info["state"] rescaled into [0, 1] by the
    declared bounds, stacked like the sensors; the game, its reward variant and its time limit are Hyperhot's."""
    from gymnasium.utils.env_checker import check_env

    from envs.hyperhot import STATE_HIGH, STATE_LOW

    check_env(gym.make("HyperhotState-v0"), skip_render_check=True)
    env = gym.make("HyperhotState-v0", hit_reward=1.0)
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, shape=(2, 25), dtype=np.float32)
    obs, info = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for t in range(200):  # random play: bullets, kills and dead enemies drifting with the formation
        expected = (info["state"] - STATE_LOW) / (STATE_HIGH - STATE_LOW)
        np.testing.assert_allclose(obs[-1], expected, atol=1e-6)
        assert obs in env.observation_space
        obs, reward, term, trunc, info = env.step(int(rng.integers(6)))
        if term or trunc:
            obs, info = env.reset()
    assert env.spec.max_episode_steps == 450
    game = env.unwrapped  # the reward variant reached the game: a kill pays hit_reward
    game.player_bullet = np.array([int(game.enemy_x[0]) - 3, ENEMY_Y + 8 + 2])
    game.enemy_alive[0] = True
    assert env.step(NOOP)[1] == 1.0


def test_info_state_observation_refuses_a_value_outside_its_bounds():
    from envs.common import InfoStateObservation
    from envs.hyperhot import STATE_HIGH, STATE_LOW

    narrow = STATE_HIGH.copy()
    narrow[0] = 11.0  # the ship starts at x = 68
    with pytest.raises(ValueError, match=r"info\['state'\]\[0\] = 68.0 is outside \[10.0, 11.0\]; widen"):
        InfoStateObservation(HyperhotEnv(), STATE_LOW, narrow).reset(seed=0)
    with pytest.raises(KeyError, match="no 'position'"):
        InfoStateObservation(HyperhotEnv(), STATE_LOW, STATE_HIGH, key="position").reset(seed=0)
    with pytest.raises(ValueError, match="high > low"):
        InfoStateObservation(HyperhotEnv(), STATE_HIGH, STATE_LOW)
