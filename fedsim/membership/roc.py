"""ROC metrics of a membership-inference attack: curve, AUC, TPR at low FPR, balanced accuracy.

A score is higher for examples the attack thinks are members; the attack at threshold t says
"member" iff ``score >= t``. Report TPR at FPR ≤ 1 % and 0.1 % next to the AUC: an AUC or a
balanced accuracy hides whether any example is confidently exposed (Carlini et al., "Membership
Inference Attacks From First Principles", IEEE S&P 2022).

**Ties.** Examples with equal scores are never split: every threshold is one of the distinct
scores (plus ``+inf``), so a tied group is called member or non-member as a whole, and no
randomised tie-breaking interpolates between ROC points. ``tpr_at_fpr`` therefore reads the
curve's points, never the straight segment through a tie, which makes it conservative. The AUC
counts a tied (member, non-member) pair as ½, i.e. it is the trapezoidal area under the same
curve, as :func:`sklearn.metrics.roc_auc_score`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import as_bool_array, as_float_array, check_same_shape

__all__ = [
    "MembershipMetrics",
    "RocCurve",
    "balanced_accuracy",
    "membership_metrics",
    "roc_auc",
    "roc_curve",
    "tpr_at_fpr",
]

RULE = "membership ROC"


@dataclass(frozen=True)
class RocCurve:
    """Points of an ROC curve, one per threshold, from (0, 0) to (1, 1).

    Attributes
    ----------
    fpr, tpr : numpy.ndarray
        ``(k,)`` false- and true-positive rates, non-decreasing.
    thresholds : numpy.ndarray
        ``(k,)`` decreasing thresholds; point i says "member" iff ``score >= thresholds[i]``
        (the first is ``+inf``: nobody is called a member).
    false_positives, true_positives : numpy.ndarray
        ``(k,)`` integer counts behind the rates.
    n_members, n_non_members : int
        Positives and negatives in the evaluation set.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    false_positives: np.ndarray
    true_positives: np.ndarray
    n_members: int
    n_non_members: int


def roc_curve(scores: Any, members: Any) -> RocCurve:
    r"""ROC curve of membership scores: one point per distinct score.

    At threshold :math:`t`, :math:`\mathrm{TPR}(t) = |\{i \in M: s_i \ge t\}| / |M|` and
    :math:`\mathrm{FPR}(t) = |\{i \notin M: s_i \ge t\}| / |\bar M|`, with :math:`M` the members
    and :math:`s_i` the scores (higher = more likely a member).

    Parameters
    ----------
    scores : array-like
        ``(n,)`` finite scores.
    members : array-like
        ``(n,)`` booleans, True for members (0/1 accepted); at least one of each.

    Returns
    -------
    RocCurve
        The curve, including the points (0, 0) at ``+inf`` and (1, 1) at the lowest score.

    Raises
    ------
    InvalidSettingError
        Shapes differ, a score is not finite, or there are no members or no non-members.

    Examples
    --------
    >>> curve = roc_curve([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0])
    >>> curve.fpr.round(3).tolist(), curve.tpr.round(3).tolist()
    ([0.0, 0.0, 0.0, 0.333, 0.333, 0.667, 1.0], [0.0, 0.333, 0.667, 0.667, 1.0, 1.0, 1.0])
    """
    s, m = _scores_and_members(scores, members)
    order = np.argsort(-s, kind="stable")
    s_sorted, m_sorted = s[order], m[order]
    # the last index of each run of equal scores: a threshold at that score admits the whole run
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    true_pos = np.r_[0, np.cumsum(m_sorted)[last]]
    false_pos = np.r_[0, np.cumsum(~m_sorted)[last]]
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    return RocCurve(
        fpr=false_pos / n_neg,
        tpr=true_pos / n_pos,
        thresholds=np.r_[np.inf, s_sorted[last]],
        false_positives=false_pos,
        true_positives=true_pos,
        n_members=n_pos,
        n_non_members=n_neg,
    )


