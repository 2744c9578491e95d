"""Geometric median by the smoothed Weiszfeld algorithm (RFA)."""

from __future__ import annotations

import torch

from fedsim.distances import sq_distances_to
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_int, require_real, weighted_mean
from server.aggregators.registry import AGGREGATORS

__all__ = ["GeometricMedian"]


@AGGREGATORS.register("geometric_median")
class GeometricMedian(Aggregator):
    r"""Geometric median of the updates, RFA (Pillutla, Kakade, Harchaoui, IEEE TSP 2022).

    Approximately minimises :math:`\sum_i \alpha_i \|v - \Delta_i\|_2` with the smoothed
    Weiszfeld iteration

    .. math::
        v \leftarrow \frac{\sum_i \beta_i \Delta_i}{\sum_i \beta_i}, \qquad
        \beta_i = \frac{\alpha_i}{\max(\nu, \|v - \Delta_i\|_2)}

    started at the weighted mean :math:`v_0 = \sum_i \alpha_i \Delta_i / \sum_i \alpha_i`,
    where :math:`\alpha_i` is client i's example count (uniform if all are zero) and ν > 0 the
    smoothing that keeps βᵢ finite when v meets an update. It stops when a step moves v by at
    most ``tol``·max(‖v‖, ν), or after ``max_iter`` steps. When the minimiser is one of the
    updates (e.g. a client holding half the weight) v approaches it slowly and ``max_iter``
    bounds the cost. ``info`` reports the steps taken, whether the tolerance was met, and the
    objective with α normalised to sum 1. The rule does not select clients.

    Parameters
    ----------
    nu : float
        Smoothing ν > 0 (default 1e-6).
    tol : float
        Relative step tolerance > 0 (default 1e-6).
    max_iter : int
        Most Weiszfeld steps, ≥ 1 (default 100).

    Raises
    ------
    InvalidSettingError
        A setting is out of range.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = GeometricMedian()(u, torch.tensor([1.0, 1.0, 1.0]), [0, 1, 2])
    >>> [round(x, 3) for x in out.update.tolist()]  # the middle client: its angle is > 120°
    [3.0, 0.0, 2.0]

    References
    ----------
    Pillutla, Kakade, Harchaoui. Robust Aggregation for Federated Learning. IEEE Transactions
    on Signal Processing, 2022.
    """

    name = "geometric_median"

    def __init__(self, nu: float = 1e-6, tol: float = 1e-6, max_iter: int = 100) -> None:
        self.nu = require_real(self.name, "nu", nu, low=0.0, low_open=True)
        self.tol = require_real(self.name, "tol", tol, low=0.0, low_open=True)
        self.max_iter = require_int(self.name, "max_iter", max_iter, minimum=1)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Run smoothed Weiszfeld from the weighted mean."""
        alpha = weights if weights.sum() > 0 else torch.ones_like(weights)
        alpha = alpha / alpha.sum()
        v = weighted_mean(updates, alpha)
        converged, steps = False, 0
        while steps < self.max_iter:
            dist = sq_distances_to(updates, v).sqrt_()
            beta = alpha / dist.clamp_min(self.nu)
            new = (beta / beta.sum()) @ updates
            moved = float(torch.linalg.vector_norm(new - v))
            v, steps = new, steps + 1
            if moved <= self.tol * max(float(torch.linalg.vector_norm(v)), self.nu):
                converged = True
                break
        objective = float(alpha @ sq_distances_to(updates, v).sqrt_())
        return Aggregate(
            update=v, info={"iterations": steps, "converged": converged, "objective": objective}
        )
