"""envs/sensor_probe.py: probes on a sensor's raw observations and on its magnitude spectrum."""
from __future__ import annotations

import json

import numpy as np
import pytest

from envs import sensor_probe


def tone_dataset(n_train=600, n_test=200, seed=0):
    """A 'sound' whose loudness is the variable (a tone of random phase), a 'gauge' that shows it directly and a
    'noise' that says nothing about it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        loud = rng.uniform(0.1, 1.0, n)
        phase = rng.uniform(0, 2 * np.pi, n)
        t = np.arange(64)
        arrays[f"{split}_sound"] = (loud[:, None] * np.sin(2 * np.pi * 8 * t / 64 + phase[:, None]))[:, None, :]
        arrays[f"{split}_gauge"] = np.round(loud * 255).astype(np.uint8)[:, None]
        arrays[f"{split}_noise"] = rng.normal(size=(n, 8))
        arrays[f"{split}_state"] = loud[:, None].astype(np.float32)
    return arrays


def test_what_a_sensor_holds_is_found_and_what_it_does_not_is_not():
    table = sensor_probe.sensor_ceiling(tone_dataset(), ["loudness"], ["sound", "gauge", "noise"], ["loudness"],
                                        ["sound"])
    assert set(table) == {"sound (raw)", "sound (spectrum)", "gauge (raw)", "noise (raw)"}
    assert table["gauge (raw)"]["loudness"] > 0.99 and table["sound (spectrum)"]["loudness"] > 0.95
    assert table["noise (raw)"]["loudness"] < 0.2  # held-out R²: an overfitted probe scores nothing


def test_the_spectrum_is_the_magnitude_of_the_fft():
    wave = np.zeros((1, 1, 16))
    wave[0, 0, ::4] = 1.0  # an impulse train: energy at bins 0, 4, 8
    spec = sensor_probe.spectrum_features(wave)[0]
    assert spec.shape == (9,) and np.allclose(np.expm1(spec), np.abs(np.fft.rfft(wave[0, 0])), atol=1e-5)


def test_the_command_refuses_unknown_names_and_files_without_a_state(tmp_path, capsys):
    arrays = tone_dataset(40, 20)
    path = tmp_path / "d.npz"
    np.savez(path, metadata=json.dumps({"state_names": ["loudness"], "env_id": "Tone-v0"}), **arrays)
    with pytest.raises(SystemExit, match=r"has no variable 'pitch', sensor 'lidar'.*variables \['loudness'\]"):
        sensor_probe.main([str(path), "--variables", "pitch", "--sensors", "lidar"])
    no_state = tmp_path / "n.npz"
    np.savez(no_state, metadata=json.dumps({}), train_sound=arrays["train_sound"], test_sound=arrays["test_sound"])
    with pytest.raises(SystemExit, match="no true state"):
        sensor_probe.main([str(no_state)])
    out = tmp_path / "r.json"
    sensor_probe.main([str(path), "--sensors", "gauge", "--out", str(out)])
    assert json.loads(out.read_text())["r2"]["gauge (raw)"]["loudness"] > 0.9
