"""Contracts and shared plumbing of the client-side attacks.

Two kinds run on a malicious client:

* :class:`DataPoisoning` (stage ``"data"``): ``poison`` the local data, train with the honest
  procedure, then ``transform_update`` the resulting delta (identity unless the attack boosts
  or masks it, see :class:`fedsim.attacks.backdoor.Backdoor`).
* :class:`UpdateAttack` (stage ``"update"``): train honestly, then ``transform_update``.

Both share one update hook, so a client can always call::

    delta = attack.transform_update(delta, reference=last_global_change, generator=g)

with ``delta`` the flattened float64 update ``Δ = w_local − w_global``. ``reference`` is only
read by attacks whose ``uses_reference`` is true (Neurotoxin).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fedsim.attacks.registry import Attack
from fedsim.errors import InvalidSettingError
from fedsim.params import all_finite

__all__ = [
    "ClientAttack",
    "DataPoisoning",
    "UpdateAttack",
    "as_delta",
    "check_data",
    "keep_count",
    "neurotoxin_mask",
]


class ClientAttack(Attack):
    """Base class of attacks that run on a malicious client."""

    @property
    def uses_reference(self) -> bool:
        """Whether :meth:`transform_update` reads ``reference`` (the last global change)."""
        return False

    def transform_update(
        self,
        delta: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return the update to send instead of the honest ``delta`` (a new float64 tensor).

        The base implementation sends the honest update unchanged.
        """
        return as_delta(delta, self.name)


class DataPoisoning(ClientAttack):
    """Base class of data-poisoning attacks (stage ``"data"``)."""

    stage = "data"

    def poison(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        attacker_index: int,
        num_attackers: int,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return poisoned copies ``(x', y')`` of a client's data; the inputs are not modified.

        Parameters
        ----------
        x : torch.Tensor
            Inputs, shape ``(N, C, H, W)``.
        y : torch.Tensor
            Integer labels, shape ``(N,)``.
        attacker_index : int
            This client's rank among the malicious clients, ``0 ≤ attacker_index <
            num_attackers`` (fixed for the run, e.g. the rank of its client id).
        num_attackers : int
            Number of malicious clients in the run.
        generator : torch.Generator
            The client's seeded generator; every random draw comes from it.
        """
        raise NotImplementedError


class UpdateAttack(ClientAttack):
    """Base class of model-poisoning attacks on a client's own update (stage ``"update"``).

    An attack with one scalar strength names it in ``strength_key`` (sign flip's ``scale``,
    Gaussian's ``sigma``, scaling's ``factor``); with ``strength: optimal`` the server-side
    adversary stage applies it and chooses that strength each round
    (:class:`fedsim.attacks.colluding.ServerSideUpdate`).
    """

    stage = "update"
    strength_key: ClassVar[str | None] = None
    strength_bounds: ClassVar[tuple[float, float]] = (0.01, 100.0)

    def with_strength(self, value: float) -> UpdateAttack:
        """A copy of the attack with its strength setting set to ``value``."""
        if self.strength_key is None:
            raise InvalidSettingError(f"{self.name} has no strength setting")
        return type(self)(**{**vars(self), self.strength_key: value})


def as_delta(delta: torch.Tensor, who: str) -> torch.Tensor:
    """Check that ``delta`` is a finite vector; return a float64 copy."""
    if not isinstance(delta, torch.Tensor) or delta.ndim != 1:
        shape = tuple(delta.shape) if isinstance(delta, torch.Tensor) else type(delta).__name__
        raise InvalidSettingError(f"{who}: the update must be a flat (d,) tensor, got {shape}")
    out = delta.to(torch.float64, copy=True)
    if not all_finite(out):
        raise InvalidSettingError(f"{who}: the honest update contains NaN/Inf")
    return out


def check_data(x: torch.Tensor, y: torch.Tensor, who: str) -> None:
    """Check that ``x`` is ``(N, C, H, W)`` and ``y`` holds ``N`` integer labels."""
    if x.ndim != 4:
        raise InvalidSettingError(f"{who}: x must have shape (N, C, H, W), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InvalidSettingError(f"{who}: y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex():
        raise InvalidSettingError(f"{who}: y must hold integer labels, got dtype {y.dtype}")


def keep_count(fraction: float, total: int) -> int:
    """Count the items a ``fraction`` of ``total`` selects: ``max(1, ⌊fraction·total + ½⌋)``.

    Rounds half up, and keeps at least one item when ``total > 0`` (``fraction > 0`` is
    validated by the callers); never more than ``total``.

    Examples
    --------
    >>> keep_count(0.5, 5), keep_count(0.3, 10), keep_count(0.01, 10), keep_count(1.0, 7)
    (3, 3, 1, 7)
    """
    if total <= 0:
        return 0
    return min(total, max(1, int(fraction * total + 0.5)))


def neurotoxin_mask(reference: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mask the ``keep_count(fraction, d)`` coordinates with the smallest ``|reference|``.

    Ties are broken by coordinate index (a stable sort), so exactly that many are kept.

    Examples
    --------
    >>> neurotoxin_mask(torch.tensor([3.0, -0.5, 2.0, 0.1]), 0.5).tolist()
    [False, True, False, True]
    """
    d = reference.numel()
    k = keep_count(fraction, d)
    order = torch.argsort(reference.abs(), stable=True)
    mask = torch.zeros(d, dtype=torch.bool, device=reference.device)
    mask[order[:k]] = True
    return mask
