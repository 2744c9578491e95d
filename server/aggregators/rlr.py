"""Robust learning rate: flip the server's step on coordinates the clients disagree on."""

from __future__ import annotations

import torch

from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import coordinatewise, require_int, require_real, weighted_mean
from server.aggregators.registry import AGGREGATORS

__all__ = ["RobustLearningRate", "robust_lr"]


def robust_lr(updates: torch.Tensor, threshold: int, eta: float) -> torch.Tensor:
    """Return the per-coordinate learning rates: η where |Σᵢ sign(Δᵢⱼ)| ≥ θ, else −η.

    Examples
    --------
    >>> u = torch.tensor([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    >>> robust_lr(u, 2, 1.0).tolist()  # sign sums 3, −1, 1
    [1.0, -1.0, -1.0]
    """
    agreement = coordinatewise(lambda block: torch.sign(block).sum(dim=0).abs(), updates)
    return torch.where(agreement >= threshold, eta, -eta).to(torch.float64)


@AGGREGATORS.register("rlr")
class RobustLearningRate(Aggregator):
    r"""Robust learning rate, RLR (Ozdayi, Kantarcioglu, Gel, AAAI 2021).

    .. math::
        \eta_j = \begin{cases} \eta & \text{if } |\sum_i \operatorname{sgn}(\Delta_{ij})|
                 \ge \theta \\ -\eta & \text{otherwise} \end{cases}, \qquad
        \bar\Delta = \eta_{\cdot} \odot \frac{\sum_i w_i \Delta_i}{\sum_i w_i}

    where :math:`\Delta_{ij}` is coordinate j of client i's update, sgn(0) = 0, θ the
    agreement threshold, η the learning rate, :math:`w_i` client i's example count (the plain
    mean if all are zero) and ⊙ the coordinate-wise product. As in the authors' code, the
    rates multiply the *example-weighted* average of the updates (FedAvg's). The strategy's
    ``defense.server_lr`` multiplies the result again: keep one of the two at 1. The rule does
    not select clients; ``info`` reports how many coordinates got −η.

    Parameters
    ----------
    threshold : int
        θ ≥ 1; the paper suggests a value above the number of malicious clients per round.
    eta : float
        η > 0 (default 1.0).

    Raises
    ------
    InvalidSettingError
        A setting is out of range.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]], dtype=torch.float64)
    >>> w = torch.tensor([1.0, 1.0, 2.0])
    >>> RobustLearningRate(threshold=3)(u, w, [0, 1, 2]).update.tolist()  # all agree: +η
    [4.75, 5.75, 6.75]
    >>> RobustLearningRate(threshold=4)(u, w, [0, 1, 2]).update.tolist()  # 3 < θ: −η
    [-4.75, -5.75, -6.75]

    References
    ----------
    Ozdayi, Kantarcioglu, Gel. Defending against Backdoors in Federated Learning with Robust
    Learning Rate. AAAI 2021.
    """

    name = "rlr"

    def __init__(self, threshold: int, eta: float = 1.0) -> None:
        self.threshold = require_int(self.name, "threshold", threshold, minimum=1)
        self.eta = require_real(self.name, "eta", eta, low=0.0, low_open=True)

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the sign-agreement learning rates times the weighted mean."""
        lr = robust_lr(updates, self.threshold, self.eta)
        return Aggregate(
            update=lr * weighted_mean(updates, weights),
            info={"flipped": int((lr < 0).sum()), "threshold": self.threshold},
        )
