"""The attack registry and the contract every attack follows.

An attack is a callable-style object built from validated settings by :func:`build_attack`.
Its class says *where* it runs through ``stage``:

``"data"``
    A client-side data-poisoning attack (:class:`clients.attacks.base.DataPoisoning`): the
    malicious client trains with the honest procedure on ``attack.poison(x, y, ...)``, then
    sends ``attack.transform_update(delta, reference=...)`` (identity unless the attack boosts
    or masks its update, as backdoors may).
``"update"``
    A client-side model-poisoning attack (:class:`clients.attacks.base.UpdateAttack`): the
    client trains honestly and sends ``attack.transform_update(delta, ...)``.
``"colluding"``
    A server-side adversary stage (:class:`server.adversary.base.ColludingAttack`) that sees
    the round's replies before aggregation and crafts one update per malicious client.

The scenario's ``attack: {name: none}`` means *no attack*; ``"none"`` is not a registered
attack (see :func:`is_attack`). The modules that register attacks live in ``clients/`` and
``server/`` and import this module, so they are imported lazily by :func:`_load`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

from fedsim.errors import InvalidSettingError
from fedsim.registry import Registry

__all__ = [
    "ATTACKS",
    "NO_ATTACK",
    "STAGES",
    "Attack",
    "accepts",
    "attack_names",
    "build_attack",
    "is_attack",
    "is_integer",
    "is_real",
]

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


def _load() -> None:
    """Import the modules that register attacks (lazily, to avoid import cycles)."""
    import clients.attacks  # noqa: F401
    import server.adversary  # noqa: F401


def build_attack(name: str, **params: Any) -> Attack:
    """Build the attack registered as ``name`` with validated ``params``.

    Parameters
    ----------
    name : str
        A registered attack name (see :func:`attack_names`); ``"none"`` is not one.
    **params
        The attack's settings; every name must be a parameter of the attack's class.

    Returns
    -------
    Attack
        The attack object; its ``stage`` says how to run it.

    Raises
    ------
    UnknownNameError
        ``name`` is not a registered attack (the message lists the known ones).
    InvalidSettingError
        A parameter is unknown to the attack (the message lists the allowed ones), a required
        one is missing (``label_flip`` needs ``num_classes``), or a value is invalid.

    Examples
    --------
    >>> build_attack("ipm", epsilon=0.5).describe()
    'ipm(epsilon=0.5)'
    >>> build_attack("ipm", eps=0.5)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: attack 'ipm' has no parameter 'eps'; allowed: epsilon
    """
    if name == NO_ATTACK:
        raise InvalidSettingError(
            f"{NO_ATTACK!r} means no attack and cannot be built; check is_attack(name) first"
        )
    _load()
    cls = ATTACKS.get(name)
    allowed = accepts(name)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidSettingError(
            f"attack {name!r} has no parameter {unknown[0]!r}; "
            f"allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    missing = sorted(_required(cls) - set(params))
    if missing:
        raise InvalidSettingError(f"attack {name!r} needs parameter {missing[0]!r}")
    return cls(**params)


def accepts(name: str) -> set[str]:
    """Names of the keyword parameters attack ``name`` takes.

    Examples
    --------
    >>> sorted(accepts("label_flip"))
    ['num_classes', 'source', 'target']
    """
    _load()
    signature = inspect.signature(ATTACKS.get(name))
    return {
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def _required(cls: type[Attack]) -> set[str]:
    """Return the names of the parameters of ``cls`` that have no default."""
    return {
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty
    }


def attack_names() -> list[str]:
    """Return the registered attack names, sorted (``"none"`` is not among them)."""
    _load()
    return ATTACKS.names()


def is_attack(name: str) -> bool:
    """Whether ``name`` is a registered attack; ``False`` for ``"none"`` and unknown names.

    Examples
    --------
    >>> is_attack("alie"), is_attack("none"), is_attack("nope")
    (True, False, False)
    """
    if name == NO_ATTACK:
        return False
    _load()
    return name in ATTACKS


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
