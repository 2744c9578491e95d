"""Shared core of the Min-Max and Min-Sum attacks: a perturbation direction and a γ search."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.strength import Tunable
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_real

__all__ = ["DIRECTIONS", "DeviationAttack", "largest_gamma", "perturbation"]

logger = logging.getLogger(__name__)

DIRECTIONS = ("unit", "sign", "std")


def perturbation(mean: torch.Tensor, observed: torch.Tensor, direction: str) -> torch.Tensor:
    r"""Return the perturbation direction :math:`p` of Shejwalkar & Houmansadr (NDSS 2021).

    ``"unit"``: :math:`-\mu/\lVert\mu\rVert` (zero if :math:`\mu = 0`); ``"sign"``:
    :math:`-\operatorname{sign}(\mu)`; ``"std"``: :math:`-\sigma`, the per-coordinate
    population standard deviation of ``observed`` (any positive multiple gives the same
    crafted update, since :math:`\gamma` absorbs the scale).

    Examples
    --------
    >>> mu = torch.tensor([3.0, -4.0], dtype=torch.float64)
    >>> perturbation(mu, mu[None], "unit").tolist()
    [-0.6, 0.8]
    """
    if direction == "unit":
        norm = torch.linalg.vector_norm(mean)
        return -mean / norm if norm > 0 else torch.zeros_like(mean)
    if direction == "sign":
        return -torch.sign(mean)
    if direction == "std":
        return -observed.std(dim=0, correction=0)
    raise InvalidSettingError(f"unknown direction {direction!r}; known: {', '.join(DIRECTIONS)}")


def largest_gamma(
    feasible: Callable[[float], bool], gamma_init: float, tol: float
) -> tuple[float, bool]:
    r"""Largest feasible :math:`\gamma \in [0, 2\gamma_0)` by bisection; ``(gamma, capped)``.

    This is the search of Shejwalkar & Houmansadr's Algorithm 1: probe
    :math:`\gamma_0` (``gamma_init``), then move by :math:`\gamma_0/2, \gamma_0/4, \dots`,
    up after a feasible probe and down after an infeasible one; i.e. bisection on
    :math:`[0, 2\gamma_0]`. It stops once the bracket is at most ``tol`` wide (the paper stops
    when the next probe is within ``tol`` of the last feasible one, which can leave the
    bracket ``2·tol`` wide) and returns its feasible end. :math:`\gamma = 0` is assumed
    feasible. When the feasible set is an interval :math:`[0, \gamma^*]` with
    :math:`\gamma^* < 2\gamma_0`, the result satisfies
    :math:`\gamma^* - \mathrm{tol} < \gamma \le \gamma^*`. ``capped`` is true when no probe
    failed, i.e. :math:`\gamma^*` may exceed the reach :math:`2\gamma_0`: raise ``gamma_init``.

    Examples
    --------
    >>> gamma, capped = largest_gamma(lambda g: g <= 3.0, 10.0, 1e-6)
    >>> round(gamma, 5), capped
    (3.0, False)
    """
    lo, hi, capped = 0.0, 2.0 * gamma_init, True
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if feasible(mid):
            lo = mid
        else:
            hi, capped = mid, False
    return lo, capped


class DeviationAttack(ColludingAttack):
    r"""Base of the attacks that send :math:`m = \mu + \gamma p` with the largest admissible γ.

    Subclasses define the admissibility test through :meth:`objective` and :meth:`threshold`:
    :math:`\gamma` is admissible when ``objective(μ + γp, observed) ≤ threshold(observed)``.

    Parameters
    ----------
    direction : {"unit", "sign", "std"}
        The perturbation :math:`p` (see :func:`perturbation`).
    gamma_init : float
        :math:`\gamma_0 > 0`, the first probe; the search reaches up to :math:`2\gamma_0`.
    tol : float
        Width ``> 0`` of the final bisection bracket.
    """

    def __init__(
        self, direction: str = "unit", gamma_init: float = 10.0, tol: float = 1e-5
    ) -> None:
        if direction not in DIRECTIONS:
            raise InvalidSettingError(
                f"{self.name} needs direction in {list(DIRECTIONS)}, got {direction!r}"
            )
        for key, value in (("gamma_init", gamma_init), ("tol", tol)):
            require_real(self.name, key, value, low=0.0, low_open=True)
        if tol >= gamma_init:
            raise InvalidSettingError(
                f"{self.name} needs tol < gamma_init, got tol={tol!r}, gamma_init={gamma_init!r}"
            )
        self.direction = direction
        self.gamma_init = float(gamma_init)
        self.tol = float(tol)

    def objective(self, malicious: torch.Tensor, observed: torch.Tensor) -> float:
        """Return the quantity of ``malicious`` (``(d,)``) that must not exceed the threshold."""
        raise NotImplementedError

    def threshold(self, observed: torch.Tensor) -> float:
        """Return the bound the objective must respect, from the observed updates alone."""
        raise NotImplementedError

    def tunable(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable:
        r"""The round with a free multiple *t* of the admissible γ: :math:`m(t) = \mu + t\gamma p`.

        The strength is the scale *t* (``gamma_scale``, default 1: the paper's attack), so
        one search range fits every direction and update scale; ``gamma`` logs tγ.
        """
        mean = observed.mean(dim=0)
        p = perturbation(mean, observed, self.direction)
        bound = self.threshold(observed)
        gamma, capped = largest_gamma(
            lambda g: self.objective(mean + g * p, observed) <= bound, self.gamma_init, self.tol
        )
        return Tunable(
            key="gamma_scale",
            default=1.0,
            craft=lambda t: (mean + t * gamma * p).expand(f, -1).clone(),
            info=lambda t: {
                "gamma": t * gamma,
                "gamma_admissible": gamma,
                "gamma_capped": capped,
                "direction": self.direction,
                "threshold": bound,
            },
        )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        r"""Return *f* copies of :math:`\mu + \gamma p` with the largest admissible γ."""
        mean = observed.mean(dim=0)
        p = perturbation(mean, observed, self.direction)
        bound = self.threshold(observed)
        gamma, capped = largest_gamma(
            lambda g: self.objective(mean + g * p, observed) <= bound, self.gamma_init, self.tol
        )
        if capped:
            logger.warning(
                "%s: every probe up to 2·gamma_init=%g was admissible; raise gamma_init",
                self.name,
                2 * self.gamma_init,
            )
        logger.debug("%s: gamma=%.6g threshold=%.6g", self.name, gamma, bound)
        info = {
            "gamma": gamma,
            "gamma_capped": capped,
            "direction": self.direction,
            "threshold": bound,
        }
        return CraftedUpdates((mean + gamma * p).expand(f, -1).clone(), info)
