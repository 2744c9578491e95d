"""The colluding-attack contract and shared float64 helpers.

A colluding attack runs in the server-side adversary stage, which sees the round's replies
before the aggregator. The stage picks the updates the adversary knows (``observed``): only
the malicious clients' own honest updates (knowledge ``"own"``) or every benign update as well
(``"full"``); the attack just uses the rows it gets. It returns one crafted update per
malicious client of the round, which the stage substitutes for their replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from fedsim.attacks.registry import Attack
from fedsim.attacks.strength import Tunable
from fedsim.errors import InvalidSettingError
from fedsim.params import all_finite
from fedsim.validation import is_integer, require_int

__all__ = ["ColludingAttack", "CraftedUpdates", "check_observed"]


@dataclass(frozen=True)
class CraftedUpdates:
    """What a colluding attack returns for one round.

    Attributes
    ----------
    updates : torch.Tensor
        The malicious updates, shape ``(f, d)``, float64, finite: row *i* is sent for the
        round's *i*-th malicious client.
    info : dict
        Attack-specific scalars worth logging (e.g. ALIE's ``z``, Min-Max's ``gamma``).
    """

    updates: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


class ColludingAttack(Attack):
    """Base class of colluding (server-side adversary) attacks.

    Subclasses validate their settings in ``__init__``, extend :meth:`check_round` when they
    need more than ``f ≥ 1`` and ``n > f``, and implement :meth:`craft`.
    """

    stage = "colluding"
    strength_bounds: ClassVar[tuple[float, float]] = (0.01, 100.0)
    """Default range of the strength search (``strength: optimal``), log-spaced."""

    def check_round(self, n: int, f: int) -> None:
        """Raise ``InvalidSettingError`` unless the attack can run with ``n`` updates, ``f`` bad.

        The adversary stage may call it once at set-up with the run's ``(n, f)`` to fail early.
        """
        require_int(self.name, "f (malicious updates)", f, minimum=1)
        if not is_integer(n) or n <= f:
            raise InvalidSettingError(
                f"{self.name} needs n > f (some benign updates), got n={n!r}, f={f}"
            )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        """Craft the ``(f, d)`` malicious updates from validated float64 ``observed``."""
        raise NotImplementedError

    @property
    def has_strength(self) -> bool:
        """Whether the attack has a free strength (overrides :meth:`tunable`)."""
        return type(self).tunable is not ColludingAttack.tunable

    own_rows_only: ClassVar[bool] = False
    """Whether the stage must pass only the malicious clients' own rows, whatever it knows."""

    def tunable(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable | None:
        """The round's crafting with the strength left free, or ``None`` (no free strength).

        Attacks with a strength (ALIE's z, IPM's ε, Min-Max/Min-Sum's γ) override it for
        ``strength: optimal`` (:mod:`fedsim.attacks.strength`); ``observed`` is validated
        float64 and the round checked (:meth:`prepare`); ``generator`` is the round's attack
        generator, for attacks that draw.
        """
        return None

    def prepare(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable:
        """Check the round and ``observed``, and return :meth:`tunable`'s result.

        Raises
        ------
        InvalidSettingError
            The round is impossible, or the attack has no free strength.
        """
        self.check_round(n, f)
        tunable = self.tunable(check_observed(observed, self.name), n=n, f=f, generator=generator)
        if tunable is None:
            raise InvalidSettingError(
                f"{self.name} has no strength to optimise; strength: optimal works with "
                "alie, ipm, min_max, min_sum, sign_flip, gaussian and scaling"
            )
        return tunable

    def __call__(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        """Check the round, craft the malicious updates, check them.

        Parameters
        ----------
        observed : torch.Tensor
            The ``(k, d)`` updates the adversary knows (``k ≥ 1``), ordered by client id.
        n : int
            Number of updates the server aggregates this round (benign and malicious).
        f : int
            Number of malicious updates this round.
        generator : torch.Generator
            The adversary's seeded generator for this round.

        Returns
        -------
        CraftedUpdates
            ``updates`` of shape ``(f, d)``, float64, and ``info`` to log.
        """
        self.check_round(n, f)
        observed = check_observed(observed, self.name)
        result = self.craft(observed, n=n, f=f, generator=generator)
        if result.updates.shape != (f, observed.shape[1]):
            raise InvalidSettingError(
                f"{self.name} crafted shape {tuple(result.updates.shape)}, "
                f"expected ({f}, {observed.shape[1]})"
            )
        if not all_finite(result.updates):
            raise InvalidSettingError(f"{self.name} crafted a non-finite update")
        return result


def check_observed(observed: torch.Tensor, who: str) -> torch.Tensor:
    """Check that ``observed`` is a finite ``(k, d)`` matrix with ``k ≥ 1``; return float64."""
    if not isinstance(observed, torch.Tensor) or observed.ndim != 2 or observed.shape[0] < 1:
        shape = tuple(observed.shape) if isinstance(observed, torch.Tensor) else observed
        raise InvalidSettingError(
            f"{who} needs the observed updates as a (k, d) matrix with k ≥ 1, got {shape!r}"
        )
    observed = observed.to(torch.float64)
    if not all_finite(observed):
        raise InvalidSettingError(f"{who}: the observed updates contain NaN/Inf")
    return observed
