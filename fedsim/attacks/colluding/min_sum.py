"""Min-Sum: the largest deviation whose summed squared distance stays typical."""

from __future__ import annotations

import torch

from fedsim.attacks.colluding.deviation import DeviationAttack
from fedsim.attacks.registry import ATTACKS
from fedsim.distances import pairwise_sq_distances

__all__ = ["MinSum"]


@ATTACKS.register("min_sum")
class MinSum(DeviationAttack):
    r"""Min-Sum (AGR-agnostic): the farthest :math:`\mu + \gamma p` with a typical distance sum.

    .. math:: m = \mu + \gamma p, \qquad
              \gamma = \max\Big\{\gamma \ge 0 : \sum_i \lVert m - \Delta_i \rVert^2
              \le \max_i \sum_j \lVert \Delta_i - \Delta_j \rVert^2\Big\}

    :math:`\Delta_1, \dots, \Delta_k` are the observed updates, :math:`\mu` their mean and
    :math:`p` the perturbation direction: :math:`-\mu/\lVert\mu\rVert` (``"unit"``),
    :math:`-\operatorname{sign}(\mu)` (``"sign"``) or :math:`-\sigma` (``"std"``). γ is found
    by bisection (:func:`~fedsim.attacks.colluding.deviation.largest_gamma`) from ``gamma_init`` to
    within ``tol`` and logged as ``info["gamma"]``. All *f* malicious clients send *m*.

    Parameters
    ----------
    direction : {"unit", "sign", "std"}
        The perturbation :math:`p` (default ``"unit"``).
    gamma_init : float
        First probe :math:`\gamma_0 > 0` (default 10); reach :math:`2\gamma_0`.
    tol : float
        Bisection tolerance ``> 0`` (default 1e-5).

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = MinSum(direction="sign")(u, n=5, f=2, generator=torch.Generator())
    >>> round(out.info["gamma"], 4), [round(v, 4) for v in out.updates[0].tolist()]
    (1.633, [1.367, -0.633, 0.367])

    References
    ----------
    Shejwalkar, Houmansadr. Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning. NDSS 2021.
    """

    name = "min_sum"

    def objective(self, malicious: torch.Tensor, observed: torch.Tensor) -> float:
        r""":math:`\sum_i \lVert m - \Delta_i \rVert^2`."""
        return float((observed - malicious).square().sum())

    def threshold(self, observed: torch.Tensor) -> float:
        r""":math:`\max_i \sum_j \lVert \Delta_i - \Delta_j \rVert^2`."""
        return float(pairwise_sq_distances(observed).sum(dim=1).max())
