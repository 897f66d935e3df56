"""Settings of the agent scripts: their checks, which settings define a trained agent, and how a folder's
recorded ones are compared with a new run's.

``check_train_settings`` / ``check_evaluate_settings`` / ``check_transfer_settings`` check every setting of
agents/train.py, agents/evaluate.py and agents/transfer.py before any data, model or folder is touched, raising
:class:`SettingsError` that names the setting, its value and what is allowed. The scripts call them from a sacred
config hook, so a refused setting leaves no observer folder (``runs/sacred/<id>``) behind either.

``changed_settings(recorded, now)`` lists the settings that differ between an agent folder's record (its
``agent.json`` or its training state) and a new training; :func:`agents.common.train_agent` refuses such a
folder (another folder is another agent) and continues one only when ``timesteps`` is raised.
"""
from __future__ import annotations

import json
import math
import os
from numbers import Integral, Real
from typing import Any, Callable, Mapping, Sequence

from agents.errors import SettingsError  # noqa: F401  (raised here; agents.settings.SettingsError for callers)

#: the settings that define a trained agent (``timesteps`` aside: raising it continues the agent)
AGENT_KEYS = ("env", "algo", "state", "train_modalities", "seed", "latent_stack", "train_failure_p", "train_sample",
              "hyperparameters", "mhvae", "episode_steps")
#: settings added after agents were already trained: a record without them had these values (a record without
#: ``episode_steps`` had its env's registered time limit; it is not compared)
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


# ------------------------------------------------------------------------------------------------ checks
_MISSING = object()
#: seeds derive others by adding offsets (evaluation env +10_000, random reference +200_000): all stay < 2**32
MAX_SEED = 2 ** 31 - 1
#: transfer.py derives evaluation seeds 300_000 + 1000 * seed
MAX_TRANSFER_SEED = (2 ** 32 - 1 - 300_000) // 1000
SAC_ONLY = ("ent_coef", "target_entropy", "use_sde", "sde_sample_freq", "use_sde_at_warmup")
DQN_ONLY = ("exploration_fraction", "exploration_initial_eps", "exploration_final_eps", "max_grad_norm")


def _fail(name: str, value: Any, allowed: str) -> SettingsError:
    return SettingsError(f"setting {name}={value!r} is not allowed: {name} must be {allowed}")


def _get(cfg: Mapping[str, Any], name: str) -> Any:
    """The value of ``name``, or _MISSING (not given: the function's default applies and is not checked)."""
    return cfg.get(name, _MISSING) if isinstance(cfg, Mapping) else _MISSING


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None, optional: bool = False) -> None:
    if value is _MISSING or (value is None and optional):
        return
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        hint = " (write 100000, not 1e5)" if isinstance(value, float) and value.is_integer() else ""
        span = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
        raise _fail(name, value, ("None or " if optional else "") + span + hint)


def check_number(name: str, value: Any, low: float, high: float, low_open: bool = False,
                 high_open: bool = False, optional: bool = False) -> None:
    if value is _MISSING or (value is None and optional):
        return
    ok = _is_number(value) and (value > low if low_open else value >= low)
    ok = ok and (value < high if high_open else value <= high)
    if not ok:
        span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _fail(name, value, ("None or " if optional else "") + f"a finite number in {span}")


def check_bool(name: str, value: Any) -> None:
    if value is not _MISSING and not isinstance(value, bool):
        raise _fail(name, value, "True or False")


def check_text(name: str, value: Any, optional: bool = False) -> None:
    if value is _MISSING or (value is None and optional):
        return
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, value, ("None or " if optional else "") + "a non-empty string (a path)")


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value is not _MISSING and value not in allowed:
        raise _fail(name, value, f"one of {tuple(allowed)}")


def check_device(value: Any) -> None:
    if value is _MISSING:
        return
    from mhvae_perception.models.devices import resolve_device

    try:
        resolve_device(value)
    except ValueError as err:
        raise SettingsError(f"setting device={value!r}: {err}") from None


