"""The evasion-attack registry: a ``robustness.attacks`` entry's ``name`` → its class."""

from __future__ import annotations

from typing import Any

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import EvasionAttack
from fedsim.registry import Registry

__all__ = ["EVASION_ATTACKS", "build_attack"]

EVASION_ATTACKS: Registry[type[EvasionAttack]] = Registry("evasion attack")


def build_attack(name: str, **params: Any) -> EvasionAttack:
    """Build registered evasion attack ``name`` with ``params`` (validated by the attack).

    Examples
    --------
    >>> import fedsim.evasion
    >>> build_attack("pgd", eps=0.1, steps=20).label
    'pgd-linf-0.1'
    >>> build_attack("cw", eps=0.1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.UnknownNameError: unknown evasion attack 'cw'; known: autoattack, fgsm, ...
    """
    cls = EVASION_ATTACKS.get(name)
    try:
        return cls(**params)
    except TypeError as e:
        raise InvalidSettingError(f"evasion attack {name!r}: {e}") from e
