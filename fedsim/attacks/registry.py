"""The attack base class and registry (names → classes); see :mod:`fedsim.attacks`."""

from __future__ import annotations

from typing import ClassVar

from fedsim.registry import Registry

__all__ = ["ATTACKS", "NO_ATTACK", "STAGES", "Attack"]

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
