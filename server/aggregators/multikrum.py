"""Multi-Krum: the unweighted mean of the m best Krum-scored updates."""

from __future__ import annotations

import torch

from fedsim.distances import pairwise_sq_distances
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_int, subset_mean
from server.aggregators.krum import check_krum_round, krum_scores, rank_by_score
from server.aggregators.registry import AGGREGATORS

__all__ = ["MultiKrum"]


@AGGREGATORS.register("multikrum")
class MultiKrum(Aggregator):
    r"""Multi-Krum (Blanchard et al., NeurIPS 2017): average the m best-scored updates.

    .. math::
        s(i) = \sum_{j \in N_i} \|\Delta_i - \Delta_j\|_2^2, \qquad
        \bar\Delta = \frac{1}{m} \sum_{i \in M} \Delta_i

    where :math:`N_i` holds the :math:`n-f-2` updates nearest to :math:`\Delta_i` (itself
    excluded) and M the m updates with the lowest scores (ties to the lowest row index). The
    mean is *unweighted*: a client's reported example count must not buy it influence.
    ``accepted`` lists the m selected clients in row order.

    Parameters
    ----------
    f : int
        Byzantine clients tolerated, ≥ 0. Each round needs n ≥ 2f+3.
    m : int, optional
        How many updates to average, ≥ 1 (and ≤ n each round); default n − f.

    Raises
    ------
    InvalidSettingError
        A setting is not an integer in range, or a round has n < 2f+3 or n < m.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = MultiKrum(f=0, m=2)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.update.tolist(), out.accepted
    ([2.0, 0.0, 2.0], [0, 1])

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent. NeurIPS 2017.
    """

    name = "multikrum"

    def __init__(self, f: int, m: int | None = None) -> None:
        self.f = require_int(self.name, "f", f, minimum=0)
        self.m = None if m is None else require_int(self.name, "m", m, minimum=1)

    def selected(self, n: int) -> int:
        """Return how many updates a round of ``n`` averages (m, or n − f by default)."""
        return n - self.f if self.m is None else self.m

    def check_round(self, n: int) -> None:
        """Raise unless n ≥ 2f+3 and m ≤ n."""
        super().check_round(n)
        check_krum_round(self.name, n, self.f)
        if self.selected(n) > n:
            raise InvalidSettingError(f"{self.name} needs m ≤ n, got n={n}, m={self.m}")

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the plain mean of the m best-scored updates."""
        n = updates.shape[0]
        scores = krum_scores(pairwise_sq_distances(updates), n - self.f - 2)
        best = torch.sort(rank_by_score(scores)[: self.selected(n)]).values
        return Aggregate(
            update=subset_mean(updates, best.tolist()),
            accepted=[client_ids[int(i)] for i in best],
            info={"m": int(best.numel())},
        )
