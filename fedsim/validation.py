"""Checks of user-given settings (rules, attacks, probes): one home, one error message form.

Each returns the value (as ``int`` or ``float``) or raises
:class:`~fedsim.errors.InvalidSettingError` naming the component, the setting, what is allowed
and the value given.
"""

from __future__ import annotations

import math
from typing import Any

from fedsim.errors import InvalidSettingError, ScenarioError

__all__ = ["is_integer", "is_real", "require_int", "require_known", "require_real"]


def require_int(rule: str, name: str, value: Any, *, minimum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a ``bool``) ≥ ``minimum``, else raise.

    Examples
    --------
    >>> require_int("krum", "f", 2, minimum=0)
    2
    >>> require_int("krum", "f", -1, minimum=0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: krum needs an integer f >= 0, got -1
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidSettingError(f"{rule} needs an integer {name} >= {minimum}, got {value!r}")
    return int(value)


def require_real(
    rule: str,
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` as a finite ``float`` inside the given interval, else raise.

    ``low_open``/``high_open`` make the matching bound strict.

    Examples
    --------
    >>> require_real("flame", "noise_lambda", 0.001, low=0.0)
    0.001
    >>> require_real("fltrust", "tau", 0, low=0.0, low_open=True)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: fltrust needs a finite tau > 0.0, got 0
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value)
    ok = ok and (low is None or (value > low if low_open else value >= low))
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        bounds = []
        if low is not None:
            bounds.append(f"{name} {'>' if low_open else '>='} {low}")
        if high is not None:
            bounds.append(f"{name} {'<' if high_open else '<='} {high}")
        wanted = " and ".join(bounds) or name
        raise InvalidSettingError(f"{rule} needs a finite {wanted}, got {value!r}")
    return float(value)


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


def require_known(path: str, value: Any, known: list[str]) -> None:
    """Raise a :class:`~fedsim.errors.ScenarioError` at ``path`` unless ``value`` is in ``known``.

    Examples
    --------
    >>> require_known("model.name", "cnn", ["cnn", "mlp"])
    >>> require_known("model.name", "vit", ["cnn", "mlp"])
    Traceback (most recent call last):
    ...
    fedsim.errors.ScenarioError: model.name: got 'vit'; one of: cnn, mlp
    """
    if value not in known:
        raise ScenarioError(path, value, f"one of: {', '.join(known)}")
