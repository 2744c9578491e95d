"""The aggregator contract shared by every rule.

An aggregator is a callable object built from validated settings. It receives one round's
client updates as an ``(n, d)`` float64 matrix of deltas ``Δᵢ = wᵢ − w_global`` (never full
weights), their weights (example counts) and client ids, and returns an :class:`Aggregate`.
Rules know nothing of Flower.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from fedsim.components import Checkpointable, Describable
from fedsim.errors import InvalidSettingError
from fedsim.params import all_finite

__all__ = ["Aggregate", "Aggregator", "check_inputs"]


@dataclass(frozen=True)
class Aggregate:
    """What a rule returns for one round.

    Attributes
    ----------
    update : torch.Tensor
        The aggregated delta, shape ``(d,)``, float64, always finite.
    accepted : list[int] or None
        Client ids the rule kept, for rules that select; ``None`` for rules that do not.
    info : dict
        Rule-specific scalars worth logging (e.g. ALIE's z, FLAME's noise std).
    """

    update: torch.Tensor
    accepted: list[int] | None = None
    info: dict[str, Any] | None = None


class Aggregator(Describable, Checkpointable):
    """Base class of aggregation rules.

    Subclasses validate their settings in ``__init__`` (raising
    :class:`~fedsim.errors.InvalidSettingError` that names the rule and the value), implement
    :meth:`aggregate`, and override :meth:`check_round` when they have a precondition on the
    number of updates ``n`` (e.g. Krum's n ≥ 2f+3). Rules with state across rounds
    (centered clipping, FoolsGold) keep it on the instance; one instance lives for a whole run.
    """

    name: ClassVar[str] = "aggregator"

    def check_round(self, n: int) -> None:
        """Raise ``InvalidSettingError`` if the rule cannot aggregate ``n`` updates."""
        if n < 1:
            raise InvalidSettingError(f"{self.name} needs at least one update, got n={n}")

    def aggregate(
        self, updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int]
    ) -> Aggregate:
        """Aggregate validated inputs (see :func:`check_inputs`)."""
        raise NotImplementedError

    def __call__(
        self,
        updates: torch.Tensor,
        weights: torch.Tensor,
        client_ids: list[int],
        *,
        finite: bool = False,
    ) -> Aggregate:
        """Validate the inputs, check the round's precondition, aggregate.

        ``finite=True``: the caller has checked every update for NaN/Inf already (the
        server boundary, :func:`server.replies.parse_train_replies`), so the scan of the
        matrix is not repeated (one read of it: 20 µs per 61,706-value update).
        """
        updates, weights = check_inputs(updates, weights, client_ids, finite=finite)
        self.check_round(updates.shape[0])
        result = self.aggregate(updates, weights, list(client_ids))
        if not all_finite(result.update):
            raise InvalidSettingError(f"{self.name} produced a non-finite aggregate")
        return result

    def applied(self, change: torch.Tensor) -> None:
        r"""Learn the change :math:`w^{t} - w^{t-1}` the server applied after this round.

        The strategy calls it after each aggregated round with the real change of the global
        model, which differs from the aggregate under ``defense.server_lr`` ≠ 1 or central
        DP noise. A no-op by default; rules that model the global trajectory (FLDetector)
        override it.
        """


def check_inputs(
    updates: torch.Tensor, weights: torch.Tensor, client_ids: list[int], *, finite: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and finiteness; return float64 copies of ``updates`` and ``weights``.

    Non-finite updates must be dropped before a rule is called (the server boundary does it);
    a rule that receives one raises rather than returning a poisoned aggregate.
    """
    if updates.ndim != 2:
        raise InvalidSettingError(
            f"updates must be an (n, d) matrix, got shape {tuple(updates.shape)}"
        )
    n = updates.shape[0]
    if weights.shape != (n,):
        raise InvalidSettingError(f"weights must have shape ({n},), got {tuple(weights.shape)}")
    if len(client_ids) != n:
        raise InvalidSettingError(f"got {len(client_ids)} client ids for {n} updates")
    updates = updates.to(torch.float64)
    weights = weights.to(torch.float64)
    if not finite and not all_finite(updates):
        raise InvalidSettingError("updates contain NaN/Inf; drop them at the server boundary")
    if not all_finite(weights) or bool((weights < 0).any()):
        raise InvalidSettingError("weights must be finite and non-negative")
    return updates, weights
