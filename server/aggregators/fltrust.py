"""FLTrust: trust scores from cosine similarity to the server's own update."""

from __future__ import annotations

import torch

from fedsim.errors import InvalidSettingError
from fedsim.params import all_finite
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_int
from server.aggregators.registry import AGGREGATORS

__all__ = ["FLTrust"]


@AGGREGATORS.register("fltrust")
class FLTrust(Aggregator):
    r"""FLTrust (Cao, Fang, Liu, Gong, NDSS 2021).

    .. math::
        TS_i = \mathrm{ReLU}\big(\cos(\Delta_i, g_0)\big), \qquad
        \bar\Delta_i = \Delta_i \frac{\|g_0\|_2}{\|\Delta_i\|_2}, \qquad
        \bar\Delta = \frac{\sum_i TS_i \bar\Delta_i}{\sum_i TS_i}

    where :math:`g_0` is the server's own update, trained on its small root data set
    (≈ ``root_size`` examples) with the clients' local procedure from the same global model.
    A zero update (or a zero :math:`g_0`) has no direction and gets trust 0. If every
    :math:`TS_i` is 0 the round's update is the zero vector — never uniform weights.
    Example counts are ignored. ``accepted`` lists the clients with positive trust.

    The strategy supplies :math:`g_0` each round by setting :attr:`server_update` before
    calling the rule; the call consumes it (a stale :math:`g_0` is never reused), and a call
    without one raises.

    Parameters
    ----------
    root_size : int
        Examples in the server's root data set, ≥ 1 (default 100); validated and stored for
        the strategy, which trains :math:`g_0`.

    Raises
    ------
    InvalidSettingError
        ``root_size`` out of range; no (or a malformed) :attr:`server_update` at call time.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> rule = FLTrust()
    >>> rule.server_update = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64)
    >>> out = rule(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])  # all cosines ≤ 0
    >>> out.update.tolist(), out.accepted
    ([0.0, 0.0, 0.0], [])
    >>> rule.server_update = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    >>> out = rule(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> [round(x, 4) for x in out.update.tolist()], out.accepted
    ([1.4832, 0.3777, 1.0761], [0, 1, 2])

    References
    ----------
    Cao, Fang, Liu, Gong. FLTrust: Byzantine-robust Federated Learning via Trust
    Bootstrapping. NDSS 2021.
    """

    name = "fltrust"

    def __init__(self, root_size: int = 100) -> None:
        self.root_size = require_int(self.name, "root_size", root_size, minimum=1)
        self._server_update: torch.Tensor | None = None

    @property
    def server_update(self) -> torch.Tensor | None:
        """The server's update g₀ for the next call, shape ``(d,)``; consumed by the call."""
        return self._server_update

    @server_update.setter
    def server_update(self, value: torch.Tensor | None) -> None:
        if value is None:
            self._server_update = None
            return
        if not isinstance(value, torch.Tensor) or value.ndim != 1:
            raise InvalidSettingError(
                f"{self.name} server_update must be a (d,) tensor, got {type(value).__name__} "
                f"of shape {tuple(getattr(value, 'shape', ()))}"
            )
        value = value.detach().to(torch.float64)
        if not all_finite(value):
            raise InvalidSettingError(f"{self.name} server_update contains NaN/Inf")
        self._server_update = value

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Weight the norm-matched updates by their ReLU'd cosine with g₀."""
        g0, self._server_update = self._server_update, None
        if g0 is None:
            raise InvalidSettingError(
                f"{self.name} needs the server's update: set rule.server_update to the (d,) "
                "update trained on the root data set before each call"
            )
        d = updates.shape[1]
        if g0.shape != (d,):
            raise InvalidSettingError(
                f"{self.name} server_update has shape {tuple(g0.shape)}, updates have d={d}"
            )
        g0_norm = torch.linalg.vector_norm(g0)
        norms = torch.linalg.vector_norm(updates, dim=1)
        positive = norms > 0
        safe = torch.where(positive, norms, 1.0)
        trust = torch.zeros_like(norms)
        if g0_norm > 0:
            cosine = (updates @ g0) / (safe * g0_norm)
            trust = torch.where(positive, cosine.clamp(min=0.0, max=1.0), 0.0)
        total = trust.sum()
        accepted = [cid for cid, t in zip(client_ids, trust.tolist(), strict=True) if t > 0]
        if total <= 0:
            update = torch.zeros(d, dtype=torch.float64)
        else:
            # Σ TSᵢ · Δᵢ‖g₀‖/‖Δᵢ‖ / Σ TSᵢ as one weighted sum of the rows
            update = ((trust * g0_norm / safe) / total) @ updates
        return Aggregate(
            update=update,
            accepted=accepted,
            info={"trust_sum": float(total), "server_norm": float(g0_norm)},
        )
