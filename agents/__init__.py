"""RL agents on MHVAE latents: training (``agents/train.py``), evaluation (``agents/evaluate.py``) and the
cross-modal transfer experiment (``agents/transfer.py``) on any registered Gymnasium environment observing a Dict
of >= 2 sensors (:mod:`agents.environments` resolves a name; the algorithm follows the action space). Settings and
hyper-parameters live in :mod:`agents.config`.

The safe saved-agent loader for data collection is :mod:`agents.policy_loader`; register it explicitly with
``agents.policy_loader.register()`` (importing the package has no side effect on the collector)."""
