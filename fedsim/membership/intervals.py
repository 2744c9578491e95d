"""Exact binomial confidence intervals for a measured (FPR, TPR) point, and a DP-consistency check.

For an (ε, δ)-DP mechanism every membership test satisfies TPR ≤ e^ε·FPR + δ and
1 − FPR ≤ e^ε·(1 − TPR) + δ, and, with the neighbouring datasets swapped, FPR ≤ e^ε·TPR + δ and
1 − TPR ≤ e^ε·(1 − FPR) + δ (Kairouz, Oh, Viswanath, "The Composition Theorem for Differential
Privacy", ICML 2015). A measured point outside that region *beyond its confidence interval*
means a bug in the mechanism or its accountant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import check_confidence
from fedsim.validation import require_int, require_real

__all__ = [
    "RocPointInterval",
    "clopper_pearson",
    "dp_consistent",
    "dp_region_contains",
    "roc_point_interval",
]


def clopper_pearson(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    r"""Two-sided Clopper–Pearson interval for a binomial proportion.

    With k successes in n trials and α = 1 − confidence,

    .. math:: p_{lo} = B^{-1}(\alpha/2;\, k, n-k+1), \qquad
              p_{hi} = B^{-1}(1-\alpha/2;\, k+1, n-k),

    :math:`B^{-1}` the beta quantile, with :math:`p_{lo} = 0` for k = 0 and :math:`p_{hi} = 1`
    for k = n (Clopper & Pearson, Biometrika 1934). Each end is a one-sided bound at level
    1 − α/2.

    Parameters
    ----------
    successes : int
        k, 0 ≤ k ≤ n.
    trials : int
        n ≥ 1.
    confidence : float
        In (0, 1).

    Returns
    -------
    tuple of float
        ``(low, high)``.

    Examples
    --------
    >>> low, high = clopper_pearson(0, 10, 0.95)
    >>> low, round(high, 4)  # 1 - 0.025**(1/10)
    (0.0, 0.3085)
    """
    rule = "clopper_pearson"
    n = require_int(rule, "trials", trials, minimum=1)
    k = require_int(rule, "successes", successes, minimum=0)
    if k > n:
        raise InvalidSettingError(f"{rule} needs successes <= trials, got {k} > {n}")
    alpha = 1.0 - check_confidence(rule, confidence)
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


@dataclass(frozen=True)
class RocPointInterval:
    """A joint confidence box for a measured (FPR, TPR) point.

    Attributes
    ----------
    fpr_low, fpr_high, tpr_low, tpr_high : float
        Clopper–Pearson ends; the box holds both true rates with probability ≥ ``confidence``.
    confidence : float
        The joint level.
    """

    fpr_low: float
    fpr_high: float
    tpr_low: float
    tpr_high: float
    confidence: float


def roc_point_interval(
    fpr: float, tpr: float, n_neg: int, n_pos: int, confidence: float = 0.95
) -> RocPointInterval:
    r"""Joint Clopper–Pearson box for a measured (FPR, TPR) point.

    FPR·n_neg false positives and TPR·n_pos true positives (whole numbers) each get a
    two-sided :func:`clopper_pearson` interval at level 1 − (1 − confidence)/2, so both hold
    together with probability ≥ confidence (union bound).

    Parameters
    ----------
    fpr, tpr : float
        The measured rates, in [0, 1].
    n_neg, n_pos : int
        Non-members and members they were measured on (≥ 1).
    confidence : float
        Joint level, in (0, 1).

    Returns
    -------
    RocPointInterval

    Examples
    --------
    >>> box = roc_point_interval(0.0, 1.0, 100, 100, confidence=0.95)
    >>> box.fpr_low, round(box.fpr_high, 4), round(box.tpr_low, 4), box.tpr_high  # 0.0125**0.01
    (0.0, 0.0429, 0.9571, 1.0)
    """
    rule = "roc_point_interval"
    n_neg = require_int(rule, "n_neg", n_neg, minimum=1)
    n_pos = require_int(rule, "n_pos", n_pos, minimum=1)
    fpr = require_real(rule, "fpr", fpr, low=0.0, high=1.0)
    tpr = require_real(rule, "tpr", tpr, low=0.0, high=1.0)
    confidence = check_confidence(rule, confidence)
    each = 1.0 - (1.0 - confidence) / 2.0
    f_lo, f_hi = clopper_pearson(_count(rule, "fpr", fpr, n_neg), n_neg, each)
    t_lo, t_hi = clopper_pearson(_count(rule, "tpr", tpr, n_pos), n_pos, each)
    return RocPointInterval(f_lo, f_hi, t_lo, t_hi, confidence)


def dp_region_contains(fpr: float, tpr: float, epsilon: float, delta: float) -> bool:
    r"""Whether (FPR, TPR) lies in the (ε, δ)-DP region of hypothesis tests.

    The four inequalities :math:`t \le e^\varepsilon f + \delta`,
    :math:`1 - f \le e^\varepsilon (1 - t) + \delta`, :math:`f \le e^\varepsilon t + \delta`,
    :math:`1 - t \le e^\varepsilon (1 - f) + \delta`, with f = FPR and t = TPR (a relative
    tolerance of 1e-12 absorbs rounding).

    Examples
    --------
    >>> eps = math.log(2)  # TPR <= 2 FPR
    >>> dp_region_contains(0.1, 0.2, eps, 0.0), dp_region_contains(0.1, 0.3, eps, 0.0)
    (True, False)
    """
    e = math.exp(epsilon)
    tol = 1e-12
    return (
        tpr <= e * fpr + delta + tol
        and 1 - fpr <= e * (1 - tpr) + delta + tol
        and fpr <= e * tpr + delta + tol
        and 1 - tpr <= e * (1 - fpr) + delta + tol
    )


def dp_consistent(
    fpr: float,
    tpr: float,
    n_neg: int,
    n_pos: int,
    epsilon: float,
    delta: float,
    confidence: float = 0.95,
) -> bool:
    r"""Whether a measured (FPR, TPR) point is consistent with (ε, δ)-DP at a confidence level.

    The box :math:`[f_{lo}, f_{hi}] \times [t_{lo}, t_{hi}]` of :func:`roc_point_interval`
    holds the true rates with probability ≥ confidence. The point is consistent iff some point
    of the box lies in the DP region of :func:`dp_region_contains`. The region contains the
    diagonal and, above it, only the constraints :math:`t \le e^\varepsilon f + \delta` and
    :math:`1-f \le e^\varepsilon(1-t) + \delta` bind, both easiest at the corner
    :math:`(f_{hi}, t_{lo})` (symmetrically below), so three checks decide it: the box meets the
    diagonal, or corner :math:`(f_{hi}, t_{lo})` or :math:`(f_{lo}, t_{hi})` is inside.
    ``False`` is evidence (at that confidence) that the mechanism or its accountant is wrong.

    Parameters
    ----------
    fpr, tpr : float
        The measured rates, in [0, 1].
    n_neg, n_pos : int
        Non-members and members they were measured on (≥ 1).
    epsilon : float
        ε ≥ 0 claimed by the accountant.
    delta : float
        δ in [0, 1].
    confidence : float
        Joint confidence of the box, in (0, 1).

    Examples
    --------
    >>> dp_consistent(0.0, 0.5, 1000, 1000, epsilon=1.0, delta=1e-5)  # TPR 50 % at FPR 0
    False
    >>> dp_consistent(0.0, 0.5, 10, 10, epsilon=1.0, delta=1e-5)  # same rates, too few samples
    True
    """
    rule = "dp_consistent"
    epsilon = require_real(rule, "epsilon", epsilon, low=0.0)
    delta = require_real(rule, "delta", delta, low=0.0, high=1.0)
    box = roc_point_interval(fpr, tpr, n_neg, n_pos, confidence)
    f_lo, f_hi, t_lo, t_hi = box.fpr_low, box.fpr_high, box.tpr_low, box.tpr_high
    meets_diagonal = max(f_lo, t_lo) <= min(f_hi, t_hi)
    return bool(
        meets_diagonal
        or dp_region_contains(f_hi, t_lo, epsilon, delta)
        or dp_region_contains(f_lo, t_hi, epsilon, delta)
    )


def _count(rule: str, name: str, rate: float, total: int) -> int:
    count = rate * total
    rounded = int(np.rint(count))
    if abs(count - rounded) > 1e-6 * max(1.0, total):
        raise InvalidSettingError(
            f"{rule} needs {name} to be a count over {total} samples, got {rate!r} "
            f"({count:.6g} samples)"
        )
    return rounded
