"""Aggregation rules: ``build(name, **params)`` returns a callable rule.

Every rule works on an ``(n, d)`` float64 matrix of client deltas; see
:mod:`server.aggregators.base` for the contract.
"""

from __future__ import annotations

import inspect
from typing import Any

from fedsim.errors import InvalidSettingError
from server.aggregators import fedavg  # noqa: F401  (registers the rule)
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.registry import AGGREGATORS

__all__ = ["AGGREGATORS", "Aggregate", "Aggregator", "accepts", "build", "names"]


def build(name: str, **params: Any) -> Aggregator:
    """Build the rule registered as ``name`` with validated ``params``.

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the known rules).
    InvalidSettingError
        A parameter is unknown to the rule or has an invalid value.
    """
    cls = AGGREGATORS.get(name)
    allowed = accepts(name)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidSettingError(
            f"{name} has no parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed)) or 'none'}"
        )
    return cls(**params)


def accepts(name: str) -> set[str]:
    """Names of the keyword parameters rule ``name`` takes."""
    signature = inspect.signature(AGGREGATORS.get(name))
    return {
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }


def names() -> list[str]:
    """Registered rule names, sorted."""
    return AGGREGATORS.names()
