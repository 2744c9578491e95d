"""The attack base class and registry (names → classes); see :mod:`fedsim.attacks`."""

from __future__ import annotations

import math
from typing import ClassVar

from fedsim.registry import Registry

__all__ = ["ATTACKS", "NO_ATTACK", "STAGES", "Attack", "is_integer", "is_real"]

NO_ATTACK = "none"
"""The scenario name meaning "no attack"; never registered."""

STAGES = ("data", "update", "colluding")
"""Where an attack runs (see the module docstring)."""


class Attack:
    """Base class of every attack.

    Subclasses set the class variables ``name`` (the registry name) and ``stage`` (one of
    :data:`STAGES`), validate their settings in ``__init__`` (raising
    :class:`~fedsim.errors.InvalidSettingError` naming the attack, the value and the
    requirement) and store them as public attributes, which :meth:`describe` reports.
    """

    name: ClassVar[str] = "attack"
    stage: ClassVar[str] = "update"

    def describe(self) -> str:
        """One line naming the attack and its settings, for the run log."""
        settings = ", ".join(
            f"{k}={v!r}" for k, v in sorted(vars(self).items()) if not k.startswith("_")
        )
        return f"{self.name}({settings})"


ATTACKS: Registry[type[Attack]] = Registry("attack")


def is_real(value: object) -> bool:
    """Return whether ``value`` is a finite ``int`` or ``float`` (``bool`` excluded).

    Examples
    --------
    >>> is_real(0.5), is_real(3), is_real(True), is_real(float("inf")), is_real("1")
    (True, True, False, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: object) -> bool:
    """Return whether ``value`` is an ``int`` (``bool`` excluded).

    Examples
    --------
    >>> is_integer(3), is_integer(3.0), is_integer(False)
    (True, False, False)
    """
    return isinstance(value, int) and not isinstance(value, bool)
