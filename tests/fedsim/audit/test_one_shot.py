import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedsim.audit import (
    canary_cosines,
    gaussian_delta,
    gaussian_epsilon,
    one_shot_epsilon,
    random_canaries,
)
from fedsim.errors import InvalidSettingError


def analytic_gaussian_delta(eps, m):
    # Balle & Wang (ICML 2018): delta(eps) of the Gaussian mechanism with sensitivity/sigma = m
    return norm.cdf(-eps / m + m / 2) - math.exp(eps) * norm.cdf(-eps / m - m / 2)


def integrated_delta(eps, p, q):
    # sup_S P(S) - e^eps Q(S) = integral of (p - e^eps q)_+, by a fine Riemann sum
    x = np.linspace(-20.0, 20.0, 2_000_001)
    excess = np.maximum(norm.pdf(x, *p) - math.exp(eps) * norm.pdf(x, *q), 0.0)
    return float(excess.sum() * (x[1] - x[0]))


@pytest.mark.parametrize("m", [0.1, 0.5, 1.0, 2.0, 5.0])
@pytest.mark.parametrize("eps", [0.0, 0.5, 1.0, 3.0])
def test_equal_variances_are_the_analytic_gaussian_mechanism(m, eps):
    sigma = 0.3
    got = gaussian_delta(eps, 0.0, sigma, m * sigma, sigma)
    assert got == pytest.approx(max(analytic_gaussian_delta(eps, m), 0.0), abs=1e-12)


@pytest.mark.parametrize(
    ("mu1", "sigma1"), [(1.0, 2.0), (1.0, 0.5), (0.0, 1.5), (3.0, 1.1), (-2.0, 0.8)]
)
@pytest.mark.parametrize("eps", [0.0, 0.7, 2.0])
def test_unequal_variances_match_numerical_integration(mu1, sigma1, eps):
    p, q = (mu1, sigma1), (0.0, 1.0)
    expected = max(integrated_delta(eps, p, q), integrated_delta(eps, q, p))

    assert gaussian_delta(eps, 0.0, 1.0, mu1, sigma1) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("m", [0.5, 1.0, 3.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-5])
def test_gaussian_epsilon_inverts_delta(m, delta):
    eps = gaussian_epsilon(0.0, 1.0, m, 1.0, delta)

    assert analytic_gaussian_delta(eps, m) == pytest.approx(delta, rel=1e-6)
    assert gaussian_delta(eps * 0.99, 0.0, 1.0, m, 1.0) > delta


def test_nearly_equal_variances_are_stable():
    # sigma1 = sigma0 (1 + 1e-9): the quadratic's roots are huge; the answer must not jump
    near = gaussian_epsilon(0.0, 1.0, 1.0, 1.0 + 1e-9, 1e-5)
    exact = gaussian_epsilon(0.0, 1.0, 1.0, 1.0, 1e-5)
    assert near == pytest.approx(exact, rel=1e-5)


def test_identical_gaussians_give_zero():
    assert gaussian_epsilon(0.0, 1.0, 0.0, 1.0, 1e-5) == 0.0


def test_canaries_are_unit_seeded_and_null_cosines_have_variance_one_over_d():
    d = 500
    canaries = random_canaries(4000, d, seed=0)
    delta = torch.randn(d, generator=torch.Generator().manual_seed(1))

    cos = canary_cosines(delta, canaries)

    torch.testing.assert_close(canaries.norm(dim=1), torch.ones(4000, dtype=torch.float64))
    torch.testing.assert_close(canaries, random_canaries(4000, d, seed=0))
    assert abs(cos.mean()) < 3 / math.sqrt(d * 4000)
    assert cos.std() == pytest.approx(1 / math.sqrt(d), rel=0.05)


