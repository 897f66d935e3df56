"""RL agents on MHVAE latents: training (``agents/train.py``), evaluation (``agents/evaluate.py``) and the
cross-modal transfer experiment (``agents/transfer.py``). Hyper-parameters live in :mod:`agents.config`.

The safe saved-agent loader for data collection is :mod:`agents.policy_loader`; register it explicitly with
``agents.policy_loader.register()`` (importing the package has no side effect on the collector)."""
