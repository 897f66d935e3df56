"""Model descriptions inferred from an environment's observation space and data (no hand-tuned preset needed).

Rules, per sensor of a ``Dict`` observation space (every choice is printed and every one can be overridden):

* **Image-like Box** (:func:`sensor_layout`): 3-D with a channel axis of at most 4 first (``CHW``) or last
  (``HWC``) and both other axes >= 16, or 2-D with both axes >= 16 (``HW``, one grey channel), and values
  bounded in [0, 1] (any float dtype, or uint8 with high <= 1) or in [0, 255] (uint8, or float with high > 1).
  The model's modality shape is always (C, H, W); values are served divided by ``scale`` (255 or 1), i.e. in
  [0, 1]. Likelihood: **Bernoulli** (binary images exactly; grey/colour intensities in [0, 1] as the BCE of the
  paper's CelebA networks — the library's likelihoods are Bernoulli, categorical and Gaussian, and Bernoulli
  keeps the reconstructions in [0, 1]). Network: ``conv`` with L layers (32, 4, 2, 1), (64, 4, 2, 1), ...
  (channels doubling, at most 4 layers) halving the smaller side until it is <= 8, and a 256-unit dense layer;
  the decoder mirrors it. Latent z_i: 16 for up to 64x64x1 values, else 32.
* **Other Box** (vectors, matrices, unbounded or non-[0, 1] values): ``mlp`` [64, 64] (or [256, 256] above 64
  values), Swish, no BatchNorm, a **Gaussian** likelihood on values normalised with the training data's
  per-feature mean and std (std floored at 1e-6). Latent: the sensor's own size, at least 2 and at most 64 (a
  state vector is never squeezed below its dimension; longer signals such as waveforms get 64).
* **Discrete(n)**: one-hot (n,), **categorical**, ``mlp`` [64, 64] with BatchNorm; latent clip(n, 2, 16).
* **MultiBinary**: **Bernoulli**, ``mlp`` [64, 64] with BatchNorm; latent clip(ceil(size / 2), 2, 16).
* **Core**: z_c size = the largest modality latent; core MLP 3 x 256 (as the PendulumSound preset).
  Baselines (``jmvae``, ``mvae``) get one latent of z_c's size fused by one linear layer, like the presets.

The layout travels in two documented places: ``DatasetSplits.info["modalities"][name]`` (``layout``,
``scale``) for the data, and the dataset metadata written by :mod:`mhvae_perception.data.collect`. The model
itself only ever sees (C, H, W) floats in [0, 1]; a wrapper that feeds an env's raw ``HWC`` uint8 frames to
it converts them with :func:`to_model_layout`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from gymnasium import spaces

from ..models.specs import CoreSpec, ModalitySpec, ModelConfig, Normalisation
from .spaces import check_observation_space

MIN_IMAGE_SIDE = 16
MAX_CHANNELS = 4
MIN_STD = 1e-6
MAX_VECTOR_LATENT = 64


@dataclass(frozen=True)
class SensorLayout:
    """How one sensor's values become a model modality.

    ``kind``: "image", "vector", "discrete" or "multibinary"; ``layout``: "CHW", "HWC" or "HW" for images
    (None otherwise); ``model_shape``: the modality's shape in the model; ``scale``: divide by it when serving
    (255 for [0, 255] images, 1 otherwise); ``n_classes``: for Discrete; ``start``: Discrete's first value.
    """

    kind: str
    model_shape: tuple[int, ...]
    layout: Optional[str] = None
    scale: float = 1.0
    n_classes: int = 0
    start: int = 0

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "model_shape": list(self.model_shape)}


def _bounded(space: spaces.Box, high: float) -> bool:
    return bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
                and np.all(space.low >= 0) and np.all(space.high <= high))


def sensor_layout(space: spaces.Space) -> SensorLayout:
    """The :class:`SensorLayout` of one sensor (see the module docstring for the rules)."""
    if isinstance(space, spaces.Discrete):
        return SensorLayout("discrete", (int(space.n),), n_classes=int(space.n), start=int(space.start))
    if isinstance(space, spaces.MultiBinary):
        return SensorLayout("multibinary", tuple(int(s) for s in space.shape))
    if not isinstance(space, spaces.Box):
        raise ValueError(f"unsupported sensor space {space}: use Box, Discrete or MultiBinary")
    shape = tuple(int(s) for s in space.shape)
    integer = np.issubdtype(space.dtype, np.integer)
    if _bounded(space, 1.0):
        scale = 1.0
    elif _bounded(space, 255.0) and (integer or bool(np.any(space.high > 1))):
        scale = 255.0
    else:
        return SensorLayout("vector", shape)
    if len(shape) == 3 and shape[0] <= MAX_CHANNELS and min(shape[1:]) >= MIN_IMAGE_SIDE:
        return SensorLayout("image", shape, "CHW", scale)
    if len(shape) == 3 and shape[2] <= MAX_CHANNELS and min(shape[:2]) >= MIN_IMAGE_SIDE:
        return SensorLayout("image", (shape[2], shape[0], shape[1]), "HWC", scale)
    if len(shape) == 2 and min(shape) >= MIN_IMAGE_SIDE:
        return SensorLayout("image", (1, *shape), "HW", scale)
    return SensorLayout("vector", shape)


def to_model_layout(layout: SensorLayout, values: np.ndarray) -> np.ndarray:
    """A batch ``(B, *env shape)`` of raw sensor values as the model takes them: (B, C, H, W) float32 images in
    [0, 1], one-hot float32 for Discrete, float32 otherwise."""
    values = np.asarray(values)
    if layout.kind == "discrete":
        index = values.astype(np.int64).reshape(-1) - layout.start
        out = np.zeros((len(index), layout.n_classes), dtype=np.float32)
        out[np.arange(len(index)), index] = 1.0
        return out
    if layout.kind == "image":
        values = image_to_chw(layout, values)
        return values.astype(np.float32) / np.float32(layout.scale)
    return values.astype(np.float32, copy=False)


def image_to_chw(layout: SensorLayout, values: np.ndarray) -> np.ndarray:
    """Reorder a batch of images to (B, C, H, W) without changing the dtype (a view when possible)."""
    if layout.layout == "HWC":
        return np.moveaxis(values, -1, 1)
    if layout.layout == "HW":
        return values[:, None]
    return values


# --------------------------------------------------------------------------------------------------
# statistics of the training data
# --------------------------------------------------------------------------------------------------
def feature_statistics(values: Any, min_std: float = MIN_STD) -> dict:
    """Per-feature mean/std over the first (sample) axis in float64, as nested lists (JSON friendly)."""
    import torch

    x = torch.as_tensor(np.asarray(values)).double()
    mean = x.mean(0)
    std = x.std(0, unbiased=False).clamp_min(min_std)
    return {"mean": mean.float().tolist(), "std": std.float().tolist()}


def is_binary(values: np.ndarray, scale: float = 1.0, chunk: int = 4096) -> bool:
    """Whether every value is exactly 0 or ``scale`` (checked in chunks: no full-size temporaries)."""
    values = np.asarray(values)
    if values.dtype == np.uint8 and scale == 1.0:
        return bool(values.max(initial=0) <= 1)
    for start in range(0, len(values), chunk):
        part = values[start:start + chunk]
        if not np.all((part == 0) | (part == scale)):
            return False
    return True


def data_statistics(observation_space: spaces.Dict, train_arrays: Mapping[str, Any]) -> dict:
    """What the inferred description needs from the training data, per sensor: ``{"binary": bool}`` for images
    and MultiBinary, ``{"mean", "std"}`` (of the model-layout float values) for vector Boxes."""
    out: dict[str, dict] = {}
    for name, sub in observation_space.spaces.items():
        if name not in train_arrays:
            raise ValueError(f"train_arrays lacks sensor {name!r} (has {sorted(train_arrays)})")
        layout = sensor_layout(sub)
        arr = np.asarray(train_arrays[name])
        if layout.kind == "image":
            out[name] = {"binary": is_binary(arr, layout.scale)}
        elif layout.kind == "vector":
            out[name] = feature_statistics(arr.astype(np.float32))
        else:
            out[name] = {}
    return out


# --------------------------------------------------------------------------------------------------
# the description
# --------------------------------------------------------------------------------------------------
def conv_layers_for(height: int, width: int) -> list[list[int]]:
    """(channels, 4, 2, 1) layers, channels 32, 64, 128, 256, until the smaller side is <= 8 (1 to 4 layers)."""
    side, layers = min(height, width), []
    while (side > 8 or not layers) and len(layers) < 4:
        layers.append([32 * 2 ** len(layers), 4, 2, 1])
        side //= 2
    return layers


def _clip(value: float, low: int, high: int) -> int:
    return int(max(low, min(high, value)))


def infer_modality(name: str, space: spaces.Space, statistics: Mapping[str, Any]) -> tuple[ModalitySpec, str]:
    """The inferred :class:`ModalitySpec` of one sensor and a sentence stating every choice."""
    layout = sensor_layout(space)
    if layout.kind == "image":
        c, h, w = layout.model_shape
        layers = conv_layers_for(h, w)
        latent = 16 if c * h * w <= 64 * 64 else 32
        binary = bool(statistics.get("binary", False))
        colour = {1: "grey", 3: "colour"}.get(c, f"{c}-channel")
        spec = ModalitySpec(name, layout.model_shape, "bernoulli", latent, "conv",
                            {"conv_layers": layers, "hidden": 256, "activation": "swish"})
        why = (f"image {layout.layout} -> model shape {layout.model_shape}, {'binary' if binary else colour} "
               f"values / {layout.scale:g} in [0, 1]; likelihood bernoulli"
               f"{'' if binary else ' (intensities as BCE targets)'}; conv {layers} + dense 256, latent {latent}")
        return spec, why
    if layout.kind == "vector":
        size = math.prod(layout.model_shape)
        hidden = [64, 64] if size <= 64 else [256, 256]
        latent = _clip(size, 2, MAX_VECTOR_LATENT)
        if "mean" not in statistics:
            raise ValueError(f"sensor {name!r}: a Gaussian modality needs the training data's mean/std "
                             f"(pass train_arrays or statistics)")
        norm = Normalisation(statistics["mean"], statistics["std"])
        spec = ModalitySpec(name, layout.model_shape, "gaussian", latent, "mlp",
                            {"hidden": hidden, "activation": "swish", "batchnorm": False}, normalisation=norm)
        return spec, (f"vector {layout.model_shape} ({size} values); likelihood gaussian on values normalised by "
                      f"the training data's per-feature mean/std; mlp {hidden}, latent {latent}")
    if layout.kind == "discrete":
        latent = _clip(layout.n_classes, 2, 16)
        spec = ModalitySpec(name, layout.model_shape, "categorical", latent, "mlp",
                            {"hidden": [64, 64], "activation": "leaky_relu", "batchnorm": True})
        return spec, f"Discrete({layout.n_classes}) -> one-hot; likelihood categorical; mlp [64, 64], latent {latent}"
    size = math.prod(layout.model_shape)
    latent = _clip(math.ceil(size / 2), 2, 16)
    spec = ModalitySpec(name, layout.model_shape, "bernoulli", latent, "mlp",
                        {"hidden": [64, 64], "activation": "leaky_relu", "batchnorm": True})
    return spec, f"MultiBinary {layout.model_shape}; likelihood bernoulli; mlp [64, 64], latent {latent}"


def apply_overrides(modalities: list[ModalitySpec], core: CoreSpec, overrides: Mapping[str, Any],
                    say: Callable[[str], None]) -> tuple[list[ModalitySpec], CoreSpec, dict]:
    """Split ``overrides`` into changed modality specs, a changed core and the remaining ModelConfig fields."""
    names = [m.name for m in modalities]
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"kind", "modalities", "core"}
    spec_fields = {f.name for f in dataclasses.fields(ModalitySpec)} - {"name"}
    core_fields = {f.name for f in dataclasses.fields(CoreSpec)}
    rest: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in names:
            bad = set(value) - spec_fields
            if bad:
                raise ValueError(f"override {key}: unknown ModalitySpec fields {sorted(bad)}; known: {sorted(spec_fields)}")
            i = names.index(key)
            modalities[i] = dataclasses.replace(modalities[i], **value)
            say(f"  override {key}: {value}")
        elif key == "core":
            bad = set(value) - core_fields
            if bad:
                raise ValueError(f"override core: unknown CoreSpec fields {sorted(bad)}; known: {sorted(core_fields)}")
            core = dataclasses.replace(core, **value)
            say(f"  override core: {value}")
        elif key in model_fields:
            rest[key] = value
            say(f"  override {key}: {value!r}")
        else:
            raise ValueError(f"unknown override {key!r}: use a modality name {names} (ModalitySpec fields), "
                             f"'core' (CoreSpec fields) or a ModelConfig field {sorted(model_fields)}")
    return modalities, core, rest


def infer_model_config(observation_space: spaces.Dict, train_arrays: Optional[Mapping[str, Any]] = None,
                       kind: str = "mhvae", overrides: Optional[Mapping[str, Any]] = None,
                       statistics: Optional[Mapping[str, Mapping[str, Any]]] = None,
                       verbose: bool = True) -> ModelConfig:
    """A :class:`ModelConfig` for the sensors of ``observation_space`` by the rules of this module.

    ``train_arrays``: the training data, ``{sensor: array (N, *env shape)}`` as the environment produces it
    (or as :mod:`mhvae_perception.data.collect` stored it); it gives the Gaussian normalisation and whether images
    are binary. Alternatively pass ``statistics`` (:func:`data_statistics`' output). ``overrides``:
    ``{sensor: {ModalitySpec field: value}, "core": {CoreSpec field: value}, ModelConfig field: value}``.
    Every choice is printed when ``verbose``.
    """
    check_observation_space(observation_space)
    if statistics is None:
        if train_arrays is None:
            raise ValueError("infer_model_config needs train_arrays (or their statistics) for the normalisation "
                             "of continuous sensors and to tell binary images from grey ones")
        statistics = data_statistics(observation_space, train_arrays)
    say = print if verbose else (lambda _msg: None)
    say(f"inferred model description ({kind}):")
    modalities = []
    for name, sub in observation_space.spaces.items():
        spec, why = infer_modality(name, sub, statistics.get(name, {}))
        modalities.append(spec)
        say(f"  {name}: {sub} -> {why}")
    core = CoreSpec(max(m.latent_dim for m in modalities), (256, 256, 256))
    say(f"  core: z_c size {core.latent_dim} (largest modality latent), MLP {list(core.hidden)}")
    modalities, core, rest = apply_overrides(modalities, core, dict(overrides or {}), say)
    if kind != "mhvae":
        core = dataclasses.replace(core, hidden=())
        say(f"  {kind}: one latent of size {core.latent_dim}, modality networks fused by one linear layer")
    return ModelConfig(kind, tuple(modalities), core, **rest)


# --------------------------------------------------------------------------------------------------
# the transfer recipe (beyond the paper)
# --------------------------------------------------------------------------------------------------
#: Per value of a sensor, how much its reconstruction log-likelihood weighs relative to a Bernoulli or
#: categorical value. A normalised Gaussian value with a learned variance scores tens of times more nats
#: than a mostly-black pixel; 30 reproduces Hyperhot's measured best image weight (λ_image = 20 against its
#: 8,376-value Gaussian waveform, docs/TRANSFER.md).
GAUSSIAN_VALUE_SCALE = 30.0
RECIPE_KL_WEIGHT = 10.0  # β^m on every sensor: the PendulumSound sweep's best (docs/TRANSFER.md)
RECIPE_AGREEMENT_WEIGHT = 10.0  # γ of the agreement term, same sweep
RECIPE_MAX_RECON_WEIGHT = 100.0  # the largest λ the sweep used


def reconstruction_scale(spec: ModalitySpec) -> float:
    """A sensor's number of values times :data:`GAUSSIAN_VALUE_SCALE` for a Gaussian likelihood (1 otherwise)."""
    return math.prod(spec.shape) * (GAUSSIAN_VALUE_SCALE if spec.likelihood == "gaussian" else 1.0)


def transfer_recipe(modalities: Sequence[ModalitySpec], kind: str = "mhvae") -> dict:
    """Loss weights for an MHVAE whose core latent must mean the same from every sensor (for cross-sensor
    transfer), from a stated rule on the sensors, as :meth:`ModelConfig.with_overrides` overrides:

    * λ_i (``recon_weight``) = max_j scale_j / scale_i, at most 100, with scale = :func:`reconstruction_scale`:
      each sensor's reconstruction weighs about as much as the largest one's, so that z_c does not learn one
      sensor only (PendulumSound: λ_sound = 20 for 12 Gaussian values against 7,200 pixels; Hyperhot:
      λ_image = 19.6 against its waveform);
    * for the MHVAE (``kind``), β^m_i (``kl_weight``) = 10 on every sensor and the agreement term γ = 10 (an
      extension beyond the paper: the single-sensor core posteriors are pulled towards the all-sensor one).
      The baselines get the λ_i only (β^m and γ are the MHVAE's).
    """
    scales = {m.name: reconstruction_scale(m) for m in modalities}
    top = max(scales.values())
    weights = {name: {"recon_weight": round(min(top / scale, RECIPE_MAX_RECON_WEIGHT), 3)} for name, scale in scales.items()}
    if kind != "mhvae":
        return {"modalities": weights}
    for changes in weights.values():
        changes["kl_weight"] = RECIPE_KL_WEIGHT
    return {"modalities": weights, "agreement_weight": RECIPE_AGREEMENT_WEIGHT}
