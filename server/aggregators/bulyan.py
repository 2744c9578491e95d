"""Bulyan: recursive Krum selection, then a coordinate-wise trimmed mean around the median."""

from __future__ import annotations

import torch

from fedsim.distances import pairwise_sq_distances
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import coordinatewise, require_int
from server.aggregators.krum import krum_scores
from server.aggregators.registry import AGGREGATORS

__all__ = ["Bulyan"]


def _closest_to_median_mean(block: torch.Tensor, beta: int) -> torch.Tensor:
    """Per column: the mean of the ``beta`` values closest to the column's median."""
    theta = block.shape[0]
    values = torch.sort(block, dim=0).values
    median = (values[(theta - 1) // 2] + values[theta // 2]) / 2
    # Stable sort on distance over value-sorted rows: equal distances go to the smaller value,
    # so the result does not depend on the order of the clients.
    order = torch.sort((values - median).abs(), dim=0, stable=True).indices[:beta]
    return torch.gather(values, 0, order).mean(dim=0)


def _krum_pick(sq_dist: torch.Tensor, neighbours: int) -> int:
    """Row with the lowest Krum score; ties broken by the next-nearest distances, then index.

    Mutual nearest neighbours tie whenever k = 1, which the recursion reaches near its end;
    comparing their (k+1)-th, (k+2)-th, … nearest distances keeps the pick independent of
    the order of the clients.
    """
    scores = krum_scores(sq_dist, neighbours)
    tied = torch.nonzero(scores == scores.min()).flatten().tolist()
    if len(tied) == 1:
        return tied[0]
    rows = torch.tensor(tied)
    others = sq_dist.index_select(0, rows).clone()
    others[torch.arange(len(tied)), rows] = float("inf")
    further = torch.sort(others, dim=1).values[:, neighbours : sq_dist.shape[0] - 1].tolist()
    return min(zip(further, tied, strict=True))[1]


@AGGREGATORS.register("bulyan")
class Bulyan(Aggregator):
    r"""Bulyan (El Mhamdi et al., ICML 2018) over Krum.

    1. Selection: θ = n − 2f times, compute Krum scores on the *remaining* set R,

       .. math:: s_R(i) = \sum_{j \in N_R(i)} \|\Delta_i - \Delta_j\|_2^2,

       with :math:`N_R(i)` the k = |R| − f − 2 updates of R nearest to Δᵢ, and move the
       argmin from R to the selection S. The paper leaves k open once |R| < 2f+3 (the last
       steps of the recursion); here k is clamped to [1, |R|−1], so the last picks still
       prefer the update with the closest neighbour. With k = 1 mutual nearest neighbours
       tie; ties are broken by the (k+1)-th, (k+2)-th, … nearest distances, then by the
       lowest row, so the selection does not depend on the order of the clients.
    2. Aggregation: with β = θ − 2f, coordinate j of the output is

       .. math:: \bar\Delta_j = \frac{1}{\beta} \sum_{i \in B_j} \Delta_{ij},

       where :math:`B_j` holds the β members of S whose coordinate j is closest to the
       coordinate median of S (mean of the two middle values for even θ; equal distances
       go to the smaller value).

    Example counts are ignored. ``accepted`` lists the θ selected clients in row order.

    Parameters
    ----------
    f : int
        Byzantine clients tolerated, ≥ 0. Each round needs n ≥ 4f+3.

    Raises
    ------
    InvalidSettingError
        ``f`` is not an integer ≥ 0, or a round has n < 4f+3.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = Bulyan(f=0)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.update.tolist(), out.accepted
    ([3.0, 1.0, 2.0], [0, 1, 2])

    References
    ----------
    El Mhamdi, Guerraoui, Rouault. The Hidden Vulnerability of Distributed Learning in
    Byzantium. ICML 2018.
    """

    name = "bulyan"

    def __init__(self, f: int) -> None:
        self.f = require_int(self.name, "f", f, minimum=0)

    def check_round(self, n: int) -> None:
        """Raise unless n ≥ 4f+3."""
        super().check_round(n)
        if n < 4 * self.f + 3:
            raise InvalidSettingError(f"{self.name} needs n ≥ 4f+3, got n={n}, f={self.f}")

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Select θ = n−2f updates by recursive Krum, then average around the median."""
        n = updates.shape[0]
        theta, beta = n - 2 * self.f, n - 4 * self.f
        sq_dist = pairwise_sq_distances(updates)
        remaining = torch.arange(n)
        chosen: list[int] = []
        for _ in range(theta):
            size = remaining.numel()
            neighbours = min(max(size - self.f - 2, 1), size - 1)
            sub = sq_dist.index_select(0, remaining).index_select(1, remaining)
            pick = _krum_pick(sub, neighbours)
            chosen.append(int(remaining[pick]))
            remaining = torch.cat([remaining[:pick], remaining[pick + 1 :]])
        rows = torch.tensor(sorted(chosen))
        update = coordinatewise(
            lambda block: _closest_to_median_mean(block.index_select(0, rows), beta), updates
        )
        return Aggregate(
            update=update,
            accepted=[client_ids[int(i)] for i in rows],
            info={"theta": theta, "beta": beta},
        )
