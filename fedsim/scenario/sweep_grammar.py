"""The ``sweep:`` block: its two spellings checked and turned into axes.

The grammar is described in :mod:`fedsim.run.sweep`. :func:`sweep_axes` is called by the scenario
validation (:func:`fedsim.scenario.parse_scenario`), so a bad block is a
:class:`~fedsim.errors.ScenarioError` naming the ``sweep.…`` path, like any other key; this
module therefore depends on nothing but the error types.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fedsim.errors import ScenarioError

__all__ = ["SweepAxis", "format_value", "point_values", "sweep_axes"]

FULL_FORM_KEYS = ("grid", "zip")


@dataclass(frozen=True)
class SweepAxis:
    """One axis of a sweep: keys that vary together and their rows of values.

    A grid key is an axis with one key; a zip group has several, ``rows[i]`` holding the i-th
    value of each.
    """

    keys: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @property
    def label_keys(self) -> tuple[str, ...]:
        """The keys that name a point: the first alone when its values are distinct."""
        first = [format_value(row[0]) for row in self.rows]
        return self.keys[:1] if len(set(first)) == len(first) else self.keys


def format_value(value: Any) -> str:
    """A swept value as text: strings as they are, everything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def sweep_axes(sweep: Any) -> list[SweepAxis]:
    """Check a ``sweep:`` block (either form) and return its axes in order.

    Parameters
    ----------
    sweep : Any
        The block as read from YAML.

    Returns
    -------
    list of SweepAxis
        One per grid key and one per zip group; the points are their Cartesian product.

    Raises
    ------
    ScenarioError
        Naming the offending ``sweep.…`` path and what is allowed.

    Examples
    --------
    >>> axes = sweep_axes(
    ...     {
    ...         "zip": [{"attack.name": ["none", "ipm"], "attack.params": [{}, {"epsilon": 0.1}]}],
    ...         "grid": {"seed": [0, 1, 2]},
    ...     }
    ... )
    >>> [(axis.keys, len(axis.rows)) for axis in axes]
    [(('attack.name', 'attack.params'), 2), (('seed',), 3)]
    >>> axes[0].rows[1]
    ('ipm', {'epsilon': 0.1})
    """
    if not isinstance(sweep, dict):
        raise ScenarioError("sweep", sweep, "a mapping of dotted keys to lists of values")
    full = [k for k in sweep if k in FULL_FORM_KEYS]
    if full and len(full) != len(sweep):
        plain = [k for k in sweep if k not in FULL_FORM_KEYS]
        raise ScenarioError(
            f"sweep.{plain[0]}", sweep[plain[0]], "a key under sweep.grid when grid/zip are used"
        )
    axes: list[SweepAxis] = []
    if not full:
        axes = [_grid_axis("sweep", k, v) for k, v in sweep.items()]
    for part in full:
        if part == "grid":
            grid = sweep["grid"]
            if not isinstance(grid, dict):
                raise ScenarioError("sweep.grid", grid, "a mapping of dotted keys to lists")
            axes += [_grid_axis("sweep.grid", k, v) for k, v in grid.items()]
        else:
            groups = sweep["zip"]
            if not isinstance(groups, list):
                raise ScenarioError("sweep.zip", groups, "a list of {key: [values]} groups")
            axes += [_zip_axis(f"sweep.zip.{i}", group) for i, group in enumerate(groups)]
    _check_keys(axes)
    return axes


def point_values(axes: list[SweepAxis]) -> Iterator[dict[str, Any]]:
    """Each point's swept values (dotted key → value), the last axis varying fastest."""
    for combo in itertools.product(*(axis.rows for axis in axes)):
        values: dict[str, Any] = {}
        for axis, row in zip(axes, combo, strict=True):
            values.update(zip(axis.keys, row, strict=True))
        yield values


def _check_values(path: str, values: Any) -> list[Any]:
    if not isinstance(values, list) or not values:
        raise ScenarioError(path, values, "a non-empty list of values")
    return values


def _grid_axis(prefix: str, key: Any, values: Any) -> SweepAxis:
    _check_key(prefix, key)
    values = _check_values(f"{prefix}.{key}", values)
    axis = SweepAxis((key,), tuple((v,) for v in values))
    _check_distinct(f"{prefix}.{key}", axis)
    return axis


def _zip_axis(path: str, group: Any) -> SweepAxis:
    if not isinstance(group, dict) or not group:
        raise ScenarioError(path, group, "a mapping of dotted keys to lists of equal length")
    columns = []
    for key, values in group.items():
        _check_key(path, key)
        columns.append(_check_values(f"{path}.{key}", values))
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        shown = {k: len(v) for k, v in zip(group, columns, strict=True)}
        raise ScenarioError(path, shown, "lists of the same length (their i-th values go together)")
    axis = SweepAxis(tuple(group), tuple(zip(*columns, strict=True)))
    _check_distinct(path, axis)
    return axis


def _check_key(prefix: str, key: Any) -> None:
    if (
        not isinstance(key, str)
        or not key
        or any(not part for part in key.split("."))
        or key.split(".")[0] == "sweep"
    ):
        raise ScenarioError(f"{prefix}.{key}", key, "a dotted scenario key (not sweep itself)")


def _check_distinct(path: str, axis: SweepAxis) -> None:
    seen = [tuple(format_value(v) for v in row) for row in axis.rows]
    if len(set(seen)) != len(seen):
        repeated = next(row for row in seen if seen.count(row) > 1)
        raise ScenarioError(path, list(repeated), "distinct values (a point would run twice)")


def _check_keys(axes: list[SweepAxis]) -> None:
    keys = [k for axis in axes for k in axis.keys]
    for i, key in enumerate(keys):
        for other in keys[:i]:
            if key == other or key.startswith(other + ".") or other.startswith(key + "."):
                raise ScenarioError(
                    f"sweep.{key}", key, f"a key swept in one place only (overlaps {other!r})"
                )
