"""Classic multi-run audit: Clopper–Pearson bounds on FPR and FNR turned into ε_lb.

Train many models with and without a canary (or score many canaries against a fixed
threshold), count the test's false positives and false negatives, and bound both rates from
above with Clopper–Pearson. Any (ε, δ)-DP mechanism satisfies FPR + e^ε·FNR ≥ 1 − δ and
FNR + e^ε·FPR ≥ 1 − δ, hence (Jagielski, Ullman, Oprea, "Auditing Differentially Private
Machine Learning: How Private is Private SGD?", NeurIPS 2020)

    ε_lb = max( log((1 − δ − FNR_ub) / FPR_ub), log((1 − δ − FPR_ub) / FNR_ub), 0 ).

The threshold of the test must be fixed before the counts are taken (choosing it on the same
runs inflates the bound).
"""

from __future__ import annotations

import math

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import check_confidence
from fedsim.membership.intervals import clopper_pearson
from fedsim.validation import require_int, require_real

__all__ = ["clopper_pearson_epsilon"]

RULE = "Clopper-Pearson audit"


def clopper_pearson_epsilon(
    false_positives: int,
    negatives: int,
    false_negatives: int,
    positives: int,
    *,
    delta: float = 0.0,
    confidence: float = 0.95,
) -> float:
    r"""ε lower bound from a test's false-positive and false-negative counts.

    .. math:: \varepsilon_{lb} = \max\Big(0,\ \log\frac{1 - \delta - \overline{\mathrm{FNR}}}
              {\overline{\mathrm{FPR}}},\ \log\frac{1 - \delta - \overline{\mathrm{FPR}}}
              {\overline{\mathrm{FNR}}}\Big)

    with :math:`\overline{\mathrm{FPR}}, \overline{\mathrm{FNR}}` the upper ends of two-sided
    Clopper–Pearson intervals at level ``confidence`` (each a one-sided bound at
    1 − β/2, β = 1 − confidence, so both hold together with probability ≥ confidence by a
    union bound). A term whose numerator is ≤ 0 contributes 0.

    Parameters
    ----------
    false_positives : int
        Runs without the canary that the test called "with".
    negatives : int
        Runs without the canary (≥ 1).
    false_negatives : int
        Runs with the canary that the test called "without".
    positives : int
        Runs with the canary (≥ 1).
    delta : float
        δ in [0, 1).
    confidence : float
        In (0, 1).

    Returns
    -------
    float
        ε_lb ≥ 0.

    Examples
    --------
    >>> round(clopper_pearson_epsilon(0, 100, 0, 100), 4)  # log((1 - u)/u), u = 1 - 0.025**0.01
    3.2813
    >>> clopper_pearson_epsilon(50, 100, 50, 100)  # a coin
    0.0
    """
    n_neg = require_int(RULE, "negatives", negatives, minimum=1)
    n_pos = require_int(RULE, "positives", positives, minimum=1)
    fp = require_int(RULE, "false_positives", false_positives, minimum=0)
    fn = require_int(RULE, "false_negatives", false_negatives, minimum=0)
    if fp > n_neg or fn > n_pos:
        raise InvalidSettingError(
            f"{RULE} needs false_positives <= negatives and false_negatives <= positives, got "
            f"{fp}/{n_neg} and {fn}/{n_pos}"
        )
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0, high_open=True)
    confidence = check_confidence(RULE, confidence)
    fpr_ub = clopper_pearson(fp, n_neg, confidence)[1]
    fnr_ub = clopper_pearson(fn, n_pos, confidence)[1]
    return max(
        0.0, _log_ratio(1.0 - delta - fnr_ub, fpr_ub), _log_ratio(1.0 - delta - fpr_ub, fnr_ub)
    )


def _log_ratio(numerator: float, denominator: float) -> float:
    return math.log(numerator / denominator) if numerator > 0 else 0.0
