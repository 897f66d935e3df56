"""Modality networks: each builder returns an encoder (x -> hidden representation h) and a decoder factory.

A builder takes the modality's shape and its ``network_kwargs`` and returns a :class:`ModalityNetworks`:
``encoder`` maps a batch ``(B, *shape)`` to ``h`` of size ``hidden_dim`` (the encoder's last hidden layer,
which the core encoder reads), and ``make_decoder(latent_dim)`` builds a decoder mapping ``(B, latent_dim)``
to the likelihood parameters ``(B, *shape)`` (logits or means). Decoders mirror the encoders.

Choices the paper leaves open (documented here and in the README):
- MLP hidden layers are Linear -> BatchNorm1d -> activation, BatchNorm optional.
- Conv encoders use no BatchNorm; transposed-conv decoders choose ``output_padding`` so that the output has
  exactly the input's spatial size.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_linear_bn_eval


def make_activation(name: str) -> nn.Module:
    """The activation called ``name``: "leaky_relu" (slope 0.2), "swish" (SiLU), "relu" or "elu"."""
    # In-place where autograd allows it (their backward needs only the output): one memory pass less.
    table = {"leaky_relu": lambda: nn.LeakyReLU(0.2, inplace=True), "swish": nn.SiLU,
             "relu": lambda: nn.ReLU(inplace=True), "elu": nn.ELU}
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(table)}")
    return table[name]()


def mlp(sizes: Sequence[int], activation_name: str = "leaky_relu", batchnorm: bool = True,
        last_activation: bool = True) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]``; hidden layers get BatchNorm (optional) and activation."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_activation:
            if batchnorm:
                layers.append(nn.BatchNorm1d(b))
            layers.append(make_activation(activation_name))
    return nn.Sequential(*layers)


def mlp_with_head(in_dim: int, hidden: Sequence[int], out_dim: int, activation_name: str = "leaky_relu",
                  batchnorm: bool = True) -> nn.Sequential:
    """The hidden MLP (or nothing, when ``hidden`` is empty) followed by a linear output layer."""
    hidden = tuple(hidden)
    body = mlp([in_dim, *hidden], activation_name, batchnorm) if hidden else nn.Identity()
    return nn.Sequential(body, nn.Linear(hidden[-1] if hidden else in_dim, out_dim))


@dataclass
class ModalityNetworks:
    encoder: nn.Module
    hidden_dim: int
    make_decoder: Callable[[int], nn.Module]


class Reshape(nn.Module):
    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)


def build_mlp(shape: Sequence[int], hidden: Sequence[int] = (512, 512, 512), activation: str = "leaky_relu",
              batchnorm: bool = True) -> ModalityNetworks:
    """Fully connected encoder/decoder on the flattened input (the paper's MNIST and label networks)."""
    size = 1
    for s in shape:
        size *= int(s)
    hidden = [int(h) for h in hidden]
    encoder = nn.Sequential(nn.Flatten(), mlp([size, *hidden], activation, batchnorm))

    def make_decoder(latent_dim: int) -> nn.Module:
        return nn.Sequential(mlp([latent_dim, *hidden[::-1]], activation, batchnorm),
                             nn.Linear(hidden[0], size), Reshape(shape))

    return ModalityNetworks(encoder, hidden[-1], make_decoder)


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def build_conv(shape: Sequence[int], conv_layers: Sequence[Sequence[int]] = ((32, 4, 2, 1), (64, 4, 2, 1)),
               hidden: int = 128, activation: str = "swish") -> ModalityNetworks:
    """Convolutional encoder ``[(channels, kernel, stride, padding), ...]`` then a linear layer of ``hidden``.

    The decoder is the mirror: linear layers back to the last feature map, then transposed convolutions
    whose ``output_padding`` restores each intermediate size exactly.
    """
    act = activation
    if len(shape) != 3:
        raise ValueError(f"conv networks need (C, H, W) inputs, got shape {tuple(shape)}")
    channels, height, width = (int(s) for s in shape)
    layers = [tuple(int(v) for v in layer) for layer in conv_layers]
    sizes = [(height, width)]
    modules: list[nn.Module] = []
    in_ch = channels
    for out_ch, k, s, p in layers:
        modules += [nn.Conv2d(in_ch, out_ch, k, s, p), make_activation(act)]
        h, w = sizes[-1]
        sizes.append((_conv_out(h, k, s, p), _conv_out(w, k, s, p)))
        if min(sizes[-1]) < 1:
            raise ValueError(f"conv layers {layers} shrink the input {tuple(shape)} to nothing")
        in_ch = out_ch
    flat = in_ch * sizes[-1][0] * sizes[-1][1]
    encoder = nn.Sequential(*modules, nn.Flatten(), nn.Linear(flat, hidden), make_activation(act))

    def make_decoder(latent_dim: int) -> nn.Module:
        dec: list[nn.Module] = [nn.Linear(latent_dim, hidden), make_activation(act),
                                nn.Linear(hidden, flat), make_activation(act),
                                Reshape((in_ch, *sizes[-1]))]
        for i in range(len(layers) - 1, -1, -1):
            out_ch = layers[i - 1][0] if i > 0 else channels
            _, k, s, p = layers[i]
            (h_in, w_in), (h_out, w_out) = sizes[i + 1], sizes[i]
            pad = (h_out - ((h_in - 1) * s - 2 * p + k), w_out - ((w_in - 1) * s - 2 * p + k))
            dec.append(nn.ConvTranspose2d(layers[i][0], out_ch, k, s, p, output_padding=pad))
            if i > 0:
                dec.append(make_activation(act))
        return nn.Sequential(*dec)

    return ModalityNetworks(encoder, int(hidden), make_decoder)


def build_linear(shape: Sequence[int], hidden: int = 0) -> ModalityNetworks:
    """Linear maps only (h = x when ``hidden`` is 0): for closed-form checks of the estimators."""
    size = 1
    for s in shape:
        size *= int(s)
    if hidden:
        encoder: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(size, hidden))
    else:
        encoder = nn.Flatten()
    return ModalityNetworks(encoder, hidden or size,
                            lambda latent_dim: nn.Sequential(nn.Linear(latent_dim, size), Reshape(shape)))


NETWORKS: dict[str, Callable[..., ModalityNetworks]] = {
    "mlp": build_mlp,
    "conv": build_conv,
    "linear": build_linear,
}


def build_modality_networks(name: str, shape: Sequence[int], kwargs: dict) -> ModalityNetworks:
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}")
    try:
        return NETWORKS[name](shape, **kwargs)
    except TypeError as err:
        raise ValueError(f"bad network_kwargs {kwargs} for network {name!r}: {err}") from err


def fused_for_inference(module: nn.Module) -> nn.Module:
    """An eval-mode copy in which every Linear followed by BatchNorm1d is folded into one Linear, and
    convolution weights are stored channels-last (faster on CPU).

    Same outputs as ``module.eval()`` (up to float rounding) with one pass over the activations less per
    layer; used by the estimators, which decode millions of samples, and by the RL wrappers.
    """
    fused = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)  # faster convolutions on CPU
    for seq in [m for m in fused.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            if isinstance(seq[i], nn.Linear) and isinstance(seq[i + 1], nn.BatchNorm1d):
                seq[i] = fuse_linear_bn_eval(seq[i], seq[i + 1])
                seq[i + 1] = nn.Identity()
    return fused
