"""One error hierarchy for fedsim.

``ScenarioError`` (and every ``InvalidSettingError``) is the user's to fix: the CLI prints its
one-line message and exits with code 2. ``RunError`` is a run that failed: exit code 1.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FedsimError", "InvalidSettingError", "RunError", "ScenarioError", "UnknownNameError"]


class FedsimError(Exception):
    """Base class of every error fedsim raises on purpose."""


class ScenarioError(FedsimError):
    """A scenario (or a CLI argument) is invalid.

    Parameters
    ----------
    path : str
        Dotted key path of the offending value (``"defense.params.f"``), or ``""`` for the
        whole file.
    value : Any
        The offending value, shown with ``repr``.
    allowed : str
        What would have been accepted, phrased for the user.
    """

    def __init__(self, path: str, value: Any, allowed: str) -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        where = path or "scenario"
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{where}: got {shown}; {allowed}")


class InvalidSettingError(FedsimError, ValueError):
    """A rule, attack or mechanism was given a setting it cannot work with.

    Raised by the pure cores (aggregators, attacks, DP mechanisms) from ``__init__`` or when a
    round's inputs break a precondition (e.g. Krum with n < 2f+3). The message names the rule,
    the value and the requirement.
    """


class UnknownNameError(InvalidSettingError, KeyError):
    """A registry lookup missed; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunError(FedsimError):
    """A run failed for a reason other than its input (exit code 1)."""
