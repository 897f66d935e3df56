"""``python -m mhvae_perception.hub list``: the shipped models as a table (see :mod:`.pretrained`).

A module of its own because ``mhvae_perception.hub`` imports :mod:`.pretrained`: run as ``-m ...hub.pretrained``,
Python warns that the module was imported before it ran as the main program."""
from mhvae_perception.hub.pretrained import main

main()
