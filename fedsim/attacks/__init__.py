"""Attacks as pure torch code, and their registry: ``build_attack(name, **params)``.

An attack is an object built from validated settings by :func:`build_attack`. Its class says
*where* it runs through ``stage``:

``"data"``
    A client-side data-poisoning attack (:class:`fedsim.attacks.local.DataPoisoning`): the
    malicious client trains with the honest procedure on ``attack.poison(x, y, ...)``, then
    sends ``attack.transform_update(delta, reference=...)`` (identity unless the attack boosts
    or masks its update, as backdoors may).
``"update"``
    A client-side model-poisoning attack (:class:`fedsim.attacks.local.UpdateAttack`): the
    client trains honestly and sends ``attack.transform_update(delta, ...)``.
``"colluding"``
    A colluding attack (:class:`fedsim.attacks.colluding.ColludingAttack`) that the server's
    adversary stage runs on the round's replies before aggregation, crafting one update per
    malicious client.

The attacks know nothing of Flower: the ClientApp (``clients/``) and the server's adversary
stage (``server/``) call them. The scenario's ``attack: {name: none}`` means *no attack*;
``"none"`` is not a registered attack (see :func:`is_attack`). Importing this package
registers every attack.
"""

from __future__ import annotations

from typing import Any

from fedsim.attacks import colluding  # noqa: F401  (registers the colluding attacks)
from fedsim.attacks.backdoor import Backdoor, BadNets, backdoor_asr, backdoor_lifespan
from fedsim.attacks.dba import DBA
from fedsim.attacks.gaussian import Gaussian
from fedsim.attacks.label_flip import LabelFlip
from fedsim.attacks.local import ClientAttack, DataPoisoning, UpdateAttack
from fedsim.attacks.registry import ATTACKS, NO_ATTACK, STAGES, Attack
from fedsim.attacks.scaling import Scaling
from fedsim.attacks.sign_flip import SignFlip
from fedsim.attacks.text_backdoor import TextBackdoor, text_backdoor_asr
from fedsim.errors import InvalidSettingError

__all__ = [
    "ATTACKS",
    "DBA",
    "NO_ATTACK",
    "STAGES",
    "Attack",
    "Backdoor",
    "BadNets",
    "ClientAttack",
    "DataPoisoning",
    "Gaussian",
    "LabelFlip",
    "Scaling",
    "SignFlip",
    "TextBackdoor",
    "UpdateAttack",
    "accepts",
    "attack_names",
    "backdoor_asr",
    "backdoor_lifespan",
    "build_attack",
    "is_attack",
    "text_backdoor_asr",
]


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
    fedsim.errors.InvalidSettingError: ipm has no parameter 'eps'; allowed: epsilon
    """
    if name == NO_ATTACK:
        raise InvalidSettingError(
            f"{NO_ATTACK!r} means no attack and cannot be built; check is_attack(name) first"
        )
    return ATTACKS.build(name, **params)


def accepts(name: str) -> set[str]:
    """Names of the keyword parameters attack ``name`` takes.

    Examples
    --------
    >>> sorted(accepts("label_flip"))
    ['num_classes', 'source', 'target']
    """
    return ATTACKS.accepts(name)


def attack_names() -> list[str]:
    """Return the registered attack names, sorted (``"none"`` is not among them)."""
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
    return name in ATTACKS
