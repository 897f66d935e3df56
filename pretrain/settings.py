"""Checks of pretrain/run.py's settings, done before any data is loaded or any folder is written.

``check_settings(cfg)`` raises :class:`SettingsError` naming the setting, its value and what is allowed.
``training_settings(cfg)`` are the settings that define a training run (a change makes another run);
``compare_with_recorded`` refuses to continue a run folder with changed ones (raising ``epochs`` continues).
"""
from __future__ import annotations

import json
import math
from numbers import Integral, Real
from typing import Any, Mapping, Optional, Sequence

from mhvae_perception.models.devices import resolve_device
from mhvae_perception.models.precision import PRECISIONS


class SettingsError(ValueError):
    """A setting has a value that is not allowed (the message names the setting, the value and the fix)."""


#: Settings that define a training run, per model kind (the warm-ups a kind does not use are left out).
COMMON_TRAINING_KEYS = ("dataset", "env_id", "model", "seed", "split_seed", "lr", "batch_size", "max_train_batches",
                        "valid_points", "data_path", "model_overrides", "state_source", "loss_recipe", "precision")
WARMUP_KEYS = {"mhvae": ("warmup_modality_epochs", "warmup_core_epochs")}
BASELINE_WARMUP_KEYS = ("warmup_epochs",)
#: Settings added after runs were already trained: an old record without them had these values.
LEGACY_DEFAULTS = {"env_id": None, "model_overrides": {}, "state_source": "auto", "loss_recipe": "paper",
                   "precision": "fp32"}
#: ``loss_recipe``: "paper" (the paper's loss weights) or "transfer" (mhvae_perception.data.describe.transfer_recipe)
LOSS_RECIPES = ("paper", "transfer")

#: The default schedule of environment datasets (``env_id=...``, ``dataset=pendulum_sound|hyperhot``): not part
#: of the paper's evaluation, so short enough for a first run on a CPU (PendulumSound: 39 min with its evaluation
#: on one core of the shared 2-core CPU, 2026-12-03), with the warm-ups over the same fractions as the paper's
#: MNIST schedule (U_m the first 1/5 of training, U_c and U_b 2/5), a quick evaluation (K = 100 on the first 1,000 test points) and the transfer recipe's loss weights
#: (an agent trained from one sensor should act from another). Every entry can be overridden.
ENV_SCHEDULE = dict(epochs=30, lr=1e-3, batch_size=64, warmup_modality_epochs=6, warmup_core_epochs=12,
                    warmup_epochs=12, eval_samples=100, eval_points=1000, loss_recipe="transfer")


def default_schedule(dataset: str, env_id: Any = None) -> dict:
    """The schedule run.py defaults to: the paper's for its datasets (:data:`pretrain.paper.PROTOCOL`, all test
    points), :data:`ENV_SCHEDULE` for an environment dataset."""
    from pretrain.paper import PROTOCOL

    if env_id is None and dataset in PROTOCOL:
        return {**PROTOCOL[dataset], "eval_points": None, "loss_recipe": "paper"}
    return dict(ENV_SCHEDULE)


def model_kinds() -> tuple[str, ...]:
    """The model kinds the library can build (``mhvae_perception.models.registry.MODEL_KINDS``)."""
    from mhvae_perception.models.registry import MODEL_KINDS

    return tuple(MODEL_KINDS)


def dataset_names() -> tuple[str, ...]:
    from mhvae_perception import data

    return tuple(data.DATASETS)


def training_keys(model: str) -> tuple[str, ...]:
    return COMMON_TRAINING_KEYS + WARMUP_KEYS.get(model, BASELINE_WARMUP_KEYS)


def training_settings(cfg: Mapping[str, Any]) -> dict:
    """The settings that define the training run of ``cfg`` (recorded in config.json and in checkpoints), as plain
    JSON values (sacred's read-only containers become dicts and lists: checkpoints hold no foreign types)."""
    return json.loads(json.dumps({k: cfg.get(k) for k in training_keys(cfg["model"])}))


# ------------------------------------------------------------------------------------------------ checks
def _fail(name: str, value: Any, allowed: str) -> SettingsError:
    return SettingsError(f"setting {name}={value!r} is not allowed: {name} must be {allowed}")


