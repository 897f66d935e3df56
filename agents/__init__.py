"""RL agents on MHVAE latents: training (``agents/train.py``) and the cross-modal transfer experiment
(``agents/transfer.py``). Hyper-parameters live in :mod:`agents.config`."""
