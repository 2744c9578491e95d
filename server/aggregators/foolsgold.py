"""FoolsGold: down-weight clients whose update histories are too similar (sybils)."""

from __future__ import annotations

from typing import Any

import torch

from fedsim.distances import cosine_distances
from fedsim.errors import InvalidSettingError
from server.aggregators.base import Aggregate, Aggregator
from server.aggregators.common import require_real
from server.aggregators.registry import AGGREGATORS

__all__ = ["FoolsGold", "foolsgold_weights"]


def foolsgold_weights(histories: torch.Tensor, kappa: float) -> torch.Tensor:
    r"""Compute FoolsGold's learning rates αᵢ ∈ [0, 1] from the ``(n, d)`` client histories.

    Steps (Fung, Yoon, Beschastnikh, RAID 2020, Algorithm 1), with
    :math:`cs_{ij} = \cos(H_i, H_j)` for i ≠ j:

    1. :math:`v_i = \max_{j \ne i} cs_{ij}`;
    2. pardoning: if :math:`v_j > v_i`, :math:`cs_{ij} \leftarrow cs_{ij} \cdot v_i / v_j`
       (applied where :math:`v_i > 0`, so that the factor is a shrink in (0, 1); a client
       whose history is dissimilar to everyone, :math:`v_i \le 0`, keeps its row and gets
       αᵢ = 1);
    3. :math:`\alpha_i = 1 - \max_{j \ne i} cs_{ij}`, clipped to [0, 1];
    4. :math:`\alpha_i \leftarrow \alpha_i / \max_j \alpha_j` (all 0 stays 0);
    5. logit: :math:`\alpha_i \leftarrow \kappa(\ln\frac{\alpha_i}{1-\alpha_i} + 0.5)`,
       clipped to [0, 1]; αᵢ = 1 maps to 1 and αᵢ = 0 to 0 (the limits ±∞, clipped).

    A single client (n = 1) gets α = 1. A zero history has no direction: its cosine with
    the others is 0.

    Examples
    --------
    >>> h = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    >>> foolsgold_weights(h, 1.0).tolist()  # two identical histories, one distinct
    [0.0, 0.0, 1.0]
    """
    n = histories.shape[0]
    if n == 1:
        return torch.ones(1, dtype=torch.float64)
    cs = 1.0 - cosine_distances(histories)
    cs.fill_diagonal_(float("-inf"))
    v = cs.max(dim=1).values
    # pardoning, for every pair with v_j > v_i > 0: cs_ij · v_i / v_j
    pardon = (v[None, :] > v[:, None]) & (v[:, None] > 0)
    cs = torch.where(pardon, cs * (v[:, None] / v[None, :]), cs)
    alpha = (1.0 - cs.max(dim=1).values).clamp(0.0, 1.0)
    top = alpha.max()
    if top <= 0:
        return torch.zeros(n, dtype=torch.float64)
    alpha = alpha / top
    logit = kappa * (torch.log(alpha) - torch.log1p(-alpha) + 0.5)
    return torch.nan_to_num(logit, nan=0.0, posinf=1.0, neginf=0.0).clamp(0.0, 1.0)


@AGGREGATORS.register("foolsgold")
class FoolsGold(Aggregator):
    r"""FoolsGold (Fung, Yoon, Beschastnikh, RAID 2020).

    Each client's history :math:`H_i = \sum_{t} \Delta_{i,t}` (the sum of all its updates
    this instance has seen, this round included) is compared with the histories of this
    round's other clients; clients that are too similar to one another — sybils pushing
    the same objective — get learning rates αᵢ near 0 (see :func:`foolsgold_weights`).
    The output is the αᵢ-weighted mean of the *current* updates

    .. math:: \bar\Delta = \frac{\sum_i \alpha_i \Delta_i}{\sum_i \alpha_i},

    or the zero vector if every αᵢ is 0. The paper's optional importance weighting of
    output-layer features is not applied (the rule sees flat vectors, not layers). Example
    counts are ignored. ``accepted`` lists the clients with αᵢ > 0; ``info`` reports the
    weights by client id. Histories are kept on the instance (see :meth:`state_dict`).

    Parameters
    ----------
    kappa : float
        Confidence κ > 0 of the logit re-scaling (default 1.0, the paper's value).

    Raises
    ------
    InvalidSettingError
        ``kappa`` out of range, or d differs from a stored history's.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> rule = FoolsGold()
    >>> out = rule(u, torch.tensor([1.0, 1.0, 2.0]), [0, 1, 2])
    >>> out.update.tolist(), out.accepted  # no sybils yet: every αᵢ is 1
    ([3.0, 1.0, 2.0], [0, 1, 2])

    References
    ----------
    Fung, Yoon, Beschastnikh. The Limitations of Federated Learning in Sybil Settings.
    RAID 2020.
    """

    name = "foolsgold"

    def __init__(self, kappa: float = 1.0) -> None:
        self.kappa = require_real(self.name, "kappa", kappa, low=0.0, low_open=True)
        self._history: dict[int, torch.Tensor] = {}

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Add the updates to the histories; weight the updates by FoolsGold's αᵢ."""
        d = updates.shape[1]
        for cid in client_ids:
            stored = self._history.get(cid)
            if stored is not None and stored.shape != (d,):
                raise InvalidSettingError(
                    f"{self.name} holds a history of dimension {stored.numel()} for client "
                    f"{cid}, got updates of dimension {d}; use a fresh instance for a new model"
                )
        for cid, row in zip(client_ids, updates, strict=True):
            stored = self._history.get(cid)
            self._history[cid] = row.clone() if stored is None else stored + row
        histories = torch.stack([self._history[cid] for cid in client_ids])
        alpha = foolsgold_weights(histories, self.kappa)
        total = alpha.sum()
        if total <= 0:
            update = torch.zeros(d, dtype=torch.float64)
        else:
            update = (alpha / total) @ updates
        return Aggregate(
            update=update,
            accepted=[cid for cid, a in zip(client_ids, alpha.tolist(), strict=True) if a > 0],
            info={"weights": dict(zip(client_ids, alpha.tolist(), strict=True))},
        )

    def state_dict(self) -> dict[str, Any]:
        """Return ``{"history": {client id: summed updates}}``."""
        return {"history": {cid: h.clone() for cid, h in self._history.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the histories from :meth:`state_dict`."""
        if "history" not in state:
            raise InvalidSettingError(f"{self.name} state lacks key 'history'")
        self._history = {
            int(cid): h.to(torch.float64).clone() for cid, h in state["history"].items()
        }