def roc_auc(scores: Any, members: Any) -> float:
    r"""Area under the ROC curve: the chance a member outscores a non-member (ties count ½).

    .. math:: \mathrm{AUC} = \frac{1}{|M||\bar M|} \sum_{i \in M} \sum_{j \notin M}
              \big(\mathbb 1[s_i > s_j] + \tfrac12 \mathbb 1[s_i = s_j]\big),

    computed from mid-ranks (the Mann–Whitney U statistic divided by :math:`|M||\bar M|`).

    Examples
    --------
    >>> round(roc_auc([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0]), 4)  # 8 of 9 pairs
    0.8889
    """
    s, m = _scores_and_members(scores, members)
    n_pos, n_neg = int(m.sum()), int((~m).sum())
    ranks = rankdata(s)  # mid-ranks for ties
    u = ranks[m].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def tpr_at_fpr(scores: Any, members: Any, max_fpr: float) -> float:
    r"""Largest TPR among thresholds whose FPR is at most ``max_fpr``.

    :math:`\max\{\mathrm{TPR}(t) : \mathrm{FPR}(t) \le \alpha\}`, over the thresholds of
    :func:`roc_curve` (never interpolated, so tied scores are not split). Compared on counts:
    a threshold qualifies iff its false positives are ≤ ⌊α·|non-members|⌋. With fewer than
    1/α non-members only FPR = 0 qualifies; report ``n_non_members`` alongside.

    Parameters
    ----------
    scores, members : array-like
        As in :func:`roc_curve`.
    max_fpr : float
        α in [0, 1].

    Examples
    --------
    >>> scores, members = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0]
    >>> round(tpr_at_fpr(scores, members, 0.0), 4), round(tpr_at_fpr(scores, members, 0.34), 4)
    (0.6667, 1.0)
    """
    if isinstance(max_fpr, bool) or not isinstance(max_fpr, (int, float)):
        raise InvalidSettingError(f"{RULE} needs a max_fpr in [0, 1], got {max_fpr!r}")
    if not 0.0 <= max_fpr <= 1.0:
        raise InvalidSettingError(f"{RULE} needs a max_fpr in [0, 1], got {max_fpr!r}")
    return _tpr_at(roc_curve(scores, members), max_fpr)


def balanced_accuracy(scores: Any, members: Any) -> float:
    r"""Best balanced accuracy over thresholds.

    :math:`\max_t \tfrac12(\mathrm{TPR}(t) + 1 - \mathrm{FPR}(t))`.
    The threshold is chosen on the evaluation set itself (as in Carlini et al., S&P 2022), so
    this is an optimistic figure; it is at least ½ (the trivial thresholds).

    Examples
    --------
    >>> round(balanced_accuracy([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0]), 4)
    0.8333
    """
    return _balanced_accuracy(roc_curve(scores, members))


@dataclass(frozen=True)
class MembershipMetrics:
    """The figures a membership-inference probe reports.

    Attributes
    ----------
    auc : float
        :func:`roc_auc`.
    tpr_at_fpr_0_01, tpr_at_fpr_0_001 : float
        :func:`tpr_at_fpr` at FPR ≤ 1 % and ≤ 0.1 %.
    balanced_accuracy : float
        :func:`balanced_accuracy`.
    n_members, n_non_members : int
        The evaluation set's sizes (low-FPR figures need many non-members).
    """

    auc: float
    tpr_at_fpr_0_01: float
    tpr_at_fpr_0_001: float
    balanced_accuracy: float
    n_members: int
    n_non_members: int

    def as_metrics(self) -> dict[str, float]:
        """The figures under their ``metrics.jsonl`` names (``mia_auc``, ...)."""
        return {
            "mia_auc": self.auc,
            "mia_tpr_at_fpr_0.01": self.tpr_at_fpr_0_01,
            "mia_tpr_at_fpr_0.001": self.tpr_at_fpr_0_001,
            "mia_balanced_accuracy": self.balanced_accuracy,
        }


def membership_metrics(scores: Any, members: Any) -> MembershipMetrics:
    """AUC, TPR at FPR ≤ 1 % and ≤ 0.1 %, and balanced accuracy of one attack's scores.

    Examples
    --------
    >>> m = membership_metrics([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0])
    >>> round(m.auc, 4), round(m.tpr_at_fpr_0_01, 4), m.n_members
    (0.8889, 0.6667, 3)
    """
    curve = roc_curve(scores, members)
    return MembershipMetrics(
        auc=roc_auc(scores, members),
        tpr_at_fpr_0_01=_tpr_at(curve, 0.01),
        tpr_at_fpr_0_001=_tpr_at(curve, 0.001),
        balanced_accuracy=_balanced_accuracy(curve),
        n_members=curve.n_members,
        n_non_members=curve.n_non_members,
    )


def _tpr_at(curve: RocCurve, max_fpr: float) -> float:
    allowed = np.floor(max_fpr * curve.n_non_members + 1e-9)  # compare counts, not float rates
    return float(curve.tpr[curve.false_positives <= allowed].max())


def _balanced_accuracy(curve: RocCurve) -> float:
    return float(np.max(0.5 * (curve.tpr + 1.0 - curve.fpr)))


def _scores_and_members(scores: Any, members: Any) -> tuple[np.ndarray, np.ndarray]:
    s = as_float_array(RULE, "scores", scores, ndim=1)
    m = as_bool_array(RULE, "members", members, ndim=1)
    check_same_shape(RULE, scores=s, members=m)
    if not m.any() or m.all():
        raise InvalidSettingError(
            f"{RULE} needs at least one member and one non-member, got {int(m.sum())} members "
            f"of {m.size} examples"
        )
    return s, m
