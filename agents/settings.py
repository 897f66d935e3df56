"""Settings of the agent scripts: which settings define a trained agent, and how a folder's recorded ones are
compared with a new run's.

``changed_settings(recorded, now)`` lists the settings that differ between an agent folder's record (its
``agent.json`` or its training state) and a new training; :func:`agents.common.train_agent` refuses such a
folder (another folder is another agent) and continues one only when ``timesteps`` is raised.
"""
from __future__ import annotations

import json
from numbers import Real
from typing import Any, Mapping


class SettingsError(ValueError):
    """A setting has a value that is not allowed, or does not match the agent folder it would train into (the
    message names the setting, the value and the fix)."""


#: the settings that define a trained agent (``timesteps`` aside: raising it continues the agent)
AGENT_KEYS = ("env", "algo", "state", "train_modalities", "seed", "latent_stack", "train_failure_p", "train_sample",
              "hyperparameters", "mhvae")
#: settings added after agents were already trained: a record without them had these values
LEGACY_DEFAULTS = {"train_failure_p": None, "train_sample": False}
#: how to train into another folder, named in every refusal
OTHER_FOLDER = "train into another folder (run_dir=... for agents/train.py, out_dir=... for agents/transfer.py)"


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values, with 1 == 1.0 (a setting typed as 1e-3 or 0.001 is the same setting)."""
    if isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def changed_settings(recorded: Mapping[str, Any], now: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{name: (recorded, now)}`` for the :data:`AGENT_KEYS` that differ. The MHVAE is compared by its
    checkpoint's SHA-256 (the same file moved elsewhere is the same model); hyper-parameters one by one
    (``hyperparameters.gamma``). A key missing from an old record is compared with its legacy default."""
    changed: dict[str, tuple[Any, Any]] = {}
    for key in AGENT_KEYS:
        if key not in recorded and key not in LEGACY_DEFAULTS:
            continue
        before, after = _plain(recorded.get(key, LEGACY_DEFAULTS.get(key))), _plain(now.get(key))
        if key == "mhvae":
            before = (before or {}).get("sha256")
            after = (after or {}).get("sha256")
            key = "mhvae (checkpoint SHA-256)"
        if key == "hyperparameters" and isinstance(before, dict) and isinstance(after, dict):
            for name in sorted(set(before) | set(after)):
                if not _same(before.get(name), after.get(name)):
                    changed[f"hyperparameters.{name}"] = (before.get(name), after.get(name))
        elif not _same(before, after):
            changed[key] = (before, after)
    return changed


def describe_changes(changed: Mapping[str, tuple[Any, Any]]) -> str:
    """``seed: 0 -> 1, hyperparameters.gamma: 0.99 -> 0.9`` (SHA-256 digests shortened)."""
    def show(value: Any) -> str:
        text = repr(value)
        return text[:14] + "...'" if isinstance(value, str) and len(value) == 64 else text

    return ", ".join(f"{k}: {show(b)} -> {show(a)}" for k, (b, a) in changed.items())
