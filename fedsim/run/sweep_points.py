"""A sweep's points: each validated as a whole scenario and given a directory name.

The grammar and the sweep directory are described in :mod:`fedsim.run.sweep`; how points run
is :mod:`fedsim.run.sweep_exec`. Both use :class:`SweepPoint` from here.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from fedsim.errors import ScenarioError
from fedsim.scenario import Scenario, parse_scenario, set_dotted
from fedsim.scenario.sweep_grammar import SweepAxis, format_value, point_values, sweep_axes

__all__ = ["MAX_NAME", "SweepPoint", "expand_sweep", "plan_sweep"]

MAX_NAME = 150


class SweepPoint:
    """One validated point: its swept values, its scenario and its directory name."""

    def __init__(self, values: dict[str, Any], scenario: Scenario, name: str) -> None:
        self.values = values
        self.scenario = scenario
        self.name = name


def expand_sweep(raw: Any) -> list[SweepPoint]:
    """Validate the base scenario and every point of its sweep; return the points in order.

    Parameters
    ----------
    raw : dict
        A scenario as plain data (overrides already applied).

    Raises
    ------
    ScenarioError
        The base scenario, the sweep block or one point is invalid (the message names the
        point).
    """
    return plan_sweep(raw)[1]


def plan_sweep(raw: Any) -> tuple[list[SweepAxis], list[SweepPoint]]:
    """The sweep's axes and its validated, named points (see :func:`expand_sweep`)."""
    base = parse_scenario(raw)  # checks the base, the sweep block and every point's schema
    axes = sweep_axes(base.sweep) if base.sweep is not None else []
    raw = copy.deepcopy(raw)
    raw.pop("sweep", None)
    points = []
    for values in point_values(axes):
        label = [f"{k}={format_value(values[k])}" for axis in axes for k in axis.label_keys]
        point_raw = copy.deepcopy(raw)
        for key, value in values.items():
            set_dotted(point_raw, key, copy.deepcopy(value))
        try:
            scenario = parse_scenario(point_raw)
        except ScenarioError as e:
            raise ScenarioError(e.path, e.value, f"{e.allowed} (sweep point {values})") from None
        points.append(SweepPoint(values, scenario, ",".join(label)))
    _name_points(points)
    return axes, points


def _name_points(points: list[SweepPoint]) -> None:
    """Turn labels into safe, unique directory names (a hash suffix where needed)."""

    def digest(label: str) -> str:
        return hashlib.sha1(label.encode()).hexdigest()[:8]

    names = []
    for point in points:
        safe = "".join(ch if ch.isalnum() or ch in "-_.=," else "-" for ch in point.name)
        safe = safe or "point"
        if len(safe) > MAX_NAME:
            safe = f"{safe[: MAX_NAME - 9]}-{digest(point.name)}"
        names.append(safe)
    for point, name in zip(points, names, strict=True):
        point.name = name if names.count(name) == 1 else f"{name}-{digest(point.name)}"
