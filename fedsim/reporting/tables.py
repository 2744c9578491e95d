"""Shared pieces of the sweep reports: run statistics and Markdown tables."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "AGGREGATOR",
    "ATTACK",
    "Group",
    "Stat",
    "format_figure",
    "format_stat",
    "markdown_table",
    "mean_std",
]

AGGREGATOR = "defense.aggregator"
ATTACK = "attack.name"


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of ``n`` values (``std`` is None when n < 2)."""

    mean: float | None
    std: float | None
    n: int


@dataclass(frozen=True)
class Group:
    """The runs sharing one combination of swept values (all seeds)."""

    values: dict[str, str]
    points: list[str]
    stats: dict[str, Stat]


def mean_std(values: Iterable[float]) -> Stat:
    """Mean and sample standard deviation (n − 1 in the denominator).

    Examples
    --------
    >>> stat = mean_std([0.8, 0.9, 1.0])
    >>> round(stat.mean, 6), round(stat.std, 6), stat.n
    (0.9, 0.1, 3)
    >>> mean_std([0.5])
    Stat(mean=0.5, std=None, n=1)
    """
    values = list(values)
    if not values:
        return Stat(None, None, 0)
    std = statistics.stdev(values) if len(values) > 1 else None
    return Stat(statistics.fmean(values), std, len(values))


def format_stat(stat: Stat | None, digits: int = 3, expected_n: int | None = None) -> str:
    """``mean ± std`` (``mean`` alone for one run, ``–`` for none), ``(n=k)`` when k is unusual."""
    if stat is None or stat.n == 0 or stat.mean is None:
        return "–"
    text = f"{stat.mean:.{digits}f}"
    if stat.std is not None:
        text += f" ± {stat.std:.{digits}f}"
    if expected_n is not None and stat.n != expected_n:
        text += f" (n={stat.n})"
    return text


def format_figure(value: object) -> str:
    """One figure in a report's table: a float to 4 significant digits, nothing as ``–``.

    >>> format_figure(0.912345), format_figure(None), format_figure(7)
    ('0.9123', '–', '7')
    """
    if isinstance(value, float):
        return f"{value:.4g}"
    return "–" if value is None else str(value)


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` in cells escaped)."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in body)])
