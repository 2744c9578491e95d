"""Privacy auditing with one training run (Steinke, Nasr, Jagielski, NeurIPS 2023).

m canaries are each inserted independently with probability ½ (the inclusion bits, drawn
before training: :func:`fedsim.membership.sampling.canary_inclusion`). After training the
auditor scores every canary, guesses "in" for the k₊ highest scores and "out" for the k₋
lowest, and abstains on the rest: r = k₊ + k₋ guesses, v of them correct. Under ε-DP the
number of correct guesses is stochastically dominated by Binomial(r, e^ε/(1 + e^ε)) (the
paper's main theorem), so

    ε_lb = sup{ε ≥ 0 : P[Binomial(r, e^ε/(1+e^ε)) ≥ v] ≤ β},   β = 1 − confidence,

is a lower bound on ε that holds with probability ≥ confidence. With δ > 0 the tail gets the
paper's additive term (its Corollary 5.4, the p-value its Appendix D code computes):

    p(ε, δ) = P[B ≥ v] + 2·m·δ·max_{1 ≤ i ≤ v} P[v − i ≤ B < v] / i,   B ~ Binomial(r, e^ε/(1+e^ε)).

ε_lb is found by bisection and the returned value is the end whose p-value is ≤ β, so the
mechanism is rejected as (ε_lb, δ)-DP itself, which rejects every smaller ε too (an
(ε', δ)-DP mechanism with ε' < ε_lb is (ε_lb, δ)-DP). The bound is loose by design and must never
exceed the accounted ε.

**Choosing k₊, k₋ without peeking.** The counts must be fixed before looking at the inclusion
bits. Scanning several (k₊, k₋) and keeping the largest bound tests G hypotheses and inflates the
bound; :func:`one_run_audit_scan` therefore runs each of the G candidates at level β/G
(Bonferroni), which keeps the maximum valid at confidence 1 − β.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import binom

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import (
    as_bool_array,
    as_float_array,
    check_confidence,
    check_same_shape,
)
from fedsim.validation import require_int, require_real

__all__ = [
    "OneRunAudit",
    "one_run_audit",
    "one_run_audit_scan",
    "one_run_epsilon",
    "one_run_p_value",
]

RULE = "one-run audit"
EPSILON_CAP = 100.0  # beyond it e^ε/(1+e^ε) is 1 in float64
BISECTION_STEPS = 100


def one_run_p_value(
    correct: int, guesses: int, epsilon: float, *, delta: float = 0.0, canaries: int | None = None
) -> float:
    r"""p-value of ≥ v correct out of r guesses under the null hypothesis "(ε, δ)-DP".

    .. math:: p = \Pr[B \ge v] + 2 m \delta \max_{1 \le i \le v}
              \frac{\Pr[v - i \le B < v]}{i}, \qquad
              B \sim \mathrm{Binomial}\big(r, \tfrac{e^\varepsilon}{1 + e^\varepsilon}\big)

    (the second term only for δ > 0; Steinke, Nasr, Jagielski, NeurIPS 2023, Corollary 5.4),
    capped at 1.

    Parameters
    ----------
    correct : int
        v, 0 ≤ v ≤ r.
    guesses : int
        r ≥ 0 (abstentions excluded).
    epsilon : float
        ε ≥ 0 of the null hypothesis.
    delta : float
        δ in [0, 1].
    canaries : int or None
        m ≥ r, all canaries (guessed or not); needed when δ > 0.

    Returns
    -------
    float
        The p-value, in [0, 1].

    Examples
    --------
    >>> one_run_p_value(10, 10, 0.0)  # ten right coin flips: 2**-10
    0.0009765625
    """
    v, r = _counts(correct, guesses)
    epsilon = require_real(RULE, "epsilon", epsilon, low=0.0)
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0)
    m = _canaries(canaries, r, delta)
    return _p_value(v, r, epsilon, delta, m)


def one_run_epsilon(
    correct: int,
    guesses: int,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
    canaries: int | None = None,
) -> float:
    r"""Lower bound on ε from v correct out of r guesses: the largest ε rejected at level β.

    :math:`\varepsilon_{lb} = \sup\{\varepsilon \ge 0 : p(\varepsilon, \delta) \le \beta\}`,
    β = 1 − confidence, p from :func:`one_run_p_value`; 0 when even ε = 0 is not rejected.
    For all r guesses correct and δ = 0, :math:`p = q^r`, so
    :math:`\varepsilon_{lb} = \log\frac{q^*}{1 - q^*}` with :math:`q^* = \beta^{1/r}`.
    Found by bisection (100 halvings of [0, 100]), returning the end with p ≤ β.

    Parameters
    ----------
    correct, guesses, delta, canaries
        As in :func:`one_run_p_value`.
    confidence : float
        1 − β, in (0, 1).

    Returns
    -------
    float
        ε_lb ≥ 0 (at most 100).

    Examples
    --------
    >>> q = 0.05 ** (1 / 20)  # 20 of 20 right
    >>> round(one_run_epsilon(20, 20), 6) == round(math.log(q / (1 - q)), 6)
    True
    >>> one_run_epsilon(5, 10)  # a coin does as well
    0.0
    """
    v, r = _counts(correct, guesses)
    beta = 1.0 - check_confidence(RULE, confidence)
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0)
    m = _canaries(canaries, r, delta)
    return _epsilon(v, r, beta, delta, m)


@dataclass(frozen=True)
class OneRunAudit:
    """Outcome of a one-run audit.

    Attributes
    ----------
    epsilon_lower_bound : float
        ε_lb at the stated confidence (and δ).
    correct, guesses : int
        v and r.
    k_pos, k_neg : int
        The "in" and "out" guesses made.
    canaries : int
        m.
    confidence, delta : float
        The confidence and δ the bound holds at (after a scan, for the maximum over the grid).
    tests : int
        G, the (k₊, k₋) pairs scanned (1 for a fixed pair); each was run at 1 − β/G.
    """

    epsilon_lower_bound: float
    correct: int
    guesses: int
    k_pos: int
    k_neg: int
    canaries: int
    confidence: float
    delta: float
    tests: int = 1


def one_run_audit(
    scores: Any,
    included: Any,
    k_pos: int,
    k_neg: int,
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
) -> OneRunAudit:
    """One-run audit with fixed guess counts: "in" for the k₊ top scores, "out" for the k₋ lowest.

    Ties in scores are broken by canary index (a stable sort), which is independent of the
    inclusion bits as the bound requires. k₊ and k₋ must be chosen before the bits are seen.

    Parameters
    ----------
    scores : array-like
        ``(m,)`` canary scores, higher = more likely inserted.
    included : array-like
        ``(m,)`` the inclusion bits (True = inserted), independent fair coins.
    k_pos, k_neg : int
        ≥ 0, with k₊ + k₋ ≤ m.
    confidence : float
        In (0, 1).
    delta : float
        δ in [0, 1] of the hypotheses tested.

    Returns
    -------
    OneRunAudit

    Examples
    --------
    >>> scores = np.arange(20.0)
    >>> audit = one_run_audit(scores, scores >= 10, k_pos=10, k_neg=10)
    >>> audit.correct, audit.guesses, round(audit.epsilon_lower_bound, 4)  # q = 0.05**(1/20)
    (20, 20, 1.8227)
    """
    s = as_float_array(RULE, "scores", scores, ndim=1)
    bits = as_bool_array(RULE, "included", included, ndim=1)
    check_same_shape(RULE, scores=s, included=bits)
    confidence = check_confidence(RULE, confidence)
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0)
    correct, guesses = _guess(s, bits, k_pos, k_neg)
    return OneRunAudit(
        epsilon_lower_bound=_epsilon(correct, guesses, 1.0 - confidence, delta, s.size),
        correct=correct,
        guesses=guesses,
        k_pos=int(k_pos),
        k_neg=int(k_neg),
        canaries=int(s.size),
        confidence=confidence,
        delta=delta,
    )


def one_run_audit_scan(
    scores: Any,
    included: Any,
    grid: Sequence[tuple[int, int]],
    *,
    confidence: float = 0.95,
    delta: float = 0.0,
) -> OneRunAudit:
    """One-run audit over a fixed grid of (k₊, k₋), the maximum made valid by Bonferroni.

    Each of the G grid points is tested at level β/G (confidence 1 − β/G), so the probability
    that *any* of them overstates ε is ≤ β and the largest bound holds at the requested
    confidence. The grid must be fixed before the inclusion bits are seen (e.g. k₊ = k₋ ∈
    {m/100, m/20, m/10, m/4} rounded); a small grid costs little (β/G enters through a log).

    Parameters
    ----------
    scores, included, confidence, delta
        As in :func:`one_run_audit`.
    grid : sequence of (int, int)
        The (k₊, k₋) pairs, at least one.

    Returns
    -------
    OneRunAudit
        The grid point with the largest bound, with ``confidence`` the requested level (at
        which the maximum holds) and ``tests`` = G.

    Examples
    --------
    >>> scores = np.arange(20.0)
    >>> audit = one_run_audit_scan(scores, scores >= 10, [(5, 5), (10, 10)])
    >>> audit.k_pos, audit.tests, round(audit.epsilon_lower_bound, 4)  # q = 0.025**(1/20)
    (10, 2, 1.5968)
    """
    if len(grid) == 0:
        raise InvalidSettingError(f"{RULE} scan needs at least one (k_pos, k_neg), got none")
    beta = 1.0 - check_confidence(RULE, confidence)
    each = 1.0 - beta / len(grid)
    audits = [
        one_run_audit(scores, included, k_pos, k_neg, confidence=each, delta=delta)
        for k_pos, k_neg in grid
    ]
    best = max(audits, key=lambda a: a.epsilon_lower_bound)
    return replace(best, confidence=1.0 - beta, tests=len(grid))


def _guess(s: np.ndarray, bits: np.ndarray, k_pos: int, k_neg: int) -> tuple[int, int]:
    k_pos = require_int(RULE, "k_pos", k_pos, minimum=0)
    k_neg = require_int(RULE, "k_neg", k_neg, minimum=0)
    if k_pos + k_neg > s.size:
        raise InvalidSettingError(
            f"{RULE} needs k_pos + k_neg <= canaries, got {k_pos} + {k_neg} > {s.size}"
        )
    order = np.argsort(-s, kind="stable")
    guessed_in = order[:k_pos]
    guessed_out = order[s.size - k_neg :]
    correct = int(bits[guessed_in].sum() + (~bits[guessed_out]).sum())
    return correct, k_pos + k_neg


def _counts(correct: int, guesses: int) -> tuple[int, int]:
    r = require_int(RULE, "guesses", guesses, minimum=0)
    v = require_int(RULE, "correct", correct, minimum=0)
    if v > r:
        raise InvalidSettingError(f"{RULE} needs correct <= guesses, got {v} > {r}")
    return v, r


def _canaries(canaries: int | None, guesses: int, delta: float) -> int:
    if canaries is None:
        if delta > 0:
            raise InvalidSettingError(
                f"{RULE} with delta > 0 needs the number of canaries m (its bound adds "
                f"2*m*delta), got delta={delta!r} and no canaries"
            )
        return guesses
    m = require_int(RULE, "canaries", canaries, minimum=1)
    if m < guesses:
        raise InvalidSettingError(f"{RULE} needs canaries >= guesses, got {m} < {guesses}")
    return m


def _p_value(v: int, r: int, epsilon: float, delta: float, m: int) -> float:
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of ε-DP randomised response
    p = float(binom.sf(v - 1, r, q))  # P[B >= v]
    if delta > 0 and v > 0:
        i = np.arange(1, v + 1)
        below = np.cumsum(binom.pmf(v - i, r, q))  # P[v - i <= B < v]
        p += 2.0 * m * delta * float(np.max(below / i))
    return min(p, 1.0)


def _epsilon(v: int, r: int, beta: float, delta: float, m: int) -> float:
    if _p_value(v, r, 0.0, delta, m) > beta:
        return 0.0
    low, high = 0.0, EPSILON_CAP  # invariant: p(low) <= beta
    if _p_value(v, r, high, delta, m) <= beta:
        return high
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        if _p_value(v, r, mid, delta, m) <= beta:
            low = mid
        else:
            high = mid
    return low
