"""Import paths of release 0.x, before the library was cut into layers: ``mhvae_perception.model``,
``.wrappers`` functions and the rest keep working for one release, with a ``DeprecationWarning`` naming the new
path. One table, one finder; nothing here runs unless an old path is imported."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: old module path (under ``mhvae_perception.``) -> the module that now holds its names
MOVED = {
    "model": "models.mhvae", "baselines": "models.baselines", "distributions": "models.distributions",
    "networks": "models.networks", "registry": "models.registry", "specs": "models.specs",
    "subsets": "models.subsets", "estimators": "evaluation.estimators", "probes": "evaluation.probes",
    "checkpoints": "hub.checkpoints", "pretrained": "hub.pretrained", "collect": "data.collect",
    "describe": "data.describe", "presets": "data.presets",
}
PACKAGE = __name__.rsplit(".", 1)[0]


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``mhvae_perception.<old>`` as the module object at its new path (one object: patches and
    ``isinstance`` see the same thing) and warns once per old path."""

    def find_spec(self, fullname, path=None, target=None):
        old = fullname[len(PACKAGE) + 1:] if fullname.startswith(PACKAGE + ".") else None
        if old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        old = spec.name[len(PACKAGE) + 1:]
        new = f"{PACKAGE}.{MOVED[old]}"
        warnings.warn(f"{spec.name} is deprecated and will be removed in the next release; import {new}",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module):
        return None

    def get_code(self, fullname):  # `python -m mhvae_perception.pretrained ...` runs the new module as __main__
        new = f"{PACKAGE}.{MOVED[fullname[len(PACKAGE) + 1:]]}"
        return compile(f"import runpy\nrunpy.run_module({new!r}, run_name='__main__', alter_sys=True)\n",
                       f"<{fullname}: moved to {new}>", "exec")


def install() -> None:
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
