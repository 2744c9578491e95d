"""Coordinate-wise trimmed mean."""

from __future__ import annotations

import math

import torch

from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import coordinatewise, require_int, require_real
from server.aggregators.registry import AGGREGATORS

__all__ = ["TrimmedMean"]


@AGGREGATORS.register("trimmed_mean")
class TrimmedMean(Aggregator):
    r"""Coordinate-wise trimmed mean (Yin et al., ICML 2018).

    .. math::
        \bar\Delta_j = \frac{1}{n - 2k} \sum_{r=k+1}^{n-k} \Delta_{(r)j}

    where :math:`\Delta_{(1)j} \le \dots \le \Delta_{(n)j}` are the n values of coordinate j
    sorted, i.e. the k largest and the k smallest values of each coordinate are dropped. k is
    given directly, or as a fraction β of the round's n: k = ⌊β·n⌋. Each round needs k ≥ 1
    (trimming nothing would silently be the mean) and 2k < n. Set k ≥ f, the number of
    Byzantine clients to tolerate. Example counts are ignored; the rule does not select.

    Parameters
    ----------
    k : int, optional
        Values dropped at each end of every coordinate, ≥ 1.
    beta : float, optional
        Fraction in (0, ½) giving k = ⌊β·n⌋ each round. Give exactly one of ``k``, ``beta``.

    Raises
    ------
    InvalidSettingError
        Neither or both of ``k``/``beta`` given, a value out of range, or a round where
        k < 1 or 2k ≥ n.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> TrimmedMean(k=1)(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2]).update.tolist()
    [3.0, 0.0, 2.0]

    References
    ----------
    Yin, Chen, Ramchandran, Bartlett. Byzantine-Robust Distributed Learning: Towards Optimal
    Statistical Rates. ICML 2018.
    """

    name = "trimmed_mean"

    def __init__(self, k: int | None = None, beta: float | None = None) -> None:
        if (k is None) == (beta is None):
            raise InvalidSettingError(
                f"{self.name} needs exactly one of k (values trimmed per side) or beta "
                f"(fraction of n), got k={k!r}, beta={beta!r}"
            )
        self.k = None if k is None else require_int(self.name, "k", k, minimum=1)
        self.beta = None
        if beta is not None:
            self.beta = require_real(
                self.name, "beta", beta, low=0.0, high=0.5, low_open=True, high_open=True
            )

    def trimmed(self, n: int) -> int:
        """Return k for a round of ``n`` updates."""
        if self.k is not None:
            return self.k
        return math.floor(self.beta * n)  # type: ignore[operator]

    def check_round(self, n: int) -> None:
        """Raise unless 1 ≤ k and 2k < n."""
        super().check_round(n)
        k = self.trimmed(n)
        given = f"k={k}" if self.beta is None else f"k=floor(beta*n)={k} (beta={self.beta})"
        if k < 1:
            raise InvalidSettingError(
                f"{self.name} would trim nothing: got n={n}, {given}; raise beta or give k ≥ 1"
            )
        if 2 * k >= n:
            raise InvalidSettingError(f"{self.name} needs 2k < n, got n={n}, {given}")

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Return the coordinate-wise mean of the middle n − 2k values."""
        n = updates.shape[0]
        k = self.trimmed(n)

        def middle_mean(block: torch.Tensor) -> torch.Tensor:
            return torch.sort(block, dim=0).values[k : n - k].mean(dim=0)

        return Aggregate(update=coordinatewise(middle_mean, updates), info={"k": k})
