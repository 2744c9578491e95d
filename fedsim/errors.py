"""One error hierarchy for fedsim.

``ScenarioError`` (and every ``InvalidSettingError``) is the user's to fix: the CLI prints its
one-line message and exits with code 2. ``RunError`` is a run that failed: exit code 1.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "SETTING_ERRORS",
    "FedsimError",
    "InvalidSettingError",
    "RunError",
    "ScenarioError",
    "UnknownNameError",
]


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
    problem : str, optional
        Said instead of ``got <value>`` where the value is not the problem (a key given
        twice).

    The message is always one line: line breaks in ``allowed`` become spaces.
    """

    def __init__(self, path: str, value: Any, allowed: str, *, problem: str | None = None) -> None:
        self.path = path
        self.value = value
        self.allowed = " ".join(str(allowed).split())
        self.problem = problem
        where = path or "scenario"
        if problem is None:
            shown = " ".join(_short_repr(value).split())
            problem = f"got {shown}"
        super().__init__(f"{where}: {problem}; {self.allowed}")


def _short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters (a huge value is never rendered whole)."""
    short = reprlib.Repr()
    short.maxstring = short.maxother = limit
    short.maxlevel = 3
    try:
        shown = short.repr(value)
    except Exception:  # noqa: BLE001  (a hostile value must not break the error message)
        shown = f"<{type(value).__name__}>"
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


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


SETTING_ERRORS = (InvalidSettingError, TypeError, ValueError, KeyError, RuntimeError)
"""What building a component from user settings may raise: all become scenario errors."""
