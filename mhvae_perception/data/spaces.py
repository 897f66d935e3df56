"""Observation spaces as data: a JSON description of a ``Dict`` of sensors (stored in every dataset file), the
check that a space is one this project can learn from, and how each sensor is stored and named in a file."""
from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np
from gymnasium import spaces

_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def space_to_json(space: spaces.Space) -> dict:
    """A JSON description of a ``Dict`` of ``Box`` / ``Discrete`` / ``MultiBinary`` spaces (bounds included)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_json(v) for k, v in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        low, high = np.asarray(space.low), np.asarray(space.high)
        same = bool(np.all(low == low.flat[0]) and np.all(high == high.flat[0]))
        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": _json_number(low.flat[0]) if same else low.tolist(),
                "high": _json_number(high.flat[0]) if same else high.tolist()}
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "shape": list(space.shape)}
    raise TypeError(f"cannot describe {space}: only Dict, Box, Discrete and MultiBinary spaces are supported")


def space_from_json(desc: Mapping[str, Any]) -> spaces.Space:
    """The space :func:`space_to_json` described."""
    kind = desc.get("type")
    if kind == "Dict":
        return spaces.Dict({k: space_from_json(v) for k, v in desc["spaces"].items()})
    if kind == "Box":
        dtype = np.dtype(desc["dtype"])
        shape = tuple(desc["shape"])
        low = np.broadcast_to(np.asarray(_float(desc["low"]), dtype=np.float64), shape)
        high = np.broadcast_to(np.asarray(_float(desc["high"]), dtype=np.float64), shape)
        return spaces.Box(low.astype(dtype), high.astype(dtype), shape=shape, dtype=dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(desc["n"]), start=int(desc.get("start", 0)))
    if kind == "MultiBinary":
        shape = [int(v) for v in desc["shape"]]
        return spaces.MultiBinary(shape[0] if len(shape) == 1 else shape)
    raise ValueError(f"unknown space description type {kind!r}")


def _json_number(value: Any) -> Any:
    value = float(value)
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _float(value: Any) -> Any:
    if isinstance(value, str):
        return float(value)
    if isinstance(value, list):
        return [_float(v) for v in value]
    return value


def check_observation_space(space: spaces.Space) -> None:
    """Raise ``ValueError`` unless ``space`` is a ``Dict`` of Box / Discrete / MultiBinary with file-safe keys."""
    if not isinstance(space, spaces.Dict):
        raise ValueError(
            f"the observation space must be a gymnasium.spaces.Dict of sensors, got {space}; wrap the environment "
            f"so that it returns a dict, e.g. gymnasium.wrappers.AddRenderObservation(env, render_only=False) "
            f"(keys 'state' and 'pixels') or a TransformObservation")
    for key, sub in space.spaces.items():
        if not isinstance(key, str) or not _KEY_RE.match(key) or key == STATE_KEY_IF_TAKEN:
            raise ValueError(f"observation key {key!r}: use letters, digits, '_', '.', '-' only (and not "
                             f"{STATE_KEY_IF_TAKEN!r}, where the true state goes when a sensor is called 'state')")
        if not isinstance(sub, (spaces.Box, spaces.Discrete, spaces.MultiBinary)):
            raise ValueError(f"observation {key!r} is {sub}; supported sensors are Box, Discrete and MultiBinary "
                             f"(flatten or split other spaces with a wrapper)")


def is_binary_box(space: spaces.Space) -> bool:
    """A float Box whose bounds lie in [0, 1]: its values may all be 0/1 and then travel as uint8."""
    return (isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating)
            and bool(np.all(space.low >= 0)) and bool(np.all(space.high <= 1)))


def storage_dtype(space: spaces.Space) -> np.dtype:
    """The dtype a sensor is stored in: uint8 for uint8 Boxes, MultiBinary and (tentatively) float Boxes in
    [0, 1] (kept only if every value is exactly 0 or 1, else float32); int64 for Discrete; else the Box's dtype."""
    if isinstance(space, spaces.Discrete):
        return np.dtype(np.int64)
    if isinstance(space, spaces.MultiBinary) or is_binary_box(space):
        return np.dtype(np.uint8)
    return np.dtype(space.dtype)


def array_key(split: str, key: str) -> str:
    """The .npz key of a sensor (``train_image``) or of the true state (``train_state``)."""
    return f"{split}_{key}"


STATE_KEY = "state"
#: where the true state goes when a sensor itself is called "state"
STATE_KEY_IF_TAKEN = "_true_state"


def state_key(space: spaces.Dict) -> str:
    return STATE_KEY_IF_TAKEN if STATE_KEY in space.spaces else STATE_KEY