def check_modalities(name: str, value: Any, sensors: Sequence[str], optional: bool = False) -> tuple[str, ...] | None:
    """A sensor of the environment (``sensors``), ``both`` / ``all`` (every sensor), ``a,b`` or a list of sensor
    names: the parsed tuple."""
    from agents.config import ALL_SENSORS, parse_modalities

    if value is _MISSING or (value is None and optional):
        return None
    known = tuple(sensors)
    allowed = (f"one of {(*known, *ALL_SENSORS)} (both / all: every sensor), a comma-separated list or a list of "
               f"the sensors {known}")
    if not isinstance(value, (str, list, tuple)):
        raise _fail(name, value, allowed)
    mods = parse_modalities(value, known)
    if not mods or any(m not in known for m in mods) or len(set(mods)) != len(mods):
        raise _fail(name, value, allowed + " (each once)")
    return mods


def check_failure_p(name: str, value: Any, sensors: Sequence[str] | None, optional: bool = True) -> None:
    """A per-step, per-sensor failure probability in [0, 1], or ``{sensor: p}`` over ``sensors``."""
    if value is _MISSING or (value is None and optional):
        return
    allowed = f"None, a probability in [0, 1] or a {{sensor: probability}} dict over the sensors {tuple(sensors or ())}"
    if isinstance(value, Mapping):
        if not value or any(k not in (sensors or ()) or not _is_number(v) or not 0 <= v <= 1
                            for k, v in value.items()):
            raise _fail(name, dict(value), allowed)
    elif not _is_number(value) or not 0 <= value <= 1:
        raise _fail(name, value, allowed)


def check_mhvae(name: str, value: Any, optional: bool = False) -> None:
    """A checkpoint file or a shipped model's name (a loaded model passes: train_agent accepts one)."""
    if value is _MISSING or (value is None and optional):
        return
    if isinstance(value, (str, os.PathLike)) and str(value).strip():
        from mhvae_perception.hub import shipped_or_path

        if shipped_or_path(value).is_file():
            return
        raise SettingsError(f"setting {name}={str(value)!r}: no such checkpoint file or shipped model (python -m "
                            f"mhvae_perception.hub list shows the shipped ones)")
    from mhvae_perception.models.base import MultimodalVAE

    if not isinstance(value, MultimodalVAE):
        raise _fail(name, value, "a checkpoint path or a shipped model's name" + (" (or None)" if optional else ""))


def check_mhvae_sensors(name: str, value: Any, env, needed: Sequence[str]) -> None:
    """The MHVAE ``value`` (a checkpoint, a shipped name or a model) encodes every sensor in ``needed`` (the
    sensors the agents will observe it from) and no sensor ``env`` lacks; its names are read from the
    checkpoint's description, no model is built. A checkpoint of another environment is refused with the fix."""
    from mhvae_perception.hub import CheckpointError, shipped_or_path
    from mhvae_perception.hub.checkpoints import read_description
    from mhvae_perception.models.base import MultimodalVAE

    if value in (None, _MISSING):
        return
    if isinstance(value, MultimodalVAE):
        names = tuple(value.modality_names)
    else:
        try:
            names = tuple(m["name"] for m in read_description(shipped_or_path(value))["modalities"])
        except (CheckpointError, KeyError, TypeError) as err:
            raise SettingsError(f"setting {name}={str(value)!r}: {err}") from None
    missing = [s for s in needed if s not in names]  # the agents would observe them
    foreign = [n for n in names if n not in env.sensors]  # the observation wrapper needs each of the model's
    if missing or foreign:
        raise SettingsError(f"setting {name}={str(value)!r}: the model encodes the sensors {names} and env="
                            f"{env.name!r} has {tuple(env.sensors)}"
                            + (f"; {missing} would be observed but are not encoded" if missing else "")
                            + (f"; {foreign} are not sensors of the env" if foreign else "")
                            + f". Pass an MHVAE pretrained on this environment (python pretrain/run.py with "
                              f"env_id=<module>:{env.env_id})")


# ------------------------------------------------------------------------------------- hyper-parameters
def _positive_ints(value: Any) -> bool:
    return isinstance(value, list) and all(_is_int(v) and v >= 1 for v in value)


_NET_ARCH_KEYS = {"sac": ("pi", "qf"), "ppo": ("pi", "vf")}


