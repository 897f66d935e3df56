"""RL agents on MHVAE latents: training (``agents/train.py``), evaluation (``agents/evaluate.py``) and the
cross-modal transfer experiment (``agents/transfer.py``). Hyper-parameters live in :mod:`agents.config`.

Importing the package registers the safe saved-agent loader for data collection
(:mod:`agents.policy_loader`)."""
from agents.policy_loader import register as _register_policy_loader

_register_policy_loader()
