"""MultiVae's JMVAE with the MHVAE's MNIST image and label networks (26-d latent), timed for bench_model.py.

Needs the optional benchmark extra: ``pip install -e ".[bench]"``.
"""
from __future__ import annotations

import time

import torch
from multivae.data.datasets.base import MultimodalBaseDataset
from multivae.models import JMVAE, JMVAEConfig
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn.base_architectures import BaseDecoder, BaseEncoder
from torch import nn

from mhvae_perception import presets
from mhvae_perception.models.networks import build_modality_networks

LATENT = 26


class Encoder(BaseEncoder):
    def __init__(self, spec) -> None:
        super().__init__()
        nets = build_modality_networks(spec.network, spec.shape, spec.network_kwargs)
        self.latent_dim = LATENT
        self.body, self.head = nets.encoder, nn.Linear(nets.hidden_dim, 2 * LATENT)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        mu, logvar = self.head(self.body(x)).chunk(2, dim=-1)
        return ModelOutput(embedding=mu, log_covariance=logvar)


class Decoder(BaseDecoder):
    def __init__(self, spec) -> None:
        super().__init__()
        self.net = build_modality_networks(spec.network, spec.shape, spec.network_kwargs).make_decoder(LATENT)

    def forward(self, z: torch.Tensor) -> ModelOutput:
        lead = z.shape[:-1]
        out = self.net(z.reshape(-1, z.shape[-1]))
        return ModelOutput(reconstruction=out.reshape(*lead, *out.shape[1:]))


def build() -> JMVAE:
    cfg = presets.config("mnist", "jmvae")
    specs = {m.name: m for m in cfg.modalities}
    config = JMVAEConfig(n_modalities=2, latent_dim=LATENT, input_dims={n: s.shape for n, s in specs.items()},
                         decoders_dist={"image": "bernoulli", "label": "categorical"}, alpha=0.01, warmup=200)
    return JMVAE(config, encoders={n: Encoder(s) for n, s in specs.items()},
                 decoders={n: Decoder(s) for n, s in specs.items()})


def dataset(n: int, seed: int) -> MultimodalBaseDataset:
    g = torch.Generator().manual_seed(seed)
    data = {"image": torch.bernoulli(torch.full((n, 1, 28, 28), 0.2), generator=g),
            "label": torch.nn.functional.one_hot(torch.randint(0, 10, (n,), generator=g), 10).float()}
    return MultimodalBaseDataset(data=data, labels=torch.zeros(n))


def training_step(batch_size: int = 64):
    """A closure running one Adam (fused) training step of MultiVae's JMVAE on random MNIST-shaped data."""
    torch.manual_seed(0)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    batches = [dataset(batch_size, seed) for seed in range(8)]
    counter = [0]
    model.train()

    def step() -> None:
        out = model(batches[counter[0] % 8], epoch=1)
        counter[0] += 1
        opt.zero_grad()
        out.loss.backward()
        opt.step()

    return step


def joint_nll_seconds(points: int) -> float:
    """Seconds per 1,000 points of MultiVae's own compute_joint_nll at K = 1000 (its defaults)."""
    torch.manual_seed(0)
    model = build().eval()
    data = dataset(points, seed=1)
    start = time.perf_counter()
    with torch.no_grad():
        model.compute_joint_nll(data, K=1000)
    return (time.perf_counter() - start) / points * 1000
