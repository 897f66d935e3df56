"""Test-wide settings: one torch thread (the tests' tensors are small; on a shared 2-core machine extra
threads only wait for each other)."""
import torch

torch.set_num_threads(1)