def _check_net_arch(name: str, value: Any, algo: str) -> None:
    keys = _NET_ARCH_KEYS.get(algo)
    ok = _positive_ints(value) or (keys is not None and isinstance(value, Mapping) and set(value) <= set(keys)
                                   and all(_positive_ints(v) for v in value.values()))
    if not ok:
        raise _fail(name, value, "a list of layer sizes (integers >= 1)"
                    + (f" or {{'{keys[0]}': [...], '{keys[1]}': [...]}}" if keys else ""))


def _check_policy_kwargs(value: Any, algo: str) -> None:
    name = "hp.policy_kwargs"
    if not isinstance(value, Mapping):
        raise _fail(name, value, "a dict such as {'net_arch': [64, 64]}")
    rules: dict[str, Callable[[str, Any], None]] = {
        "net_arch": lambda n, v: _check_net_arch(n, v, algo),
        "normalize_images": check_bool,
    }
    if algo == "sac":
        rules.update({"n_critics": lambda n, v: check_int(n, v, 1), "share_features_extractor": check_bool,
                      "log_std_init": lambda n, v: check_number(n, v, -20, 2), "use_expln": check_bool,
                      "clip_mean": lambda n, v: check_number(n, v, 0, math.inf, low_open=True, high_open=True)})
    if algo == "ppo":
        rules.update({"share_features_extractor": check_bool, "ortho_init": check_bool,
                      "log_std_init": lambda n, v: check_number(n, v, -20, 2)})
    for key, item in value.items():
        if key not in rules:
            raise _fail(f"{name}.{key}", item, f"one of the settable keys {sorted(rules)} (others cannot be "
                                                  f"stored as JSON or rebuilt when the agent is loaded)")
        rules[key](f"{name}.{key}", item)


def _check_train_freq(name: str, value: Any) -> None:
    if _is_int(value) and value >= 1:
        return
    if (isinstance(value, (list, tuple)) and len(value) == 2 and _is_int(value[0]) and value[0] >= 1
            and value[1] in ("step", "episode")):
        return
    raise _fail(name, value, "an integer >= 1 or [n, 'step' | 'episode']")


def _check_ent_coef(name: str, value: Any) -> None:
    if isinstance(value, str):
        if value == "auto":
            return
        if value.startswith("auto_"):
            try:
                if float(value[5:]) > 0:
                    return
            except ValueError:
                pass
    elif _is_number(value) and value > 0:
        return
    raise _fail(name, value, "'auto', 'auto_<initial value > 0>' or a number > 0")


def _ppo_rules() -> dict[str, Callable[[str, Any], None]]:
    """PPO's keyword arguments (SB3's names and ranges)."""
    positive = dict(low=0, high=math.inf, low_open=True, high_open=True)
    return {
        "learning_rate": lambda n, v: check_number(n, v, **positive),
        "n_steps": lambda n, v: check_int(n, v, 2),  # SB3 needs n_steps * n_envs > 1 for the advantages
        "batch_size": lambda n, v: check_int(n, v, 2),  # advantages are normalised over a batch
        "n_epochs": lambda n, v: check_int(n, v, 1),
        "gamma": lambda n, v: check_number(n, v, 0, 1),
        "gae_lambda": lambda n, v: check_number(n, v, 0, 1),
        "clip_range": lambda n, v: check_number(n, v, **positive),
        "clip_range_vf": lambda n, v: check_number(n, v, **positive, optional=True),
        "normalize_advantage": check_bool,
        "ent_coef": lambda n, v: check_number(n, v, 0, math.inf, high_open=True),
        "vf_coef": lambda n, v: check_number(n, v, 0, math.inf, high_open=True),
        "max_grad_norm": lambda n, v: check_number(n, v, **positive),
        "target_kl": lambda n, v: check_number(n, v, **positive, optional=True),
        "use_sde": check_bool,
        "sde_sample_freq": lambda n, v: check_int(n, v, -1),
        "stats_window_size": lambda n, v: check_int(n, v, 1),
        "policy_kwargs": lambda n, v: _check_policy_kwargs(v, "ppo"),
    }


