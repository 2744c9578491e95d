"""Krum: the update closest to its n−f−2 nearest neighbours."""

from __future__ import annotations

import torch

from fedsim.distances import pairwise_sq_distances
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_int
from server.aggregators.registry import AGGREGATORS

__all__ = ["Krum", "check_krum_round", "krum_scores", "rank_by_score"]


def krum_scores(sq_dist: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Compute Krum scores: each row's sum of its ``neighbours`` smallest squared distances.

    Parameters
    ----------
    sq_dist : torch.Tensor
        ``(n, n)`` squared distances ‖Δᵢ − Δⱼ‖² (from
        :func:`~fedsim.distances.pairwise_sq_distances`).
    neighbours : int
        How many nearest *other* updates count, 0 ≤ neighbours ≤ n − 1.

    Examples
    --------
    >>> d = torch.tensor([[0.0, 4.0, 25.0], [4.0, 0.0, 13.0], [25.0, 13.0, 0.0]])
    >>> krum_scores(d, 1).tolist()
    [4.0, 4.0, 13.0]
    """
    n = sq_dist.shape[0]
    if neighbours == 0 or n < 2:
        return torch.zeros(n, dtype=sq_dist.dtype)
    others = sq_dist.clone()
    others.fill_diagonal_(float("inf"))
    return torch.sort(others, dim=1).values[:, :neighbours].sum(dim=1)


def rank_by_score(scores: torch.Tensor) -> torch.Tensor:
    """Return row indices from best (lowest) score to worst; ties go to the lowest index."""
    return torch.sort(scores, stable=True).indices


def check_krum_round(rule: str, n: int, f: int) -> None:
    """Raise unless n ≥ 2f+3 (Krum's precondition: n−f−2 ≥ f+1 neighbours)."""
    if n < 2 * f + 3:
        raise InvalidSettingError(f"{rule} needs n ≥ 2f+3, got n={n}, f={f}")


@AGGREGATORS.register("krum")
class Krum(Aggregator):
    r"""Krum (Blanchard et al., NeurIPS 2017): output the update with the lowest score.

    .. math::
        s(i) = \sum_{j \in N_i} \|\Delta_i - \Delta_j\|_2^2, \qquad
        \bar\Delta = \Delta_{i^*},\ i^* = \arg\min_i s(i)

    where :math:`N_i` holds the :math:`n-f-2` updates nearest to :math:`\Delta_i` (itself
    excluded), n is the number of updates and f the number of Byzantine clients tolerated.
    Ties go to the lowest row index. Example counts are ignored. ``accepted`` is the chosen
    client.

    Parameters
    ----------
    f : int
        Byzantine clients tolerated, ≥ 0. Each round needs n ≥ 2f+3.

    Raises
    ------
    InvalidSettingError
        ``f`` is not an integer ≥ 0, or a round has n < 2f+3.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = Krum(f=0)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.update.tolist(), out.accepted
    ([1.0, 0.0, 2.0], [0])

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent. NeurIPS 2017.
    """

    name = "krum"

    def __init__(self, f: int) -> None:
        self.f = require_int(self.name, "f", f, minimum=0)

    def check_round(self, n: int) -> None:
        """Raise unless n ≥ 2f+3."""
        super().check_round(n)
        check_krum_round(self.name, n, self.f)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the best-scored update; ``info`` holds its score."""
        n = updates.shape[0]
        scores = krum_scores(pairwise_sq_distances(updates), n - self.f - 2)
        best = int(rank_by_score(scores)[0])
        return Aggregate(
            update=updates[best].clone(),
            accepted=[client_ids[best]],
            info={"score": float(scores[best])},
        )
