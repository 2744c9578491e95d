import math

import numpy as np
import pytest
from scipy.stats import binom

from fedsim.audit import (
    one_run_audit,
    one_run_audit_scan,
    one_run_epsilon,
    one_run_p_value,
)
from fedsim.errors import InvalidSettingError


@pytest.mark.parametrize("r", [1, 5, 20, 100, 1000])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_all_correct_matches_closed_form(r, confidence):
    # P[all r right] = q^r <= beta  <=>  q <= beta^(1/r)
    q = (1 - confidence) ** (1 / r)
    expected = math.log(q / (1 - q)) if q > 0.5 else 0.0

    assert one_run_epsilon(r, r, confidence=confidence) == pytest.approx(expected, abs=1e-9)


def test_p_value_is_the_binomial_tail():
    q = 1 / (1 + math.exp(-0.7))
    expected = sum(math.comb(30, j) * q**j * (1 - q) ** (30 - j) for j in range(22, 31))
    assert one_run_p_value(22, 30, 0.7) == pytest.approx(expected, rel=1e-10)


def test_delta_term_hand_computed():
    # p = P[B >= v] + 2 m delta max_i P[v-i <= B < v] / i
    r, v, m, eps, delta = 12, 9, 50, 0.5, 1e-3
    q = 1 / (1 + math.exp(-eps))
    pmf = [math.comb(r, j) * q**j * (1 - q) ** (r - j) for j in range(r + 1)]
    alpha = max(sum(pmf[v - i : v]) / i for i in range(1, v + 1))
    expected = sum(pmf[v:]) + 2 * m * delta * alpha

    assert one_run_p_value(v, r, eps, delta=delta, canaries=m) == pytest.approx(expected)


def test_bound_is_the_largest_rejected_epsilon():
    eps = one_run_epsilon(80, 100, confidence=0.95)

    assert one_run_p_value(80, 100, eps) <= 0.05
    assert one_run_p_value(80, 100, eps + 1e-6) > 0.05


@pytest.mark.parametrize(("v", "r"), [(0, 10), (5, 10), (50, 100), (57, 100), (0, 0)])
def test_no_better_than_a_coin_gives_zero(v, r):
    assert one_run_epsilon(v, r) == 0.0


def test_monotone_in_correct_guesses_and_confidence():
    bounds = [one_run_epsilon(v, 200) for v in range(100, 201, 5)]
    assert all(a <= b for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[-1] > bounds[len(bounds) // 2] > 0
    assert one_run_epsilon(150, 200, confidence=0.99) < one_run_epsilon(150, 200, confidence=0.9)


def test_delta_only_lowers_the_bound():
    pure = one_run_epsilon(900, 1000)
    approx = one_run_epsilon(900, 1000, delta=1e-5, canaries=10_000)
    weaker = one_run_epsilon(900, 1000, delta=1e-4, canaries=10_000)

    assert 0 < weaker < approx < pure
    assert one_run_epsilon(900, 1000, delta=0.0, canaries=10_000) == pure


def test_audit_counts_guesses_with_abstentions():
    # Prepare: 10 canaries; top 3 guessed in, bottom 2 guessed out, 5 abstained
    scores = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    included = np.array([1, 1, 0, 1, 1, 0, 1, 0, 1, 0], bool)

    audit = one_run_audit(scores, included, k_pos=3, k_neg=2)

    # Assert: 2 of the top 3 are in, 1 of the bottom 2 is out
    assert (audit.correct, audit.guesses, audit.canaries) == (3, 5, 10)
    assert audit.epsilon_lower_bound == one_run_epsilon(3, 5)


def test_scan_is_bonferroni_corrected():
    rng = np.random.default_rng(0)
    included = rng.random(1000) < 0.5
    scores = included + rng.normal(0, 0.7, 1000)
    grid = [(10, 10), (50, 50), (100, 100), (200, 200)]

    best = one_run_audit_scan(scores, included, grid, confidence=0.95)
    singles = [one_run_audit(scores, included, kp, kn, confidence=0.95) for kp, kn in grid]
    corrected = [
        one_run_audit(scores, included, kp, kn, confidence=1 - 0.05 / 4) for kp, kn in grid
    ]

    assert best.confidence == pytest.approx(0.95) and best.tests == 4
    assert best.epsilon_lower_bound == max(a.epsilon_lower_bound for a in corrected)
    assert best.epsilon_lower_bound < max(a.epsilon_lower_bound for a in singles)


def test_randomised_response_bound_is_valid_and_not_vacuous():
    # Each canary's score reveals its bit with eps = 1 randomised response: a tight eps-DP
    # mechanism for every guess. The bound must stay below 1 at least 95 % of the time.
    eps, m = 1.0, 1000
    q = math.exp(eps) / (1 + math.exp(eps))
    bounds = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        included = rng.random(m) < 0.5
        truthful = rng.random(m) < q
        scores = np.where(truthful, included, ~included) + 1e-3 * rng.random(m)
        bounds.append(one_run_audit(scores, included, 500, 500).epsilon_lower_bound)

    assert sum(b > eps for b in bounds) <= 4  # expected 2 of 40
    assert np.mean(bounds) > 0.75


def test_binomial_domination_is_what_is_tested():
    # The p-value at eps is scipy's survival function of Binomial(r, e^eps / (1 + e^eps))
    for eps in (0.0, 0.3, 2.0):
        q = 1 / (1 + math.exp(-eps))
        assert one_run_p_value(40, 60, eps) == pytest.approx(binom.sf(39, 60, q))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: one_run_epsilon(11, 10), "correct <= guesses"),
        (lambda: one_run_epsilon(5, 10, confidence=1.0), "confidence in"),
        (lambda: one_run_epsilon(5, 10, delta=1e-5), "needs the number of canaries"),
        (lambda: one_run_epsilon(5, 10, delta=1e-5, canaries=5), "canaries >= guesses"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(4, bool), 3, 2), "k_pos \\+ k_neg"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(3, bool), 1, 1), "equal shapes"),
        (lambda: one_run_audit_scan(np.zeros(4), np.zeros(4, bool), []), "at least one"),
    ],
)
def test_invalid_settings(call, match):
    with pytest.raises(InvalidSettingError, match=match):
        call()
