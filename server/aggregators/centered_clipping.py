"""Centered clipping: clip updates around the previous round's aggregate."""

from __future__ import annotations

from typing import Any

import torch

from fedsim.distances import sq_distances_to
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_int, require_real
from server.aggregators.registry import AGGREGATORS

__all__ = ["CenteredClipping"]


@AGGREGATORS.register("centered_clipping")
class CenteredClipping(Aggregator):
    r"""Centered clipping (Karimireddy, He, Jaggi, ICML 2021).

    L iterations of

    .. math::
        v \leftarrow v + \frac{1}{n} \sum_{i=1}^{n} (\Delta_i - v)
                         \min\Big(1, \frac{\tau}{\|\Delta_i - v\|_2}\Big)

    starting from :math:`v_0`, the aggregate this instance returned in the previous round
    (the zero vector in the first round), with τ the clipping radius and n the number of
    updates. The state is kept on the instance (one instance per run; see
    :meth:`state_dict`), and the update dimension d must not change between rounds. The
    paper pairs the rule with client momentum (β = 0.9). Example counts are ignored; the rule
    does not select clients.

    Parameters
    ----------
    tau : float
        Clipping radius τ > 0 (default 10.0, as in the reference code).
    iterations : int
        Clipping iterations L ≥ 1 per round (default 3).

    Raises
    ------
    InvalidSettingError
        A setting is out of range, or d differs from the previous round's.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> rule = CenteredClipping(tau=10.0, iterations=1)
    >>> rule(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2]).update.tolist()  # all within τ of 0
    [3.0, 1.0, 2.0]
    >>> rule = CenteredClipping(tau=1.0, iterations=1)
    >>> [round(x, 4) for x in rule(u, torch.ones(3), [0, 1, 2]).update.tolist()]
    [0.6968, 0.1622, 0.5912]

    References
    ----------
    Karimireddy, He, Jaggi. Learning from History for Byzantine Robust Optimization.
    ICML 2021.
    """

    name = "centered_clipping"

    def __init__(self, tau: float = 10.0, iterations: int = 3) -> None:
        self.tau = require_real(self.name, "tau", tau, low=0.0, low_open=True)
        self.iterations = require_int(self.name, "iterations", iterations, minimum=1)
        self._center: torch.Tensor | None = None

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Clip around the previous aggregate L times; remember the result."""
        n, d = updates.shape
        if self._center is None:
            v = torch.zeros(d, dtype=torch.float64)
        elif self._center.shape != (d,):
            raise InvalidSettingError(
                f"{self.name} keeps the previous aggregate of dimension {self._center.numel()}, "
                f"got updates of dimension {d}; use a fresh instance for a new model"
            )
        else:
            v = self._center
        clipped = 0
        for _ in range(self.iterations):
            dist = sq_distances_to(updates, v).sqrt_()
            # min(1, τ/‖Δᵢ−v‖); a zero distance gives τ/0 = inf → 1
            scale = (self.tau / dist).clamp_(max=1.0)
            clipped = int((dist > self.tau).sum())
            # Σ sᵢ(Δᵢ − v) = Σ sᵢΔᵢ − (Σ sᵢ) v, without forming the (n, d) differences
            v = v + (scale @ updates - scale.sum() * v) / n
        self._center = v.clone()
        return Aggregate(update=v, info={"clipped": clipped})

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"center": previous aggregate or None}``."""
        return {"center": None if self._center is None else self._center.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the previous aggregate from :meth:`state_dict`."""
        if "center" not in state:
            raise InvalidSettingError(f"{self.name} state lacks key 'center'")
        center = state["center"]
        self._center = None if center is None else center.to(torch.float64).clone()
