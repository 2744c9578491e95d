"""Min-Max: the largest deviation whose distance to every benign update stays typical."""

from __future__ import annotations

import torch

from fedsim.attacks.colluding.deviation import DeviationAttack
from fedsim.attacks.registry import ATTACKS
from fedsim.distances import pairwise_sq_distances

__all__ = ["MinMax"]


@ATTACKS.register("min_max")
class MinMax(DeviationAttack):
    r"""Min-Max (AGR-agnostic): the farthest :math:`\mu + \gamma p` no farther than benign pairs.

    .. math:: m = \mu + \gamma p, \qquad
              \gamma = \max\Big\{\gamma \ge 0 : \max_i \lVert m - \Delta_i \rVert
              \le \max_{i,j} \lVert \Delta_i - \Delta_j \rVert\Big\}

    :math:`\Delta_1, \dots, \Delta_k` are the observed updates, :math:`\mu` their mean and
    :math:`p` the perturbation direction: :math:`-\mu/\lVert\mu\rVert` (``"unit"``),
    :math:`-\operatorname{sign}(\mu)` (``"sign"``) or :math:`-\sigma` (``"std"``, the
    per-coordinate standard deviation). :math:`\gamma` is found by bisection
    (:func:`~fedsim.attacks.colluding.deviation.largest_gamma`) from ``gamma_init`` to within
    ``tol``; it is logged as ``info["gamma"]``. All *f* malicious clients send *m*. Distances
    are exact float64 (squared, compared squared).

    Parameters
    ----------
    direction : {"unit", "sign", "std"}
        The perturbation :math:`p` (default ``"unit"``).
    gamma_init : float
        First probe :math:`\gamma_0 > 0` (default 10); the search reaches up to
        :math:`2\gamma_0`, and ``info["gamma_capped"]`` says when that was not enough.
    tol : float
        Bisection tolerance ``> 0`` (default 1e-5).

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = MinMax(direction="sign")(u, n=5, f=2, generator=torch.Generator())
    >>> round(out.info["gamma"], 4), [round(v, 4) for v in out.updates[0].tolist()]
    (1.3951, [1.6049, -0.3951, 0.6049])

    References
    ----------
    Shejwalkar, Houmansadr. Manipulating the Byzantine: Optimizing Model Poisoning Attacks and
    Defenses for Federated Learning. NDSS 2021.
    """

    name = "min_max"

    def objective(self, malicious: torch.Tensor, observed: torch.Tensor) -> float:
        r""":math:`\max_i \lVert m - \Delta_i \rVert^2`."""
        return float((observed - malicious).square().sum(dim=1).max())

    def threshold(self, observed: torch.Tensor) -> float:
        r""":math:`\max_{i,j} \lVert \Delta_i - \Delta_j \rVert^2`."""
        return float(pairwise_sq_distances(observed).max())
