"""Environment datasets: any Gymnasium environment with a ``Dict`` observation space, collected when missing
(:mod:`.collect`), read back as :class:`~.tensors.DatasetSplits` with images in (C, H, W) in [0, 1], Gaussian
sensors' normalisation from the training split only, and the true state when it was recorded."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping, Optional

import numpy as np
import torch
from gymnasium import spaces

from . import collect as collector
from .describe import data_statistics, feature_statistics, image_to_chw, sensor_layout, to_model_layout
from .presets import env_preset, resolve_env_name
from .spaces import array_key, space_from_json, space_to_json
from .tensors import VALID_FRACTION, DatasetSplits, DictTensorDataset

log = logging.getLogger(__name__)


sound_statistics = feature_statistics  # the name older code uses

_COLLECT_KEYS = ("n_train", "n_test", "seed", "env_kwargs", "policy", "n_envs", "state_source", "progress")


def load_env_splits(env_id: str, path: Optional[os.PathLike] = None, split_seed: int = 0,
                    collect_if_missing: bool = True, **collect_kwargs) -> DatasetSplits:
    """The dataset of any Gymnasium environment with a ``Dict`` observation space, collected when missing.

    ``env_id``: a Gymnasium id, ``"module:EnvId"``, or a registered preset's alias (``"pendulum_sound"``).
    ``path`` defaults to :func:`mhvae_perception.data.collect.default_path` of the collection settings;
    ``collect_kwargs`` are :func:`mhvae_perception.data.collect.collect`'s (``n_train``, ``n_test``, ``seed``,
    ``env_kwargs``, ``policy``, ``n_envs``, ``state_source``, ``progress``); an existing file collected with other settings than
    the ones given raises ``ValueError``. Splits: 10 % of the file's training part (a ``split_seed``
    permutation) is validation, the file's test part is the test split. Images are served in (C, H, W) in
    [0, 1]; Gaussian sensors get normalisation statistics from the training split only
    (:attr:`DatasetSplits.normalisation`); the true state, when recorded, is :attr:`DatasetSplits.state`.
    """
    unknown = sorted(set(collect_kwargs) - set(_COLLECT_KEYS))
    if unknown:
        raise TypeError(f"load_env_splits: unknown keyword(s) {unknown}; collection settings are {_COLLECT_KEYS}")
    progress = collect_kwargs.pop("progress", True)
    resolved = resolve_env_name(env_id)
    settings = collector.collection_settings(resolved, **collect_kwargs)  # checked before any work
    path = Path(path) if path is not None else collector.default_path(resolved, settings)
    if not path.is_file():
        collector.resolve_env_id(resolved)  # an unknown environment is named before anything else
        if not collect_if_missing:
            raise FileNotFoundError(
                f"{env_id}: environment dataset {path} not found. Collect it with `python -m envs.collect "
                f"--env-id {resolved}` (or mhvae_perception.data.collect.collect), pass its path, or call "
                f"load_env_splits(..., collect_if_missing=True)")
        log.info("%s: collecting the dataset into %s", resolved, path)
        collector.collect(resolved, path=path, progress=progress, **collect_kwargs)
    arrays, metadata = collector.read_collected(path)
    recorded = metadata.get("settings")
    if collect_kwargs and recorded is not None:
        asked = {k: settings[k] for k in collect_kwargs}
        differ = {k: (recorded.get(k), v) for k, v in asked.items() if recorded.get(k) != v}
        if differ:
            raise ValueError(f"{path} was collected with other settings ({', '.join(f'{k}: file {a!r}, asked {b!r}' for k, (a, b) in differ.items())}); "
                             f"pass another path or remove the file to collect it again")
    return env_splits_from_arrays(env_id, resolved, arrays, metadata, split_seed, path)


def _legacy_space(arrays: Mapping[str, np.ndarray]) -> dict:
    """The observation-space description of a file written before format 2 (image 0/1 + sound)."""
    desc = {}
    for key in ("image", "sound"):
        if f"train_{key}" not in arrays or f"test_{key}" not in arrays:
            raise ValueError(f"old-format dataset lacks train_{key}/test_{key} (has {sorted(arrays)})")
        shape = arrays[f"train_{key}"].shape[1:]
        desc[key] = spaces.Box(0.0, 1.0, shape, np.float32) if key == "image" else spaces.Box(-np.inf, np.inf, shape, np.float32)
    return space_to_json(spaces.Dict(desc))


def env_splits_from_arrays(name: str, env_id: str, arrays: Mapping[str, np.ndarray], metadata: dict,
                           split_seed: int = 0, path: Optional[os.PathLike] = None) -> DatasetSplits:
    """:class:`DatasetSplits` from the arrays and metadata of a collected file (see :func:`load_env_splits`)."""
    if "observation_space" not in metadata:
        metadata = {**metadata, "observation_space": _legacy_space(arrays)}
    space = space_from_json(metadata["observation_space"])
    names = tuple(space.spaces)
    for split in ("train", "test"):
        missing = [array_key(split, k) for k in names if array_key(split, k) not in arrays]
        if missing:
            raise ValueError(f"{path}: the dataset lacks {missing} (has {sorted(arrays)})")
        lengths = {len(arrays[array_key(split, k)]) for k in names}
        if len(lengths) != 1:
            raise ValueError(f"{path}: the {split} arrays have different lengths {sorted(lengths)}")
    n = len(arrays[array_key("train", names[0])])
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    n_va = int(round(VALID_FRACTION * n))
    va, tr = perm[:n_va], perm[n_va:]
    layouts = {k: sensor_layout(sub) for k, sub in space.spaces.items()}

    def served(split: str):
        tensors, scales = {}, {}
        for k, layout in layouts.items():
            raw = arrays[array_key(split, k)]
            if layout.kind in ("image", "multibinary") and raw.dtype == np.uint8:
                # kept as uint8 in memory (a quarter of float32), scaled when served
                tensors[k] = torch.from_numpy(np.ascontiguousarray(image_to_chw(layout, raw) if layout.kind == "image" else raw))
                scales[k] = float(layout.scale)
            else:
                tensors[k] = torch.from_numpy(np.ascontiguousarray(to_model_layout(layout, raw)))
        return tensors, scales

    train_t, scales = served("train")
    test_t, _ = served("test")
    train = DictTensorDataset({k: v[tr] for k, v in train_t.items()}, uint8_scale=scales)
    valid = DictTensorDataset({k: v[va] for k, v in train_t.items()}, uint8_scale=scales)
    test = DictTensorDataset(test_t, uint8_scale=scales)
    tr_np = tr.numpy()
    statistics = data_statistics(space, {k: (arrays[array_key("train", k)][tr_np] if layouts[k].kind == "vector"
                                             else arrays[array_key("train", k)]) for k in names})
    normalisation = {k: statistics[k] for k in names if layouts[k].kind == "vector"} or None

    state, state_names = None, ()
    skey = metadata.get("state_key") or "state"
    if metadata.get("state_names") and array_key("train", skey) in arrays:
        full = torch.from_numpy(np.asarray(arrays[array_key("train", skey)], dtype=np.float32))
        state = {"train": full[tr], "valid": full[va],
                 "test": torch.from_numpy(np.asarray(arrays[array_key("test", skey)], dtype=np.float32))}
        state_names = tuple(metadata["state_names"])
    preset = env_preset(env_id)
    hints = {"condition_on": "test_points", "cross_modal": True, **(dict(preset.figure_hints) if preset else {})}
    return DatasetSplits(name, train, valid, test, names, normalisation=normalisation,
                         info={"path": str(path) if path is not None else None, "env_id": env_id,
                               "metadata": metadata, "statistics": statistics,
                               "modalities": {k: v.to_dict() for k, v in layouts.items()}},
                         figure_hints=hints, state=state, state_names=state_names)
