"""Shared set-up of the project's sacred experiments (pretrain/, agents/).

``prepare_experiment(ex)`` gives every command-line experiment the same conventions: a
``FileStorageObserver`` under ``runs/sacred`` unless an observer option was given (``-m``, ``-F``, ``-u``,
...), and captured output (``cout.txt``) without progress-bar frames.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

# sacred imports pkg_resources, which warns on recent setuptools; the warning is about sacred, not this project
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)

from sacred import Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.utils import apply_backspaces_and_linefeeds  # noqa: E402

__all__ = ["OBSERVER_FLAGS", "DEFAULT_OBSERVER_DIR", "prepare_experiment", "check_settings_first"]

#: sacred's command-line options that choose an observer (or none, ``--unobserved``).
OBSERVER_FLAGS = ("--mongo_db", "--file_storage", "--sql", "--tiny_db", "--s3", "--gcs", "--queue",
                  "--unobserved", "--neptune", "--slack", "--telegram")
DEFAULT_OBSERVER_DIR = Path("runs") / "sacred"


def prepare_experiment(ex: Experiment, observer_dir: str | Path = DEFAULT_OBSERVER_DIR) -> Experiment:
    """Register the default-observer option hook on ``ex`` and filter progress bars out of captured output.

    sacred calls option hooks for every run; this one acts only on command-line runs (``ex.run_commandline()``,
    recognised by docopt's ``COMMAND`` entry), so programmatic ``ex.run(...)`` calls (tests, reproduce.py) get
    no observer unless they add one. Returns ``ex`` for chaining.
    """
    observer_dir = Path(observer_dir)

    def add_default_observer(options: Mapping[str, Any]) -> None:
        from_command_line = "COMMAND" in options
        if from_command_line and not any(options.get(flag) for flag in OBSERVER_FLAGS):
            ex.observers.append(FileStorageObserver(str(observer_dir)))

    # sacred inspects the hook's signature: its argument must be called ``options``
    ex.option_hook(add_default_observer)
    ex.captured_out_filter = apply_backspaces_and_linefeeds
    return ex


def check_settings_first(ex: Experiment, check: Callable[[dict, str], None], commands: tuple[str, ...] = ("main",)
                         ) -> Experiment:
    """Register ``check(config, command_name)`` as a config hook of ``ex``: it runs before sacred seeds its
    generators or an observer creates ``runs/sacred/<id>``, so a refused setting leaves nothing behind. Other
    commands (``print_config``, ...) only show the settings."""

    def check_before_the_run(config, command_name, logger) -> dict:  # sacred reads these parameter names
        if command_name in commands:
            check(dict(config), command_name)
        return {}

    ex.config_hook(check_before_the_run)
    return ex
