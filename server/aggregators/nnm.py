"""Nearest-neighbour mixing: replace each update by the mean of its n − f nearest updates."""

from __future__ import annotations

import torch

from fedsim.distances import pairwise_sq_distances
from server.aggregators.pipeline import ByzantineStage, StageOutput
from server.aggregators.registry import PRE_STAGES

__all__ = ["NearestNeighbourMixing", "nnm_matrix"]


def nnm_matrix(updates: torch.Tensor, f: int) -> torch.Tensor:
    """Return the ``(n, n)`` mixing matrix A with the NNM rows: Aᵢⱼ = 1/(n−f) for j ∈ Nᵢ.

    Nᵢ holds row i itself and its n − f − 1 nearest other rows by exact float64 Euclidean
    distance (:func:`~fedsim.distances.pairwise_sq_distances`); ties go to the
    lower row index. ``A @ updates`` gives the mixed rows.

    Examples
    --------
    >>> u = torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64)
    >>> nnm_matrix(u, 1).tolist()
    [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]]
    """
    n = updates.shape[0]
    sq = pairwise_sq_distances(updates)
    sq.fill_diagonal_(-1.0)  # itself first, even beside an exact duplicate
    nearest = torch.sort(sq, dim=1, stable=True).indices[:, : n - f]
    mixing = torch.zeros(n, n, dtype=torch.float64)
    mixing.scatter_(1, nearest, 1.0 / (n - f))
    return mixing


@PRE_STAGES.register("nnm")
class NearestNeighbourMixing(ByzantineStage):
    r"""Nearest-neighbour mixing (Allouah et al., AISTATS 2023), a pre-aggregation stage.

    .. math::
        y_i = \frac{1}{n - f} \sum_{j \in N_i} \Delta_j

    where n is the number of updates, f the number of Byzantine updates tolerated, and
    :math:`N_i` the n − f updates nearest to :math:`\Delta_i` in L2 distance, :math:`\Delta_i`
    itself included (ties go to the lower row index). Distances are exact float64
    (no Gram-matrix expansion). The rule behind the stage aggregates the mixed rows
    :math:`y_i`. Weights and client ids pass through: row i stays client i's, so a
    selecting rule's ``accepted`` names client i only, not the neighbours mixed into its row,
    and history-keeping rules still see client ids. The mean over :math:`N_i` is unweighted,
    as in the paper.

    Parameters
    ----------
    f : int
        Byzantine updates tolerated, ≥ 0. Each round needs n > f (f = 0 averages all rows).

    Raises
    ------
    InvalidSettingError
        ``f`` is not an integer ≥ 0, or a round has n ≤ f.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    >>> out = NearestNeighbourMixing(f=1).transform(u, torch.ones(3), [0, 1, 2])
    >>> out.updates.tolist()  # row 1 ties between rows 0 and 2: the lower index wins
    [[2.5, 3.5, 4.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]]

    References
    ----------
    Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan. Fixing by Mixing: A Recipe for
    Optimal Byzantine ML under Heterogeneity. AISTATS 2023.
    """

    name = "nnm"

    def transform(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> StageOutput:
        """Replace each row by the mean of its n − f nearest rows (itself included)."""
        n = self.out_rows(updates.shape[0])
        mixed = nnm_matrix(updates, self.f) @ updates
        return StageOutput(
            updates=mixed,
            weights=weights,
            client_ids=list(client_ids),
            groups=[[i] for i in range(n)],
        )
