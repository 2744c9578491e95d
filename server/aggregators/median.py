"""Coordinate-wise median."""

from __future__ import annotations

import torch

from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import coordinate_median
from server.aggregators.registry import AGGREGATORS

__all__ = ["Median"]


@AGGREGATORS.register("median")
class Median(Aggregator):
    r"""Coordinate-wise median (Yin et al., ICML 2018).

    .. math:: \bar\Delta_j = \operatorname{med}\{\Delta_{1j}, \dots, \Delta_{nj}\}

    for every coordinate j, where :math:`\Delta_{ij}` is coordinate j of client i's update.
    For even n the median is the mean of the two middle values (``torch.median`` alone would
    return the lower one). Example counts are ignored; the rule does not select clients.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> Median()(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2]).update.tolist()
    [3.0, 0.0, 2.0]
    >>> Median()(u[:2], torch.tensor([1.0, 1.0]), [0, 1]).update.tolist()
    [2.0, 0.0, 2.0]

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett. Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates. ICML 2018.
    """

    name = "median"

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the coordinate-wise median."""
        return Aggregate(update=coordinate_median(updates))
