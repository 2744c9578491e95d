"""Aggregation rules: ``build(name, **params)`` returns a callable rule.

Every rule works on an ``(n, d)`` float64 matrix of client deltas; see
:mod:`server.aggregators.base` for the contract. Pre-aggregation stages (``bucketing``,
``norm_bound``) run in front of any rule through :func:`build_pipeline`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fedsim.errors import InvalidSettingError
from server.aggregators import (  # noqa: F401  (each import registers its rule or stage)
    arc,
    bucketing,
    bulyan,
    centered_clipping,
    deepsight,
    dnc,
    fedavg,
    flame,
    fldetector,
    fltrust,
    foolsgold,
    geometric_median,
    krum,
    median,
    multikrum,
    nnm,
    norm_bound,
    rlr,
    signguard,
    trimmed_mean,
)
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.pipeline import Pipeline, PreStage
from server.aggregators.registry import AGGREGATORS, PRE_STAGES

__all__ = [
    "AGGREGATORS",
    "Aggregate",
    "Aggregator",
    "PRE_STAGES",
    "Pipeline",
    "PreStage",
    "accepts",
    "build",
    "build_pipeline",
    "build_pre",
    "names",
    "pre_accepts",
    "pre_names",
]


def build(name: str, **params: Any) -> Aggregator:
    """Build the rule registered as ``name`` with validated ``params``.

    Raises
    ------
    UnknownNameError
        ``name`` is not registered (the message lists the known rules).
    InvalidSettingError
        A parameter is unknown to the rule, missing, or has an invalid value.

    Examples
    --------
    >>> build("krum", f=1).describe()
    'krum(f=1)'
    >>> build("krum", F=1)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: krum has no parameter 'F'; allowed: f
    """
    return AGGREGATORS.build(name, **params)


def build_pre(name: str, **params: Any) -> PreStage:
    """Build the pre-aggregation stage registered as ``name`` with validated ``params``.

    Raises
    ------
    UnknownNameError
        ``name`` is not a registered stage (the message lists the known ones).
    InvalidSettingError
        A parameter is unknown to the stage, missing, or has an invalid value.
    """
    return PRE_STAGES.build(name, **params)


def build_pipeline(
    name: str,
    params: Mapping[str, Any] | None = None,
    pre: Sequence[str | Mapping[str, Any]] = (),
) -> Aggregator:
    """Build rule ``name`` behind the pre-aggregation stages listed in ``pre``.

    Parameters
    ----------
    name : str
        The rule (``defense.aggregator``).
    params : mapping, optional
        The rule's settings (``defense.params``).
    pre : sequence
        ``defense.pre``: each item a stage name (``"bucketing"``) or a mapping
        ``{"name": ..., "params": {...}}``, applied in order.

    Returns
    -------
    Aggregator
        The rule itself when ``pre`` is empty, else a :class:`Pipeline`.

    Raises
    ------
    UnknownNameError, InvalidSettingError
        An unknown name or parameter, a missing or invalid setting, a malformed ``pre`` item.

    Examples
    --------
    >>> build_pipeline("median", {}, ["bucketing"])
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: bucketing needs parameter 'bucket_size'
    >>> pre = [{"name": "bucketing", "params": {"bucket_size": 2}}]
    >>> agg = build_pipeline("krum", {"f": 1}, pre)
    >>> agg.describe()
    'bucketing(bucket_size=2, seed=0) → krum(f=1)'
    """
    rule = build(name, **dict(params or {}))
    stages = []
    for index, item in enumerate(pre):
        stage_name, stage_params = _pre_item(index, item)
        stages.append(build_pre(stage_name, **stage_params))
    return Pipeline(stages, rule) if stages else rule


def accepts(name: str) -> set[str]:
    """Return the names of the keyword parameters rule ``name`` takes."""
    return AGGREGATORS.accepts(name)


def names() -> list[str]:
    """Return the registered rule names, sorted."""
    return AGGREGATORS.names()


def pre_accepts(name: str) -> set[str]:
    """Return the names of the keyword parameters pre-aggregation stage ``name`` takes."""
    return PRE_STAGES.accepts(name)


def pre_names() -> list[str]:
    """Return the registered pre-aggregation stage names, sorted."""
    return PRE_STAGES.names()


def _pre_item(index: int, item: Any) -> tuple[str, dict[str, Any]]:
    """Split one ``defense.pre`` item into (name, params)."""
    if isinstance(item, str):
        return item, {}
    if isinstance(item, Mapping) and isinstance(item.get("name"), str):
        extra = sorted(set(item) - {"name", "params"})
        params = item.get("params") or {}
        if not extra and isinstance(params, Mapping):
            return item["name"], dict(params)
    raise InvalidSettingError(
        f"defense.pre[{index}] must be a stage name or {{name: ..., params: {{...}}}}, "
        f"got {item!r}; known stages: {', '.join(PRE_STAGES.names())}"
    )
