"""The inversion-attack registry (kept apart so attack modules can import it without cycles)."""

from __future__ import annotations

from fedsim.registry import Registry

__all__ = ["INVERSION_ATTACKS"]

INVERSION_ATTACKS: Registry[type] = Registry("inversion attack")
