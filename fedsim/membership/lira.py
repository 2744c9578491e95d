"""The Likelihood Ratio Attack (LiRA), online and offline, on precomputed logit confidences.

LiRA compares the target model's logit-scaled confidence φ(x) (see
:func:`fedsim.membership.scores.logit_confidence`) with φ(x) under reference ("shadow") models
trained on random halves of a population that contains x: per example, a Gaussian is fitted to
the references that trained on x ("in") and one to those that did not ("out") (Carlini, Chien,
Nasr, Song, Terzis, Tramèr, "Membership Inference Attacks From First Principles", IEEE S&P 2022).

Inputs are the target's ``(n,)`` φ, the references' ``(R, n)`` φ and an ``(R, n)`` boolean
mask, True where reference r trained on example i.

**Fitting.** Means are sample means (the paper's Gaussian fit; the authors' released code uses
medians) and standard deviations are the maximum-likelihood (ddof = 0) ones. With few
references (the paper: fewer than ~64) per-example variances are noisy; ``fix_variance=True``
uses one σ_in and one σ_out shared by all examples, pooled from every reference's deviation
from its own example's mean (the released code instead takes the std of all raw values, which
also counts the spread between examples' means). A zero σ is floored at 1e-30, as there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import as_bool_array, as_float_array, check_same_shape

__all__ = ["lira_offline", "lira_online"]

MIN_STD = 1e-30


def lira_online(
    target_phi: Any, reference_phi: Any, in_mask: Any, *, fix_variance: bool = False
) -> np.ndarray:
    r"""Online LiRA: log-likelihood ratio of "in" against "out" Gaussians fitted per example.

    .. math:: s(x) = \log \mathcal N(\phi(x);\, \mu_{in}(x), \sigma_{in}^2(x))
                     - \log \mathcal N(\phi(x);\, \mu_{out}(x), \sigma_{out}^2(x))

    with :math:`\mu_{in}(x), \sigma_{in}(x)` the mean and std of φ(x) over the references that
    trained on x and :math:`\mu_{out}, \sigma_{out}` over those that did not (Carlini et al.,
    IEEE S&P 2022, Algorithm 1; the log of their likelihood ratio Λ, same ranking).

    Parameters
    ----------
    target_phi : array-like
        ``(n,)`` φ of the target model.
    reference_phi : array-like
        ``(R, n)`` φ of the reference models.
    in_mask : array-like
        ``(R, n)`` booleans, True where reference r trained on example i. Each example needs
        ≥ 1 in- and ≥ 1 out-reference with ``fix_variance``, else ≥ 2 of each.
    fix_variance : bool
        One global σ_in and σ_out (pooled within-example deviations) instead of per-example.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 scores, higher = more likely a member.

    Examples
    --------
    >>> ref = [[1.0, 1.0], [3.0, 3.0], [-1.0, -1.0], [1.0, 1.0]]  # in: rows 0, 1; out: 2, 3
    >>> mask = [[True, True], [True, True], [False, False], [False, False]]
    >>> lira_online([2.0, 0.0], ref, mask).round(4)  # N(2, 1) against N(0, 1)
    array([ 2., -2.])
    """
    phi, ref, mask = _inputs("online LiRA", target_phi, reference_phi, in_mask)
    mu_in, sd_in = _fit(ref, mask, fix_variance, "online LiRA", "in")
    mu_out, sd_out = _fit(ref, ~mask, fix_variance, "online LiRA", "out")
    return norm.logpdf(phi, mu_in, sd_in) - norm.logpdf(phi, mu_out, sd_out)


def lira_offline(
    target_phi: Any, reference_phi: Any, in_mask: Any, *, fix_variance: bool = False
) -> np.ndarray:
    r"""Offline LiRA: a one-sided test of φ(x) against the "out" Gaussian only.

    .. math:: s(x) = -\log \Pr[Z \ge \phi(x)]
                   = -\log \bar\Phi\!\Big(\frac{\phi(x) - \mu_{out}(x)}{\sigma_{out}(x)}\Big),
              \quad Z \sim \mathcal N(\mu_{out}(x), \sigma_{out}^2(x)),

    :math:`\bar\Phi` the standard normal survival function (``scipy.stats.norm.logsf``, stable
    far in the upper tail where members lie). It ranks like the paper's
    :math:`\Lambda = 1 - \Pr[Z > \phi(x)]` (Carlini et al., IEEE S&P 2022, offline variant).
    Only the references with ``in_mask`` False are used (R may be all out-models).

    Parameters
    ----------
    target_phi, reference_phi, in_mask, fix_variance
        As in :func:`lira_online`; each example needs ≥ 1 out-reference with
        ``fix_variance``, else ≥ 2.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 scores, higher = more likely a member.

    Examples
    --------
    >>> ref = [[0.0, 0.0], [2.0, 2.0]]  # both out: N(1, 1)
    >>> lira_offline([1.0, 3.0], ref, [[False, False], [False, False]]).round(4)
    array([0.6931, 3.7832])
    """
    phi, ref, mask = _inputs("offline LiRA", target_phi, reference_phi, in_mask)
    mu_out, sd_out = _fit(ref, ~mask, fix_variance, "offline LiRA", "out")
    return -norm.logsf((phi - mu_out) / sd_out)


def _inputs(rule: str, target: Any, reference: Any, mask: Any) -> tuple[np.ndarray, ...]:
    phi = as_float_array(rule, "target_phi", target, ndim=1)
    ref = as_float_array(rule, "reference_phi", reference, ndim=2)
    in_mask = as_bool_array(rule, "in_mask", mask, ndim=2)
    check_same_shape(rule, reference_phi=ref, in_mask=in_mask)
    if phi.size == 0:
        raise InvalidSettingError(f"{rule} needs at least one target example, got none")
    if ref.shape[1] != phi.shape[0]:
        raise InvalidSettingError(
            f"{rule} needs reference_phi of shape (R, {phi.shape[0]}) for {phi.shape[0]} "
            f"targets, got {ref.shape}"
        )
    return phi, ref, in_mask


def _fit(
    ref: np.ndarray, mask: np.ndarray, fix_variance: bool, rule: str, side: str
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and std of ``ref`` over the rows where ``mask`` holds."""
    counts = mask.sum(axis=0)
    needed = 1 if fix_variance else 2
    if counts.size and counts.min() < needed:
        worst = int(np.argmin(counts))
        raise InvalidSettingError(
            f"{rule} needs >= {needed} {side}-reference(s) per example"
            f"{'' if fix_variance else ' (or fix_variance=True)'}; example {worst} has "
            f"{int(counts[worst])}"
        )
    mean = np.where(mask, ref, 0.0).sum(axis=0) / np.maximum(counts, 1)
    squares = np.where(mask, (ref - mean) ** 2, 0.0)
    if fix_variance:
        std = np.full_like(mean, np.sqrt(squares.sum() / counts.sum()))
    else:
        std = np.sqrt(squares.sum(axis=0) / counts)
    return mean, np.maximum(std, MIN_STD)
