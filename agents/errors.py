"""The agents' settings error, below every agents module that raises it (settings, environments)."""
from __future__ import annotations


class SettingsError(ValueError):
    """A setting has a value that is not allowed, or does not match the agent folder it would train into (the
    message names the setting, the value and the fix)."""
