"""One-shot empirical privacy estimation for federated learning (Andrew et al., ICLR 2024).

k canary clients each send a fixed random unit direction c_j as their update (clipped like any
other update); the rest of training is unchanged. At the end, the cosine between the final model
change Δ = w_T − w_0 and each canary direction is measured. For a canary that was never inserted,
c_j is a uniformly random direction independent of Δ, so its cosine is ≈ N(0, 1/d) in d
dimensions; the inserted canaries' cosines are fitted with N(μ, σ²), and the estimate is the ε
at which the mechanism "output N(0, 1/d) or N(μ, σ²)" is (ε, δ)-DP (Andrew, Kairouz, Oh, Oprea,
McMahan, Suriyakumar, "One-shot Empirical Privacy Estimation for Federated Learning", ICLR
2024). It is an *estimate* (not a high-confidence bound) of the privacy of the final model
against an adversary who sees only that model. Canary clients must stay out of accuracy figures.

**Unequal variances.** With σ² ≠ 1/d the two Gaussians' privacy loss is quadratic in the
output, not linear; this module computes their exact hockey-stick divergence in closed form
(the set where the density ratio exceeds e^ε is an interval or the complement of one) in both
directions and takes the larger, then solves for ε by bisection. With equal variances this is the
analytic Gaussian mechanism with sensitivity μ/σ (Balle & Wang, ICML 2018).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import norm

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import as_float_array
from fedsim.validation import require_int, require_real

__all__ = [
    "OneShotEstimate",
    "canary_cosines",
    "gaussian_delta",
    "gaussian_epsilon",
    "one_shot_epsilon",
    "random_canaries",
    "two_sample_epsilon",
]

RULE = "one-shot audit"
EPSILON_CAP = 1000.0
BISECTION_STEPS = 100


def random_canaries(count: int, dim: int, seed: int) -> torch.Tensor:
    """``count`` independent uniformly random unit vectors in R^d (normalised Gaussians), seeded.

    Examples
    --------
    >>> c = random_canaries(3, 5, seed=0)
    >>> c.shape, torch.allclose(c.norm(dim=1), torch.ones(3, dtype=torch.float64))
    (torch.Size([3, 5]), True)
    """
    count = require_int(RULE, "count", count, minimum=1)
    dim = require_int(RULE, "dim", dim, minimum=1)
    generator = torch.Generator().manual_seed(int(seed))
    directions = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    return F.normalize(directions, dim=1)


def canary_cosines(model_delta: torch.Tensor, canaries: torch.Tensor) -> np.ndarray:
    r"""Cosine between the final model change and each canary direction.

    :math:`\cos(\Delta, c_j) = \langle \Delta, c_j\rangle / (\lVert\Delta\rVert \lVert c_j\rVert)`,
    in float64 (0 for a zero vector).

    Parameters
    ----------
    model_delta : torch.Tensor
        ``(d,)`` Δ = w_final − w_initial.
    canaries : torch.Tensor
        ``(k, d)`` canary directions.

    Returns
    -------
    numpy.ndarray
        ``(k,)`` cosines.

    Examples
    --------
    >>> canary_cosines(torch.tensor([1.0, 1.0]), torch.tensor([[1.0, 0.0], [0.0, -2.0]])).round(4)
    array([ 0.7071, -0.7071])
    """
    if model_delta.ndim != 1 or canaries.ndim != 2 or canaries.shape[1] != model_delta.shape[0]:
        raise InvalidSettingError(
            f"{RULE} needs a (d,) model delta and (k, d) canaries, got "
            f"{tuple(model_delta.shape)} and {tuple(canaries.shape)}"
        )
    delta = model_delta.detach().to("cpu", torch.float64)
    c = canaries.detach().to("cpu", torch.float64)
    return F.cosine_similarity(c, delta[None, :].expand_as(c), dim=1, eps=1e-300).numpy()


def gaussian_delta(epsilon: float, mu0: float, sigma0: float, mu1: float, sigma1: float) -> float:
    r"""Smallest δ for which N(μ₀, σ₀²) and N(μ₁, σ₁²) are (ε, δ)-indistinguishable.

    :math:`\delta(\varepsilon) = \max\big(H_\varepsilon(P\|Q), H_\varepsilon(Q\|P)\big)`,
    :math:`H_\varepsilon(P\|Q) = \sup_S P(S) - e^\varepsilon Q(S) = P(L > \varepsilon) -
    e^\varepsilon Q(L > \varepsilon)`, with L = log(p/q) quadratic in the output (linear for
    σ₀ = σ₁), so the set {L > ε} is a half-line, an interval or the complement of one and its
    masses are normal CDFs. For σ₀ = σ₁ = σ and m = |μ₁ − μ₀|/σ it is the analytic Gaussian
    mechanism's :math:`\Phi(-\varepsilon/m + m/2) - e^\varepsilon\Phi(-\varepsilon/m - m/2)`
    (Balle & Wang, ICML 2018).

    Examples
    --------
    >>> round(gaussian_delta(0.0, 0.0, 1.0, 1.0, 1.0), 6)  # total variation: 2Φ(1/2) − 1
    0.382925
    """
    epsilon = require_real(RULE, "epsilon", epsilon, low=0.0)
    for name, sd in (("sigma0", sigma0), ("sigma1", sigma1)):
        require_real(RULE, name, sd, low=0.0, low_open=True)
    p, q = (float(mu1), float(sigma1)), (float(mu0), float(sigma0))
    return max(_hockey_stick(epsilon, p, q), _hockey_stick(epsilon, q, p), 0.0)


def gaussian_epsilon(mu0: float, sigma0: float, mu1: float, sigma1: float, delta: float) -> float:
    r"""Smallest ε ≥ 0 with :func:`gaussian_delta` (ε) ≤ δ, by bisection.

    Examples
    --------
    >>> eps = gaussian_epsilon(0.0, 1.0, 1.0, 1.0, 1e-5)  # Gaussian mechanism, sensitivity/σ = 1
    >>> round(eps, 3), gaussian_delta(eps, 0.0, 1.0, 1.0, 1.0) <= 1e-5
    (4.377, True)
    """
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    if gaussian_delta(0.0, mu0, sigma0, mu1, sigma1) <= delta:
        return 0.0
    low, high = 0.0, 1.0  # invariant: δ(low) > delta >= δ(high)
    while gaussian_delta(high, mu0, sigma0, mu1, sigma1) > delta:
        if high >= EPSILON_CAP:
            return math.inf
        low, high = high, min(2.0 * high, EPSILON_CAP)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        if gaussian_delta(mid, mu0, sigma0, mu1, sigma1) > delta:
            low = mid
        else:
            high = mid
    return high


@dataclass(frozen=True)
class OneShotEstimate:
    """Outcome of the one-shot estimate.

    Attributes
    ----------
    epsilon : float
        The estimated ε at ``delta``.
    mu, sigma : float
        Mean and std of the inserted canaries' cosines.
    null_sigma : float
        1/√d, the std of a never-inserted canary's cosine.
    canaries : int
        Inserted canaries fitted.
    delta : float
        The δ used.
    """

    epsilon: float
    mu: float
    sigma: float
    null_sigma: float
    canaries: int
    delta: float


def one_shot_epsilon(inserted_cosines: Any, dim: int, delta: float) -> OneShotEstimate:
    r"""ε estimate from the inserted canaries' cosines (Andrew et al., ICLR 2024).

    Fit :math:`\hat\mu, \hat\sigma` (mean and std, ddof = 1) to the cosines, then
    :math:`\hat\varepsilon = ` :func:`gaussian_epsilon` of :math:`N(0, 1/d)` against
    :math:`N(\hat\mu, \hat\sigma^2)` at δ.

    Parameters
    ----------
    inserted_cosines : array-like
        ``(k,)`` cosines of the canaries that were inserted, k ≥ 2.
    dim : int
        d, the model's parameter count.
    delta : float
        δ in (0, 1).

    Returns
    -------
    OneShotEstimate

    Examples
    --------
    >>> est = one_shot_epsilon([0.02, 0.04], dim=5000, delta=1e-5)  # σ ≈ 1/√d = 0.0141
    >>> round(est.mu, 3), round(est.sigma, 4), round(est.null_sigma, 4), round(est.epsilon, 2)
    (0.03, 0.0141, 0.0141, 10.75)
    >>> round(gaussian_epsilon(0.0, 1.0, 0.03 / 0.0141421356, 1.0, 1e-5), 2)  # the same
    10.75
    """
    cos = as_float_array(RULE, "inserted_cosines", inserted_cosines, ndim=1)
    if cos.size < 2:
        raise InvalidSettingError(
            f"{RULE} needs at least 2 inserted canaries to fit a Gaussian, got {cos.size}"
        )
    dim = require_int(RULE, "dim", dim, minimum=1)
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    mu, sigma = float(cos.mean()), float(cos.std(ddof=1))
    if sigma == 0.0:
        raise InvalidSettingError(f"{RULE} needs cosines that vary; all equal {mu!r}")
    null_sigma = 1.0 / math.sqrt(dim)
    return OneShotEstimate(
        epsilon=gaussian_epsilon(0.0, null_sigma, mu, sigma, delta),
        mu=mu,
        sigma=sigma,
        null_sigma=null_sigma,
        canaries=int(cos.size),
        delta=delta,
    )


def _log_mass(interval: tuple[float, float], mu: float, sd: float, inside: bool) -> float:
    """The log of the N(mu, sd²) mass of [lo, hi] (``inside``) or of its complement.

    In log space (``norm.logcdf``/``logsf``), so a mass of 1e-300 or below keeps its digits; an
    interval's mass is taken from the tail it lies in (Φ(hi) − Φ(lo), or Φ̄(lo) − Φ̄(hi) above
    the mean), which keeps its relative precision too.
    """
    lo, hi = (interval[0] - mu) / sd, (interval[1] - mu) / sd
    if not inside:
        return float(np.logaddexp(norm.logcdf(lo), norm.logsf(hi)))
    if not hi > lo:
        return -math.inf
    big, small = (norm.logsf(lo), norm.logsf(hi)) if lo > 0 else (norm.logcdf(hi), norm.logcdf(lo))
    return float(big + math.log(-math.expm1(small - big))) if small < big else -math.inf


def _log_side(cut: float, mu: float, sd: float, upper: bool) -> float:
    """The log of N(mu, sd²)(x > cut) (``upper``) or log N(mu, sd²)(x < cut)."""
    z = (cut - mu) / sd
    return float(norm.logsf(z) if upper else norm.logcdf(z))


def _hockey_minus(epsilon: float, log_p: float, log_q: float) -> float:
    """P(S) − e^ε Q(S) from log P(S) and log Q(S), 0 when not positive (no overflow at any ε).

    P − e^ε Q = P·(1 − e^(ε + log Q − log P)), so e^ε is never formed on its own.
    """
    if log_p == -math.inf:
        return 0.0
    x = epsilon + log_q - log_p
    return 0.0 if x >= 0 else math.exp(log_p) * -math.expm1(x)


def _hockey_stick(epsilon: float, p: tuple[float, float], q: tuple[float, float]) -> float:
    """max(P(L > ε) − e^ε Q(L > ε), 0), L = log(p/q), 1-D Gaussians p = (μ₁, σ₁), q = (μ₀, σ₀)."""
    (m1, s1), (m0, s0) = p, q
    # L(x) = a x² + b x + c
    a = 1.0 / (2 * s0**2) - 1.0 / (2 * s1**2)
    b = m1 / s1**2 - m0 / s0**2
    c = m0**2 / (2 * s0**2) - m1**2 / (2 * s1**2) + math.log(s0 / s1)
    if a == 0.0:
        if b == 0.0:
            return 0.0  # L ≡ c: P(L > ε) − e^ε Q(L > ε) is 0 or 1 − e^ε ≤ 0
        cut = (epsilon - c) / b  # L > ε on x > cut (b > 0) or x < cut (b < 0)
        return _hockey_minus(epsilon, _log_side(cut, m1, s1, b > 0), _log_side(cut, m0, s0, b > 0))
    disc = b * b - 4 * a * (c - epsilon)
    if disc <= 0:  # L - ε keeps the sign of a (except at one point): 1 − e^ε ≤ 0 or 0
        return 0.0
    root = math.sqrt(disc)
    t = -0.5 * (b + math.copysign(root, b))  # stable roots: t/a and (c - ε)/t
    r1, r2 = t / a, (c - epsilon) / t
    interval = (min(r1, r2), max(r1, r2))
    inside = a < 0  # a < 0: L > ε between the roots; a > 0: outside them
    return _hockey_minus(
        epsilon, _log_mass(interval, m1, s1, inside), _log_mass(interval, m0, s0, inside)
    )


def two_sample_epsilon(inserted: Any, held_out: Any, delta: float) -> OneShotEstimate:
    r"""One-shot ε estimate with an empirical null: the mean shift of the inserted canaries' scores.

    For canaries whose score under "not inserted" has no known law (the coordinate of a white-box
    gradient canary moves with the data's drift), fit the held-out canaries' scores with
    :math:`N(\hat\mu_0, \hat\sigma_0^2)` and the inserted ones' mean :math:`\hat\mu_1`, and take
    :func:`gaussian_epsilon` of :math:`N(\hat\mu_0, \hat\sigma_0^2)` against
    :math:`N(\hat\mu_1, \hat\sigma_0^2)` at δ: the analytic Gaussian mechanism with sensitivity
    over noise :math:`m = (\hat\mu_1 - \hat\mu_0)/\hat\sigma_0` (μ = m in Gaussian DP), the
    one-shot recipe of Andrew et al. (ICLR 2024) with the null fitted instead of N(0, 1/d).
    The noise that hides a canary is the same whether it was inserted or not; the inserted
    scores' own spread also holds how often each was sampled, and fitting it would read that
    spread as privacy loss in the tails. For scores :math:`N(0, \sigma^2)` against
    :math:`N(1, \sigma^2)` it is the Gaussian mechanism's ε(δ) with noise σ.

    Returns
    -------
    OneShotEstimate
        ``mu``, ``sigma``: the inserted scores' mean and std; ``null_sigma``: the held-out
        scores' std (ddof = 1).

    Examples
    --------
    >>> est = two_sample_epsilon([0.0, 2.0], [-1.0, 1.0], 1e-5)  # shift 1, null std √2
    >>> round(est.mu, 3), round(est.null_sigma, 4), round(est.epsilon, 3)
    (1.0, 1.4142, 2.943)
    >>> round(gaussian_epsilon(0.0, 1.0, 1.0 / 2**0.5, 1.0, 1e-5), 3)  # the same
    2.943
    """
    scores_in = as_float_array(RULE, "inserted", inserted, ndim=1)
    scores_out = as_float_array(RULE, "held_out", held_out, ndim=1)
    if scores_in.size < 2 or scores_out.size < 2:
        raise InvalidSettingError(
            f"{RULE} needs at least 2 inserted and 2 held-out canaries, got "
            f"{scores_in.size} and {scores_out.size}"
        )
    delta = require_real(RULE, "delta", delta, low=0.0, high=1.0, low_open=True, high_open=True)
    mu1, mu0 = float(scores_in.mean()), float(scores_out.mean())
    sd0 = float(scores_out.std(ddof=1))
    if sd0 == 0.0:
        raise InvalidSettingError(f"{RULE} needs held-out scores that vary; all equal {mu0!r}")
    return OneShotEstimate(
        epsilon=gaussian_epsilon(mu0, sd0, mu1, sd0, delta),
        mu=mu1,
        sigma=float(scores_in.std(ddof=1)),
        null_sigma=sd0,
        canaries=int(scores_in.size),
        delta=delta,
    )