def _hp_rules(algo: str) -> dict[str, Callable[[str, Any], None]]:
    if algo == "ppo":
        return _ppo_rules()
    positive = dict(low=0, high=math.inf, low_open=True, high_open=True)
    rules: dict[str, Callable[[str, Any], None]] = {
        "learning_rate": lambda n, v: check_number(n, v, **positive),
        "buffer_size": lambda n, v: check_int(n, v, 1),
        "learning_starts": lambda n, v: check_int(n, v, 0),
        "batch_size": lambda n, v: check_int(n, v, 1),
        "tau": lambda n, v: check_number(n, v, 0, 1, low_open=True),
        "gamma": lambda n, v: check_number(n, v, 0, 1),
        "train_freq": _check_train_freq,
        "gradient_steps": lambda n, v: None if v == -1 and _is_int(v) else check_int(n, v, 1),
        "target_update_interval": lambda n, v: check_int(n, v, 1),
        "stats_window_size": lambda n, v: check_int(n, v, 1),
        "policy_kwargs": lambda n, v: _check_policy_kwargs(v, algo),
    }
    if algo == "sac":
        rules.update({"ent_coef": _check_ent_coef,
                      "target_entropy": lambda n, v: None if v == "auto" else check_number(n, v, -math.inf, math.inf),
                      "use_sde": check_bool, "sde_sample_freq": lambda n, v: check_int(n, v, -1),
                      "use_sde_at_warmup": check_bool})
    else:
        rules.update({"exploration_fraction": lambda n, v: check_number(n, v, 0, 1),
                      "exploration_initial_eps": lambda n, v: check_number(n, v, 0, 1),
                      "exploration_final_eps": lambda n, v: check_number(n, v, 0, 1),
                      "max_grad_norm": lambda n, v: check_number(n, v, **positive)})
    return rules


def check_hyperparameters(hp: Any, algo: str) -> None:
    """Every ``hp.<name>`` of ``algo`` (SB3's keyword arguments the agents support), by its range."""
    if not isinstance(hp, Mapping):
        raise _fail("hp", hp, f"a dict of {algo.upper()} hyper-parameters (agents/config.py)")
    rules = _hp_rules(algo)
    for key, value in hp.items():
        if key not in rules:
            raise _fail(f"hp.{key}", value, f"one of the {algo.upper()} hyper-parameters the agents support: "
                                            f"{sorted(rules)}")
        rules[key](f"hp.{key}", value)
    if hp.get("exploration_final_eps", 0) > hp.get("exploration_initial_eps", 1.0):
        raise SettingsError(f"setting hp.exploration_final_eps={hp['exploration_final_eps']!r} is above "
                            f"hp.exploration_initial_eps={hp.get('exploration_initial_eps', 1.0)!r}: exploration "
                            f"must decrease")


# -------------------------------------------------------------------------------------------- the scripts
def check_train_settings(cfg: Mapping[str, Any]) -> None:
    """Every setting of agents/train.py (or of :func:`agents.common.train_agent`'s arguments under the same
    names): type and range, and the combinations that make no sense. The environment is made once to read its
    spaces (a Dict of >= 2 sensors; agents/environments.py); no model is loaded and nothing written."""
    from agents.config import HYPERPARAMS

    env = _check_env(cfg)
    algo = _check_algo(cfg, env)
    state = _get(cfg, "state")
    check_bool("state", state)
    state = state is True
    if state and env["state_env_id"] is None:
        raise SettingsError(f"setting state=True: env={env.name!r} has no low-dimensional state environment; "
                            f"train on MHVAE latents (state=False)")
    mods = None
    if state:
        if _get(cfg, "mhvae") not in (None, _MISSING):
            raise SettingsError(f"setting mhvae={_get(cfg, 'mhvae')!r} does not apply to state=True (the agent "
                                f"sees the true state); leave mhvae=None, or set state=False")
    else:
        mods = check_modalities("train_modalities", _get(cfg, "train_modalities"), env.sensors)
        if _get(cfg, "mhvae") is None:
            raise SettingsError("setting mhvae=None: an MHVAE checkpoint is needed, pass mhvae=PATH (a checkpoint "
                                "or a shipped model's name), or state=True for the true-state reference")
        check_mhvae("mhvae", _get(cfg, "mhvae"))
        check_mhvae_sensors("mhvae", _get(cfg, "mhvae"), env, mods)
    check_int("seed", _get(cfg, "seed"), 0, MAX_SEED)
    check_int("timesteps", _get(cfg, "timesteps"), 1, optional=True)
    check_int("episode_steps", _get(cfg, "episode_steps"), 1, optional=True)
    check_int("latent_stack", _get(cfg, "latent_stack"), 1, optional=True)
    failure_p = _get(cfg, "train_failure_p")
    check_failure_p("train_failure_p", failure_p, mods)
    if failure_p not in (None, _MISSING) and (state or len(mods or ()) < 2):
        raise SettingsError(f"setting train_failure_p={failure_p!r} needs at least two training modalities (a "
                            f"sensor must remain), got {'state=True' if state else mods}")
    check_bool("train_sample", _get(cfg, "train_sample"))
    if state and _get(cfg, "train_sample") is True:
        raise SettingsError("setting train_sample=True samples the MHVAE's posterior: it needs MHVAE latents, "
                            "not state=True")
    hp = _get(cfg, "hp")
    if hp is not _MISSING:
        check_hyperparameters({**HYPERPARAMS[algo], **(hp or {})} if isinstance(hp, Mapping) or hp is None else hp,
                              algo)
    _check_common(cfg)
    check_int("eval_freq", _get(cfg, "eval_freq"), 1)
    check_int("n_eval_episodes", _get(cfg, "n_eval_episodes"), 1)
    check_int("save_freq", _get(cfg, "save_freq"), 1, optional=True)
    for name in ("keep_resume", "resume", "tensorboard"):
        check_bool(name, _get(cfg, name))
    check_text("run_dir", _get(cfg, "run_dir"))


