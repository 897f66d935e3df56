"""Evaluation of trained models: importance-sampled log-likelihoods (the paper's rows) and linear / MLP state
probes (the transfer predictor). Imports only :mod:`mhvae_perception.models`."""
from . import estimators, probes

__all__ = ["estimators", "probes"]
