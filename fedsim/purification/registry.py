"""The purifier registry: ``robustness.purifier.name`` → its class."""

from __future__ import annotations

from typing import Any

from fedsim.purification.base import Purifier
from fedsim.registry import Registry

__all__ = ["PURIFIERS", "build_purifier"]

PURIFIERS: Registry[type[Purifier]] = Registry("purifier")


def build_purifier(name: str, **params: Any) -> Purifier:
    """Build registered purifier ``name`` with ``params`` (checked against its signature).

    Examples
    --------
    >>> import fedsim.purification
    >>> build_purifier("bit_depth", bits=4)
    BitDepth(bits=4)
    >>> build_purifier("jpeg")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.UnknownNameError: unknown purifier 'jpeg'; known: bit_depth, diffusion, ...
    """
    return PURIFIERS.build(name, **params)  # type: ignore[return-value]