def test_canary_cosines_hand_computed():
    cos = canary_cosines(torch.tensor([3.0, 4.0]), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(cos, [0.6, 0.0])


def test_one_shot_matches_the_gaussian_mechanism_when_the_fit_has_the_null_variance():
    # cosines with sample std exactly 1/sqrt(d) and mean 2/sqrt(d): the Gaussian mechanism, m = 2
    d = 10_000
    z = np.array([-1.0, 1.0]) / math.sqrt(2)  # sample std (ddof=1) of [-a, a] is a*sqrt(2)
    cosines = (2.0 + z) / math.sqrt(d)

    est = one_shot_epsilon(cosines, d, 1e-5)

    assert est.sigma == pytest.approx(est.null_sigma)
    assert est.epsilon == pytest.approx(gaussian_epsilon(0.0, 1.0, 2.0, 1.0, 1e-5), rel=1e-6)
    assert est.canaries == 2 and est.delta == 1e-5


def test_one_shot_on_a_simulated_gaussian_sum():
    # Prepare: the final delta is the sum of k inserted unit canaries plus N(0, s^2 I) noise.
    # Along an inserted canary's direction that is 1 + N(0, s^2 + (k-1)/d), along a fresh one
    # N(0, s^2 + k/d): the Gaussian mechanism with sensitivity/std m = 1/sqrt(s^2 + k/d).
    d, k, s = 2000, 200, 0.5
    canaries = random_canaries(2 * k, d, seed=5)
    generator = torch.Generator().manual_seed(6)
    model_delta = canaries[:k].sum(dim=0) + s * torch.randn(d, generator=generator).double()

    cos = canary_cosines(model_delta, canaries)
    est = one_shot_epsilon(cos[:k], d, 1e-5)
    expected = gaussian_epsilon(0.0, 1.0, 1 / math.sqrt(s**2 + k / d), 1.0, 1e-5)

    # Assert: never-inserted canaries look like N(0, 1/d); the estimate is near the mechanism's
    assert abs(cos[k:].mean()) < 4 / math.sqrt(d * k)
    assert cos[k:].std() == pytest.approx(est.null_sigma, rel=0.15)
    assert est.epsilon == pytest.approx(expected, rel=0.3)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: one_shot_epsilon([0.1], 100, 1e-5), "at least 2"),
        (lambda: one_shot_epsilon([0.1, 0.1], 100, 1e-5), "vary"),
        (lambda: one_shot_epsilon([0.1, 0.2], 100, 0.0), "delta > 0"),
        (lambda: gaussian_delta(1.0, 0.0, 0.0, 1.0, 1.0), "sigma0 > 0"),
        (lambda: canary_cosines(torch.zeros(3), torch.zeros(2, 4)), r"\(k, d\) canaries"),
        (lambda: random_canaries(0, 3, seed=0), "count >= 1"),
    ],
)
def test_invalid_settings(call, match):
    with pytest.raises(InvalidSettingError, match=match):
        call()


def _quadrature_delta(eps, m0, s0, m1, s1):
    """δ(ε) in 400-digit arithmetic: P(S) − e^ε Q(S) on S = {log p/q > ε}, from its ends' CDFs."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(400):  # masses near e^-800 survive the difference of two CDFs near 1
        return _delta_at_precision(mpmath, eps, m0, s0, m1, s1)


def _delta_at_precision(mpmath, eps, m0, s0, m1, s1):
    best = mpmath.mpf(0)
    for (mp_, sp), (mq, sq) in (((m1, s1), (m0, s0)), ((m0, s0), (m1, s1))):
        a = 1 / (2 * mpmath.mpf(sq) ** 2) - 1 / (2 * mpmath.mpf(sp) ** 2)
        b = mpmath.mpf(mp_) / sp**2 - mpmath.mpf(mq) / sq**2
        c = mpmath.mpf(mq) ** 2 / (2 * sq**2) - mpmath.mpf(mp_) ** 2 / (2 * sp**2)
        c += mpmath.log(mpmath.mpf(sq) / sp)
        if a == 0:
            ends = [(eps - c) / b]
        else:
            roots = mpmath.polyroots([a, b, c - eps])
            ends = sorted(r.real for r in roots if abs(mpmath.im(r)) < 1e-30)
        points = [-mpmath.inf, *ends, mpmath.inf]
        total = mpmath.mpf(0)
        for lo, hi in itertools.pairwise(points):
            probe = (lo + hi) / 2 if mpmath.isfinite(lo) and mpmath.isfinite(hi) else None
            probe = probe if probe is not None else (hi - 1 if mpmath.isfinite(hi) else lo + 1)
            if a * probe**2 + b * probe + c > eps:
                p_mass = mpmath.ncdf(hi, mp_, sp) - mpmath.ncdf(lo, mp_, sp)
                q_mass = mpmath.ncdf(hi, mq, sq) - mpmath.ncdf(lo, mq, sq)
                total += p_mass - mpmath.e**eps * q_mass
        best = max(best, total)
    return float(best)


@pytest.mark.parametrize(
    "eps, mu1, sigma1",
    [(5.0, 1.0, 0.17), (558.0, 1.0, 0.17), (800.0, 1.0, 0.17), (720.0, 40.0, 1.0), (3.0, 2.0, 1.0)],
)
def test_gaussian_delta_matches_400_digit_arithmetic_even_past_exp_overflow(eps, mu1, sigma1):
    # e^ε overflows a float at ε ≥ 710; δ itself is finite and is computed in log space.
    expected = _quadrature_delta(eps, 0.0, 1.0, mu1, sigma1)
    assert gaussian_delta(eps, 0.0, 1.0, mu1, sigma1) == pytest.approx(expected, rel=1e-9)


def test_gaussian_epsilon_is_found_above_512_and_inf_only_past_the_cap():
    # The example: N(0, 1) vs N(1, 0.17²) at δ = 1e-6 has ε ≈ 558.6 (below the 1000 cap).
    eps = gaussian_epsilon(0.0, 1.0, 1.0, 0.17, 1e-6)
    assert 550 < eps < 570
    assert (
        gaussian_delta(eps, 0.0, 1.0, 1.0, 0.17)
        <= 1e-6
        < gaussian_delta(eps * 0.99, 0.0, 1.0, 1.0, 0.17)
    )
    # σ₁ = 0.05: δ(1000) ≈ 0.11 > 1e-6, so the smallest ε is past the cap.
    assert gaussian_delta(1000.0, 0.0, 1.0, 1.0, 0.05) > 1e-6
    assert gaussian_epsilon(0.0, 1.0, 1.0, 0.05, 1e-6) == math.inf