def _int(cfg: Mapping, name: str, minimum: int, optional: bool = False) -> None:
    value = cfg.get(name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise _fail(name, value, ("None or " if optional else "") + f"an integer >= {minimum}")


def _number(cfg: Mapping, name: str, positive: bool) -> None:
    value = cfg.get(name)
    ok = not isinstance(value, bool) and isinstance(value, Real) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise _fail(name, value, "a finite number " + ("> 0" if positive else ">= 0"))


def _choice(cfg: Mapping, name: str, allowed: Sequence[str]) -> None:
    if cfg.get(name) not in allowed:
        raise _fail(name, cfg.get(name), f"one of {tuple(allowed)}")


def _text(cfg: Mapping, name: str, optional: bool) -> None:
    value = cfg.get(name)
    if value is None and optional:
        return
    if not isinstance(value, str) or (not optional and not value.strip()):
        raise _fail(name, value, "None or a string" if optional else "a non-empty string")


def check_settings(cfg: Mapping[str, Any], command: str = "main") -> None:
    """Check every setting of ``cfg`` (run.py's config) for ``command`` ("main" or "evaluate")."""
    if cfg.get("env_id") is None:
        _choice(cfg, "dataset", dataset_names())
    else:
        _check_env_id(cfg["env_id"])
    _choice(cfg, "model", model_kinds())
    for name in ("seed", "split_seed", "eval_seed", "eval_first_point"):
        _int(cfg, name, 0)
    _int(cfg, "epochs", 0)
    if "loss_recipe" in cfg:
        _choice(cfg, "loss_recipe", LOSS_RECIPES)
    if "precision" in cfg:
        _choice(cfg, "precision", PRECISIONS)
    try:
        from mhvae_perception.data.collect import check_state_source

        check_state_source(cfg.get("state_source", "auto"))
    except ValueError as err:
        raise SettingsError(f"setting {err}") from None
    _int(cfg, "batch_size", 1)
    _int(cfg, "eval_batch_size", 1)
    _int(cfg, "eval_samples", 1)
    for name in ("eval_points", "max_train_batches", "valid_points", "eval_chunk_size", "num_threads"):
        _int(cfg, name, 1, optional=True)
    _number(cfg, "lr", positive=True)
    for name in ("warmup_modality_epochs", "warmup_core_epochs", "warmup_epochs"):
        _number(cfg, name, positive=False)
    _choice(cfg, "eval_checkpoint", ("best", "last"))
    _check_model_overrides(cfg.get("model_overrides"))
    if command == "main":
        _check_model_specific(cfg)
        _check_override_values(cfg)
    for name in ("evaluate_after", "figures", "tensorboard", "progress"):
        if not isinstance(cfg.get(name), bool):
            raise _fail(name, cfg.get(name), "True or False")
    _text(cfg, "run_dir", optional=False)
    _text(cfg, "tag", optional=True)
    for name in ("data_path", "resume", "checkpoint", "eval_dir", "init_weights"):
        _text(cfg, name, optional=True)
    if cfg.get("init_weights") and command == "main":
        from mhvae_perception.hub import shipped_or_path
        from mhvae_perception.hub.checkpoints import read_description

        source = shipped_or_path(cfg["init_weights"])
        if not source.is_file():
            from mhvae_perception.hub.pretrained import did_you_mean

            raise SettingsError(f"init_weights={cfg['init_weights']!r}: no such checkpoint file or shipped model; "
                                f"{did_you_mean(cfg['init_weights'])}")
        kind = read_description(source).get("kind")
        if kind != cfg.get("model"):
            raise SettingsError(f"init_weights={cfg['init_weights']!r} is a {kind} model, but "
                                f"model={cfg.get('model')!r}; set model={kind}")
    if command == "evaluate" and not cfg.get("checkpoint"):
        raise SettingsError("the evaluate command needs a checkpoint: "
                            "python pretrain/run.py evaluate with checkpoint=PATH (a .pt file or a shipped model name)")
    try:
        resolve_device(cfg.get("device"))
    except ValueError as err:
        raise SettingsError(f"setting device={cfg.get('device')!r}: {err}") from None


def _check_model_specific(cfg: Mapping[str, Any]) -> None:
    """Settings of one model kind given for another are refused, not ignored: U_m / U_c and the agreement term
    are the MHVAE's, U_b (``warmup_epochs``) the baselines'. A warm-up counts as given when it differs from the
    dataset's default (:func:`default_schedule`)."""
    defaults = default_schedule(cfg.get("dataset"), cfg.get("env_id"))
    model = cfg.get("model")
    foreign = BASELINE_WARMUP_KEYS if model == "mhvae" else WARMUP_KEYS["mhvae"]
    for key in foreign:
        if cfg.get(key) != defaults[key]:
            own = ", ".join(training_keys(model)[len(COMMON_TRAINING_KEYS):])
            whose = "the baselines' warm-up U_b" if model == "mhvae" else "an MHVAE warm-up (U_m or U_c)"
            raise SettingsError(f"setting {key}={cfg.get(key)!r} does not apply to model={model!r} (it is {whose}); "
                                f"set {own} instead")
    if model != "mhvae" and (cfg.get("model_overrides") or {}).get("agreement_weight"):
        raise SettingsError(f"setting model_overrides.agreement_weight does not apply to model={model!r}: the "
                            f"agreement term is the MHVAE's (remove it, or use model=mhvae)")


def _check_override_values(cfg: Mapping[str, Any]) -> None:
    """The override values, applied to the description they will change, before any data is loaded: the paper's
    networks or a registered environment preset (an inferred description needs the data: there the core's fields
    are checked alone). With ``init_weights`` the checkpoint's own description is used when the run starts."""
    import dataclasses

    from mhvae_perception.data import presets
    from mhvae_perception.models.specs import CoreSpec

    overrides = cfg.get("model_overrides") or {}
    if not overrides or cfg.get("init_weights"):
        return
    name = cfg.get("env_id") or cfg.get("dataset")
    try:
        try:
            base = presets.config(name, cfg.get("model", "mhvae"))
        except ValueError:  # an environment without a registered preset: its description is inferred from data
            base = None
        if base is not None:
            base.with_overrides(overrides)
        elif overrides.get("core"):
            dataclasses.replace(CoreSpec(), **overrides["core"])
    except (ValueError, KeyError, TypeError) as err:
        raise SettingsError(f"setting model_overrides={overrides!r}: {err}") from None


MODEL_OVERRIDE_SECTIONS = ("modalities", "core")


def _check_model_overrides(value: Any) -> None:
    """``{"modalities": {name: {ModalitySpec field: value}}, "core": {CoreSpec field: value}, <ModelConfig field>:
    value}``: field names checked here, modality names and values when the description is built."""
    import dataclasses

    from mhvae_perception.models.specs import CoreSpec, ModalitySpec, ModelConfig

    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    allowed = ("a dict such as {'modalities': {'sound': {'recon_weight': 100.0}}, 'core': {'kl_weight': 0.2}, "
               "'agreement_weight': 1.0}")
    if not isinstance(value, Mapping):
        raise _fail("model_overrides", value, allowed)
    for section in MODEL_OVERRIDE_SECTIONS:
        if section in value and not isinstance(value[section], Mapping):
            raise _fail(f"model_overrides.{section}", value[section], "a dict")
    top = fields(ModelConfig) - {"kind", "modalities", "core"}
    for key in value:
        if key not in MODEL_OVERRIDE_SECTIONS and key not in top:
            raise _fail("model_overrides", value, f"{allowed}; unknown key {key!r} (ModelConfig fields: {sorted(top)})")
    for key in value.get("core", {}):
        if key not in fields(CoreSpec):
            raise _fail("model_overrides.core", value["core"], f"CoreSpec fields {sorted(fields(CoreSpec))}")
    for name, changes in dict(value.get("modalities", {})).items():
        if not isinstance(changes, Mapping):
            raise _fail(f"model_overrides.modalities.{name}", changes, "a dict of ModalitySpec fields")
        unknown = set(changes) - (fields(ModalitySpec) - {"name", "shape"})
        if unknown:
            raise _fail(f"model_overrides.modalities.{name}", dict(changes),
                        f"ModalitySpec fields {sorted(fields(ModalitySpec) - {'name', 'shape'})}")


def _check_env_id(env_id: Any) -> None:
    """The environment must be known to Gymnasium (its package imported) before any data is collected."""
    if not isinstance(env_id, str) or not env_id.strip():
        raise _fail("env_id", env_id, "None or a Gymnasium environment id such as 'PendulumSound-v0'")
    from mhvae_perception.data.collect import resolve_env_id
    from mhvae_perception.data.presets import resolve_env_name

    try:
        resolve_env_id(resolve_env_name(env_id))
    except (ValueError, ImportError) as err:
        raise SettingsError(f"setting env_id={env_id!r}: {err}") from None


def recorded_data_settings(recorded: Mapping[str, Any], given: set) -> tuple[dict, dict]:
    """The data settings an evaluation takes from a checkpoint's record when the user did not give them:
    ``(used, refused)``, refused as ``{key: (value, why)}``.

    What a file says is data, never an instruction: a ``dataset`` from the fixed list, a ``split_seed``, and an
    ``env_id`` only when it is a plain id Gymnasium or this project already knows (a ``module:Id`` would import a
    module the file names). A recorded ``data_path`` is never used: the file must not choose what is read or
    written; the user passes ``data_path`` to evaluate on that file."""
    import gymnasium as gym

    from mhvae_perception.data.presets import LEGACY_ENV_ALIASES, env_presets

    known_envs = set(gym.registry) | set(LEGACY_ENV_ALIASES) | set(env_presets()) \
        | {target.split(":", 1)[1] for target in LEGACY_ENV_ALIASES.values()}
    used, refused = {}, {}
    for key in ("dataset", "env_id", "split_seed", "data_path"):
        if key not in recorded or key in given or recorded[key] is None:
            continue
        value = recorded[key]
        if key == "dataset" and value not in dataset_names():
            refused[key] = (value, f"not one of {dataset_names()}")
        elif key == "split_seed" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            refused[key] = (value, "not an integer >= 0")
        elif key == "env_id" and not (isinstance(value, str) and ":" not in value and value in known_envs):
            refused[key] = (value, "not an environment registered in this process; a file never chooses a module "
                                   "to import")
        elif key == "data_path":
            refused[key] = (value, "a file never chooses a path to read or write")
        else:
            used[key] = value
    return used, refused


# ------------------------------------------------------------------------------------------------ run folders
def changed_settings(recorded: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict:
    """``{key: (recorded, now)}`` for the training settings that differ. Keys missing from an old record are
    compared with their :data:`LEGACY_DEFAULTS` value when they have one, otherwise not compared."""
    changed = {}
    for key, now in training_settings(cfg).items():
        if key in recorded:
            before = recorded[key]
        elif key in LEGACY_DEFAULTS:
            before = LEGACY_DEFAULTS[key]
        else:
            continue
        if not _same(before, now):
            changed[key] = (before, now)
    return changed


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Real) and isinstance(b, Real) and not isinstance(a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    return a == b


def compare_with_recorded(recorded: Mapping[str, Any], cfg: Mapping[str, Any], epochs_done: int,
                          source: str) -> Optional[str]:
    """Refuse (SettingsError) to continue the run recorded in ``source`` with changed training settings or
    fewer ``epochs`` than it has done; returns a line saying what will happen."""
    changed = changed_settings(recorded, cfg)
    if changed:
        listed = ", ".join(f"{k}: {b!r} -> {a!r}" for k, (b, a) in changed.items())
        raise SettingsError(
            f"{source} was trained with other settings ({listed}). Continuing it would mix two runs. Start a new "
            f"run with another tag=... or run_dir=..., or re-run with the recorded settings. (Only raising epochs "
            f"continues a run.)")
    epochs = int(cfg["epochs"])
    if epochs < epochs_done:
        raise SettingsError(
            f"{source} has already trained {epochs_done} epochs and epochs={epochs} asks for fewer. Evaluate its "
            f"checkpoint with `python pretrain/run.py evaluate with checkpoint=...`, or raise epochs, or start a new "
            f"run with another tag=... or run_dir=...")
    if epochs == epochs_done:
        return f"{source}: all {epochs_done} epochs are done; nothing to train"
    return f"continuing {source} from epoch {epochs_done} to {epochs}"
