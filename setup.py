"""Packaging for mhvae-perception: the library plus the project's environments, agents and pretraining."""
from pathlib import Path

from setuptools import find_packages, setup

version = {}
exec((Path(__file__).parent / "mhvae_perception" / "version.py").read_text(), version)

setup(
    name="mhvae-perception",
    version=version["__version__"],
    description="Multimodal hierarchical VAE perception for reinforcement-learning agents that survive a lost sensor",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mhvae_perception*", "envs*", "agents*", "pretrain*"]),
    package_data={"mhvae_perception": ["weights/*.pt", "weights/manifest.json", "weights/retired.json"]},  # the shipped models
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "gymnasium>=0.29",
        "stable-baselines3>=2.3",
        "numpy>=1.24",
        "sacred>=0.8.5",
        "setuptools<81",  # sacred 0.8.7 imports pkg_resources, removed in setuptools 81
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pillow>=9.0",
        "tensorboard>=2.12",
        "rich>=12",  # with tqdm, what Stable-Baselines3's progress_bar=True needs
    ],
    extras_require={
        "test": ["pytest>=7", "pygame>=2.1"],  # pygame: the "human" render mode's test (SDL dummy driver)
        "render": ["pygame>=2.1"],
        "bench": ["multivae"],
    },
)
