"""How much of each state variable do a sensor's raw observations hold? The ceiling of any model's latent.

The transfer predictor (mhvae_perception.evaluation.probes) reads the state off the MHVAE's core latent z_c. When
a variable is missing there, this tells whether it was in the sensor at all: the same MLP probe, fitted on the raw
observations of a collected dataset (flattened, uint8 scaled to [0, 1]) and, for a waveform sensor, on its
magnitude spectrum (log(1 + |rfft|) along the last axis: amplitudes of tones, independent of their phase)::

    python -m envs.collect --env-id Hyperhot-v0 --n-train 8000 --n-test 2000 --out runs/probe/hyperhot.npz
    python -m envs.sensor_probe runs/probe/hyperhot.npz --variables ship_x enemy0_x --spectrum sound

R² on the dataset's test split, per sensor (and representation) and variable.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from mhvae_perception.data.collect import read_collected
from mhvae_perception.evaluation.probes import MLPProbe, r2_scores


def raw_features(x: np.ndarray) -> np.ndarray:
    """Each observation flattened, uint8 intensities scaled to [0, 1]."""
    flat = x.reshape(len(x), -1)
    return flat.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)


def spectrum_features(x: np.ndarray) -> np.ndarray:
    """log(1 + |rfft|) along the last axis (time), flattened: how loud each frequency is, whatever its phase."""
    return np.log1p(np.abs(np.fft.rfft(x.astype(np.float64), axis=-1))).reshape(len(x), -1).astype(np.float32)


def sensor_ceiling(arrays: dict, state_names: list, sensors: list, variables: list, spectrum: list,
                   seed: int = 0) -> dict:
    """{representation: {variable: test R²}} of MLP probes on each sensor's raw observations (and spectra)."""
    columns = [state_names.index(v) for v in variables]
    y_train, y_test = arrays["train_state"][:, columns], arrays["test_state"][:, columns]
    out = {}
    for sensor in sensors:
        kinds = [("raw", raw_features)] + ([("spectrum", spectrum_features)] if sensor in spectrum else [])
        for kind, features in kinds:
            started = time.time()
            probe = MLPProbe(seed=seed).fit(features(arrays[f"train_{sensor}"]), y_train)
            r2 = r2_scores(probe.predict(features(arrays[f"test_{sensor}"])), y_test)
            out[f"{sensor} ({kind})"] = {v: float(s) for v, s in zip(variables, r2)}
            print(f"{sensor} ({kind}): " + ", ".join(f"{v} {s:.3f}" for v, s in zip(variables, r2))
                  + f" ({time.time() - started:.0f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("dataset", help="a dataset collected by envs.collect (with a true state)")
    p.add_argument("--variables", nargs="+", default=None, help="state variables (default: all)")
    p.add_argument("--sensors", nargs="+", default=None, help="default: every sensor of the dataset")
    p.add_argument("--spectrum", nargs="*", default=[], help="sensors (waveforms) also probed on their spectra")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the R² table as JSON here")
    args = p.parse_args(argv)
    try:
        arrays, meta = read_collected(args.dataset)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    names = meta.get("state_names")
    if "train_state" not in arrays or not names:
        raise SystemExit(f"error: {args.dataset} has no true state to probe for; collect it with a state source "
                         f"(python -m envs.collect --state-source ...)")
    sensors = args.sensors or [k[len("train_"):] for k in arrays if k.startswith("train_") and k != "train_state"]
    variables = args.variables or list(names)
    unknown = [f"variable {v!r}" for v in variables if v not in names] + \
              [f"sensor {s!r}" for s in sensors + list(args.spectrum) if f"train_{s}" not in arrays]
    if unknown:
        raise SystemExit(f"error: {args.dataset} has no {', '.join(unknown)}; it has the variables {names} and the "
                         f"sensors {[k[6:] for k in arrays if k.startswith('train_') and k != 'train_state']}")
    torch.set_num_threads(1)
    table = sensor_ceiling(arrays, list(names), sensors, variables, list(args.spectrum), args.seed)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump({"dataset": str(args.dataset), "env_id": meta.get("env_id"), "r2": table}, handle, indent=2)


if __name__ == "__main__":
    main()