def _check_common(cfg: Mapping[str, Any]) -> None:
    """Settings every agent script has: threads, device, progress bar, SB3's verbosity."""
    check_int("num_threads", _get(cfg, "num_threads"), 1, optional=True)
    check_device(_get(cfg, "device"))
    check_bool("progress", _get(cfg, "progress"))
    check_int("verbose", _get(cfg, "verbose"), 0, 2)


def _check_env(cfg: Mapping[str, Any]):
    """The environment ``env`` names (given by the user: a ``module:Id`` is imported), as an AgentEnv."""
    from agents.environments import resolve_env

    return resolve_env(cfg.get("env", "pendulum_sound") if isinstance(cfg, Mapping) else "pendulum_sound")


def _check_algo(cfg: Mapping[str, Any], env) -> str:
    """``algo`` (None: the environment's, from its action space) checked against the action space."""
    from agents.environments import check_algo

    algo = _get(cfg, "algo")
    return check_algo(env, None if algo is _MISSING else algo)


def check_evaluate_settings(cfg: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Every setting of agents/evaluate.py except the agent folder (``meta``: its description, already read)."""
    from mhvae_perception.wrappers.adapter import OUT_OF_RANGE_POLICIES

    from agents.environments import recorded_env

    state = bool(meta.get("state"))
    env = recorded_env(meta, cfg.get("env"))
    mods = check_modalities("modalities", _get(cfg, "modalities"), env.sensors, optional=True)
    if state and (mods or _get(cfg, "failure_p") not in (None, _MISSING) or _get(cfg, "mhvae") not in (None, _MISSING)):
        raise SettingsError(f"{cfg['agent']} acts on the true state: the settings modalities, failure_p and mhvae "
                            f"do not apply (leave them None)")
    sensors = mods or tuple(meta.get("train_modalities") or ())
    check_int("episodes", _get(cfg, "episodes"), 1)
    check_int("n_envs", _get(cfg, "n_envs"), 1)
    check_int("seed", _get(cfg, "seed"), 0, MAX_SEED)
    check_failure_p("failure_p", _get(cfg, "failure_p"), sensors)
    check_mhvae("mhvae", _get(cfg, "mhvae"), optional=True)
    for name in ("allow_other_mhvae", "random_reference", "video"):
        check_bool(name, _get(cfg, name))
    check_choice("on_out_of_range", _get(cfg, "on_out_of_range"), OUT_OF_RANGE_POLICIES)
    check_text("out_dir", _get(cfg, "out_dir"), optional=True)
    _check_common(cfg)


def _check_list(name: str, value: Any, check: Callable[[str, Any], None], allow_empty: bool = False) -> None:
    if not isinstance(value, (list, tuple)) or (not value and not allow_empty):
        raise _fail(name, value, "a list" + ("" if allow_empty else " with at least one entry"))
    if len({json.dumps(v) for v in value}) != len(value):
        raise _fail(name, list(value), "a list without repeated entries")
    for i, item in enumerate(value):
        check(f"{name}[{i}]", item)


def check_transfer_settings(cfg: Mapping[str, Any]) -> None:
    """Every setting of agents/transfer.py. The environment is made once to read its spaces; no model is
    loaded and nothing written."""
    from agents.config import HYPERPARAMS, parse_modalities

    env = _check_env(cfg)
    algo = _check_algo(cfg, env)
    if _get(cfg, "state_source") is not _MISSING:
        from mhvae_perception.data.collect import check_state_source

        try:
            check_state_source(cfg["state_source"])
        except ValueError as err:
            raise SettingsError(f"setting {err}") from None
    if _get(cfg, "mhvae") in (None, _MISSING):
        raise SettingsError("pass the MHVAE checkpoint: python agents/transfer.py with mhvae=PATH (a checkpoint or "
                            "a shipped model's name)")
    check_mhvae("mhvae", cfg["mhvae"])
    _check_list("seeds", _get(cfg, "seeds"), lambda n, v: check_int(n, v, 0, MAX_TRANSFER_SEED))
    check_int("timesteps", _get(cfg, "timesteps"), 1, optional=True)
    check_int("episode_steps", _get(cfg, "episode_steps"), 1, optional=True)
    condition = lambda n, v: check_choice(n, v, tuple(env.conditions))  # noqa: E731
    for name in ("train_conditions", "test_conditions", "robustness_conditions"):
        if _get(cfg, name) is not None:  # None: the env's conditions (each sensor, then all)
            _check_list(name, _get(cfg, name), condition, allow_empty=name == "robustness_conditions")
    state_reference = _get(cfg, "state_reference")
    if state_reference is not None:  # None: when the env has a state environment
        check_bool("state_reference", state_reference)
    if state_reference is True and env["state_env_id"] is None:
        raise SettingsError(f"setting state_reference=True: env={env.name!r} has no low-dimensional state "
                            f"environment; set state_reference=False")
    for name in ("test_episodes", "n_eval_envs", "robustness_episodes", "eval_freq", "n_eval_episodes"):
        check_int(name, _get(cfg, name), 1)
    _check_list("failure_probs", _get(cfg, "failure_probs"), lambda n, v: check_number(n, v, 0, 1), allow_empty=True)
    check_int("latent_stack", _get(cfg, "latent_stack"), 1, optional=True)
    failure_p = _get(cfg, "train_failure_p")
    check_failure_p("train_failure_p", failure_p, env.sensors)
    trained_on = cfg.get("train_conditions") or env.conditions
    single = [c for c in trained_on if len(parse_modalities(c, env.sensors)) < 2]
    if failure_p not in (None, _MISSING) and single:
        raise SettingsError(f"setting train_failure_p={failure_p!r} needs two sensors in every training condition, "
                            f"but {single} have one; set train_conditions=['{env.conditions[-1]}'] or "
                            f"train_failure_p=None")
    used = [*(cfg.get("train_conditions") or env.conditions), *(cfg.get("test_conditions") or env.conditions)]
    needed = {sensor for c in used for sensor in parse_modalities(c, env.sensors)}
    if cfg.get("failure_probs"):
        needed |= set(env.sensors)  # the robustness curve encodes every sensor
    check_mhvae_sensors("mhvae", cfg["mhvae"], env, [sensor for sensor in env.sensors if sensor in needed])
    hp = _get(cfg, "hp")
    if hp is not _MISSING:
        check_hyperparameters({**HYPERPARAMS[algo], **(hp or {})} if isinstance(hp, Mapping) or hp is None else hp,
                              algo)
    check_int("save_freq", _get(cfg, "save_freq"), 1, optional=True)
    for name in ("train_sample", "keep_resume", "latent_diagnostics"):
        check_bool(name, _get(cfg, name))
    check_text("out_dir", _get(cfg, "out_dir"))
    if _get(cfg, "budget_note") is not _MISSING and not isinstance(cfg["budget_note"], str):
        raise _fail("budget_note", cfg["budget_note"], "a string")
    _check_common(cfg)
