"""FedAvg: the example-count-weighted mean of client updates."""

from __future__ import annotations

import torch

from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import weighted_mean
from server.aggregators.registry import AGGREGATORS

__all__ = ["FedAvg"]


@AGGREGATORS.register("fedavg")
class FedAvg(Aggregator):
    r"""Weighted mean of the updates (McMahan et al., AISTATS 2017).

    .. math:: \bar\Delta = \frac{\sum_i w_i \Delta_i}{\sum_i w_i}

    where :math:`\Delta_i` is client *i*'s update and :math:`w_i` its number of training
    examples. If every weight is zero the plain mean is used.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> FedAvg()(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2]).update.tolist()
    [3.5, 1.5, 2.0]

    References
    ----------
    McMahan, Moore, Ramage, Hampson, Agüera y Arcas. Communication-Efficient Learning of Deep
    Networks from Decentralized Data. AISTATS 2017.
    """

    name = "fedavg"

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the example-weighted mean of the updates."""
        return Aggregate(update=weighted_mean(updates, weights))
