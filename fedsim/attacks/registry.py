"""The attack base class and registry (names → classes); see :mod:`fedsim.attacks`."""

from __future__ import annotations

from typing import ClassVar

from fedsim.components import Describable
from fedsim.registry import Registry

__all__ = ["ATTACKS", "NO_ATTACK", "STAGES", "Attack"]

NO_ATTACK = "none"
"""The scenario name meaning "no attack"; never registered."""

STAGES = ("data", "update", "colluding")
"""Where an attack runs (see the module docstring)."""


class Attack(Describable):
    """Base class of every attack.

    Subclasses set the class variables ``name`` (the registry name) and ``stage`` (one of
    :data:`STAGES`), validate their settings in ``__init__`` (raising
    :class:`~fedsim.errors.InvalidSettingError` naming the attack, the value and the
    requirement) and store them as public attributes, which :meth:`describe` reports.
    """

    name: ClassVar[str] = "attack"
    stage: ClassVar[str] = "update"


ATTACKS: Registry[type[Attack]] = Registry("attack")
