r"""Defence-aware attack strength: a line search of the attack factor against the server's rule.

``attack: {name: alie, params: {strength: optimal}}`` makes the adversary choose its strength
τ (ALIE's z, IPM's ε, Min-Max/Min-Sum's γ as a multiple of the admissible one) anew each
round, as ByzFL's attack optimizer does: it maximises the damage

.. math:: D(\tau) = \big\lVert \mathrm{AGG}\big(H \cup \{m(\tau)\}^{f}\big)
          - \bar H \big\rVert_2

where :math:`H` are the benign updates of the round the adversary assumes (see
:class:`server.adversary_stage.AdversaryStage`), :math:`\bar H` their mean, :math:`m(\tau)` the
crafted update at strength τ (sent by all *f* malicious clients) and AGG the server's whole
aggregation pipeline. This module holds the search (pure: it only sees :math:`D`); the stage
evaluates :math:`D` on a copy of the server's pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int, require_real

__all__ = ["OPTIMAL", "STRENGTH_KEYS", "SearchResult", "StrengthSearch", "Tunable"]

OPTIMAL = "optimal"
"""The value of ``attack.params.strength`` that turns the search on."""

STRENGTH_KEYS = ("strength", "strength_range", "strength_grid", "strength_refine")
"""The keys of ``attack.params`` that belong to the search, not to the attack."""

GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


@dataclass(frozen=True)
class Tunable:
    """A colluding attack's round, with its strength left free.

    Attributes
    ----------
    key : str
        What the strength is called in the attack's own terms (``"z"``, ``"epsilon"``,
        ``"gamma_scale"``), for the log.
    default : float
        The strength the attack would use with its fixed settings this round.
    craft : callable
        ``craft(τ)`` returns the ``(f, d)`` malicious updates at strength τ.
    info : callable
        ``info(τ)`` returns the attack's log entries at strength τ.
    """

    key: str
    default: float
    craft: Callable[[float], Any]
    info: Callable[[float], dict[str, Any]] = field(default=lambda tau: {})


@dataclass(frozen=True)
class SearchResult:
    r"""The strength chosen in one round and what it achieved.

    Attributes
    ----------
    strength : float
        The chosen τ (the maximiser among every evaluated point).
    value : float
        :math:`D(\tau)`.
    default_value : float
        :math:`D` at the attack's default strength (always evaluated, so ``value ≥
        default_value``).
    evaluations : int
        How many times :math:`D` was evaluated.
    """

    strength: float
    value: float
    default_value: float
    evaluations: int


@dataclass(frozen=True)
class StrengthSearch:
    r"""Grid over a range, then golden-section refinement around the best grid point.

    1. Evaluate :math:`D` at the default strength :math:`\tau_0` and at ``grid`` points
       :math:`\tau_1 < \dots < \tau_G` spaced evenly over ``[low, high]`` in log scale
       (``low > 0``) — or linearly when ``low = 0``.
    2. Around the best grid point :math:`\tau_i` spend ``refine`` evaluations on a
       golden-section search of the bracket :math:`[\tau_{i-1}, \tau_{i+1}]` (in the same
       scale): two interior points, then one per step, each step shrinking the bracket by
       0.618 (assuming :math:`D` unimodal there).
    3. Return the best of *every* point evaluated, :math:`\tau_0` first (ties keep the earlier
       point), so the chosen strength never does worse than the default one in the round.

    Settings come from ``attack.params`` (see :meth:`from_params`): ``strength: optimal``,
    ``strength_range: [low, high]`` (default: the attack's own, e.g. z ∈ [0.01, 100]),
    ``strength_grid`` (G ≥ 3, default 12) and ``strength_refine`` (0 or ≥ 2, default 10).
    The cost is G + 1 + ``refine`` evaluations of the server's pipeline per round.

    Parameters
    ----------
    low, high : float or None
        The range; ``None`` means the attack's default range.
    grid : int
        G ≥ 3 grid points.
    refine : int
        Evaluations spent on the golden-section refinement, 0 (none) or ≥ 2.

    Examples
    --------
    >>> search = StrengthSearch(low=0.0, high=10.0, grid=11, refine=20)
    >>> result = search.run(lambda t: -(t - 2.3) ** 2, default=1.0)
    >>> round(result.strength, 4), result.default_value
    (2.3, -1.6899999999999995)

    References
    ----------
    González, Guerraoui, Pinot, Rizk, Stephan, Taïani. ByzFL: Research Framework for Robust
    Federated Learning. arXiv 2025 (its ``attack_optimizer``, a line search of the factor).
    Kiefer. Sequential minimax search for a maximum. Proc. AMS 1953 (golden section).
    """

    low: float | None = None
    high: float | None = None
    grid: int = 12
    refine: int = 10

    def __post_init__(self) -> None:
        require_int("strength search", "strength_grid", self.grid, minimum=3)
        require_int("strength search", "strength_refine", self.refine, minimum=0)
        if self.refine == 1:
            raise InvalidSettingError("strength search needs strength_refine = 0 or ≥ 2, got 1")
        if (self.low is None) != (self.high is None):
            raise InvalidSettingError("strength_range needs both ends, [low, high]")
        if self.low is not None:
            check_range(self.low, self.high)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> tuple[StrengthSearch | None, dict[str, Any]]:
        """Split ``attack.params`` into the search settings and the attack's own settings.

        Raises
        ------
        InvalidSettingError
            ``strength`` is set to anything but ``"optimal"``, or search settings are given
            without it, or a setting is out of range.

        Examples
        --------
        >>> StrengthSearch.from_params({"strength": "optimal", "z_mode": "paper"})
        (StrengthSearch(low=None, high=None, grid=12, refine=10), {'z_mode': 'paper'})
        >>> StrengthSearch.from_params({"epsilon": 0.1})
        (None, {'epsilon': 0.1})
        """
        rest = {k: v for k, v in params.items() if k not in STRENGTH_KEYS}
        ours = {k: params[k] for k in STRENGTH_KEYS if k in params}
        if not ours:
            return None, rest
        if ours.get("strength") != OPTIMAL:
            raise InvalidSettingError(
                f"strength must be {OPTIMAL!r} (the only setting; leave it out for the attack's "
                f"fixed strength) and the strength_* settings need it, got "
                f"strength={ours.get('strength')!r}"
            )
        low = high = None
        if "strength_range" in ours:
            pair = ours["strength_range"]
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise InvalidSettingError(f"strength_range must be [low, high], got {pair!r}")
            low, high = pair
        return (
            cls(
                low=low,
                high=high,
                grid=ours.get("strength_grid", 12),
                refine=ours.get("strength_refine", 10),
            ),
            rest,
        )

    def run(
        self,
        damage: Callable[[float], float],
        default: float,
        bounds: tuple[float, float] = (0.01, 100.0),
    ) -> SearchResult:
        r"""Maximise ``damage`` over the range (``bounds`` when no range was set).

        Parameters
        ----------
        damage : callable
            :math:`D(\tau)`, a finite float (a non-finite value counts as :math:`-\infty`).
        default : float
            The attack's default strength :math:`\tau_0`, evaluated first.
        bounds : tuple of float
            The attack's default range.
        """
        low, high = (self.low, self.high) if self.low is not None else bounds
        check_range(low, high)
        log_scale = low > 0
        to_x = math.log if log_scale else float
        from_x = math.exp if log_scale else float
        seen: list[tuple[float, float]] = []

        def evaluate(tau: float) -> float:
            value = float(damage(tau))
            value = value if math.isfinite(value) else -math.inf
            seen.append((tau, value))
            return value

        default_value = evaluate(float(default))
        xs = [to_x(low) + (to_x(high) - to_x(low)) * i / (self.grid - 1) for i in range(self.grid)]
        values = [evaluate(from_x(x)) for x in xs]
        best = max(range(self.grid), key=lambda i: (values[i], -i))
        a, b = xs[max(best - 1, 0)], xs[min(best + 1, self.grid - 1)]
        c, d = b - GOLDEN * (b - a), a + GOLDEN * (b - a)
        fc, fd = (evaluate(from_x(c)), evaluate(from_x(d))) if self.refine else (0.0, 0.0)
        for _ in range(max(self.refine - 2, 0)):
            if fc >= fd:
                b, d, fd = d, c, fc
                c = b - GOLDEN * (b - a)
                fc = evaluate(from_x(c))
            else:
                a, c, fc = c, d, fd
                d = a + GOLDEN * (b - a)
                fd = evaluate(from_x(d))
        tau, value = max(seen, key=lambda p: p[1])  # max keeps the first of equal values
        return SearchResult(tau, value, default_value, len(seen))


def check_range(low: Any, high: Any) -> None:
    """Require 0 ≤ low < high, both finite (``strength_range``)."""
    require_real("strength search", "strength_range low", low, low=0.0)
    require_real("strength search", "strength_range high", high, low=0.0, low_open=True)
    if not low < high:
        raise InvalidSettingError(f"strength_range needs low < high, got [{low!r}, {high!r}]")
