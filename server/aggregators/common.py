"""Plumbing shared by the aggregation rules: generators, coordinate statistics, re-exports.

The setting checks (:mod:`fedsim.validation`) and clipping (:mod:`fedsim.clipping`) are
re-exported for the rules.

Everything here works on float64 tensors and is memory-bounded for ``n = 100`` updates of
``d = 10⁶`` coordinates: coordinate-wise statistics are computed in column chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from fedsim.clipping import clip_factors, clip_to_norm  # re-exported for the rules
from fedsim.distances import CHUNK_ELEMENTS
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int, require_real  # re-exported for the rules

__all__ = [
    "clip_factors",
    "clip_to_norm",
    "coordinate_median",
    "coordinatewise",
    "load_generator_state",
    "make_generator",
    "require_int",
    "require_real",
    "scalar_median",
    "subset_mean",
    "weighted_mean",
]


def make_generator(rule: str, seed: Any) -> torch.Generator:
    """Validate ``seed`` (an int ≥ 0) and return a CPU generator seeded with it once."""
    seed = require_int(rule, "seed", seed, minimum=0)
    return torch.Generator().manual_seed(seed)


def load_generator_state(rule: str, generator: torch.Generator, state: dict[str, Any]) -> None:
    """Restore ``state["generator"]`` (from ``generator.get_state()``) into ``generator``."""
    try:
        generator.set_state(state["generator"])
    except KeyError as e:
        raise InvalidSettingError(f"{rule} state lacks key 'generator'") from e


def coordinatewise(
    fn: Callable[[torch.Tensor], torch.Tensor], updates: torch.Tensor
) -> torch.Tensor:
    """Apply ``fn`` (an ``(n, c)`` → ``(c,)`` column statistic) chunk by chunk of columns."""
    n, d = updates.shape
    width = max(1, CHUNK_ELEMENTS // max(n, 1))
    if width >= d:
        return fn(updates)
    return torch.cat([fn(updates[:, s : s + width]) for s in range(0, d, width)])


def _median_columns(block: torch.Tensor) -> torch.Tensor:
    lower = torch.median(block, dim=0).values  # the lower middle value for even n
    if block.shape[0] % 2 == 1:
        return lower
    upper = -torch.median(-block, dim=0).values  # the upper middle value
    return (lower + upper) / 2


def coordinate_median(updates: torch.Tensor) -> torch.Tensor:
    """Return the coordinate-wise median of the rows (even n: mean of the two middle values).

    Examples
    --------
    >>> coordinate_median(torch.tensor([[1.0, 4.0], [2.0, 8.0], [9.0, 5.0], [3.0, 6.0]])).tolist()
    [2.5, 5.5]
    """
    return coordinatewise(_median_columns, updates)


def scalar_median(values: torch.Tensor) -> float:
    """Return the median of a 1-D tensor (mean of the two middle values for even length)."""
    return float(_median_columns(values.reshape(-1, 1).to(torch.float64))[0])


def subset_mean(
    updates: torch.Tensor, rows: list[int], scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Return (1/|rows|) Σ_{i ∈ rows} sᵢΔᵢ as one matrix-vector product (no row copies).

    ``scale`` holds the factors sᵢ for the listed rows (default 1). ``rows`` must not be
    empty.

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> subset_mean(u, [0, 1]).tolist()
    [2.0, 0.0, 2.0]
    """
    coefficients = torch.zeros(updates.shape[0], dtype=torch.float64)
    index = torch.tensor(rows, dtype=torch.long)
    part = torch.ones(len(rows), dtype=torch.float64) if scale is None else scale
    coefficients[index] = part / len(rows)
    return coefficients @ updates


def weighted_mean(updates: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return Σ wᵢΔᵢ / Σ wᵢ, or the plain mean when every weight is zero (as FedAvg does)."""
    total = weights.sum()
    if total <= 0:
        return updates.mean(dim=0)
    return (weights / total) @ updates
