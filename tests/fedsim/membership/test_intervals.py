import math

import numpy as np
import pytest
from scipy.stats import binom

from fedsim.errors import InvalidSettingError
from fedsim.membership import (
    clopper_pearson,
    dp_consistent,
    dp_region_contains,
    roc_point_interval,
)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (3, 10), (37, 200), (1, 1000)])
def test_clopper_pearson_inverts_the_binomial_tails(k, n):
    alpha = 0.05
    low, high = clopper_pearson(k, n, 1 - alpha)

    # Assert: each end is where the one-sided tail equals alpha/2 (or the trivial end)
    if k == 0:
        assert low == 0.0 and high == pytest.approx(1 - (alpha / 2) ** (1 / n))
    else:
        assert binom.sf(k - 1, n, low) == pytest.approx(alpha / 2)  # P[X >= k | low]
    if k == n:
        assert high == 1.0 and low == pytest.approx((alpha / 2) ** (1 / n))
    else:
        assert binom.cdf(k, n, high) == pytest.approx(alpha / 2)  # P[X <= k | high]
    assert low <= k / n <= high


@pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5, -0.1, True])
def test_confidence_must_be_in_open_unit_interval(confidence):
    with pytest.raises(InvalidSettingError, match="confidence in"):
        clopper_pearson(1, 10, confidence)


def test_clopper_pearson_rejects_bad_counts():
    with pytest.raises(InvalidSettingError, match="successes <= trials"):
        clopper_pearson(11, 10, 0.95)
    with pytest.raises(InvalidSettingError, match="trials >= 1"):
        clopper_pearson(0, 0, 0.95)


def test_dp_region_hand_computed():
    eps = math.log(2)
    assert dp_region_contains(0.1, 0.2, eps, 0.0)  # TPR = 2 FPR: on the boundary
    assert not dp_region_contains(0.1, 0.25, eps, 0.0)
    assert dp_region_contains(0.1, 0.25, eps, 0.05)  # δ absorbs it
    assert not dp_region_contains(0.5, 0.95, eps, 0.0)  # 1 - FPR <= 2(1 - TPR) fails
    assert not dp_region_contains(0.3, 0.1, eps, 0.0)  # swapped neighbours: FPR <= 2 TPR fails
    assert dp_region_contains(0.3, 0.3, 0.0, 0.0)  # random guessing is 0-DP


def test_dp_consistent_hand_cases():
    # A confident attack on many samples contradicts eps = 1 but not eps = 10
    assert not dp_consistent(0.0, 0.5, 1000, 1000, epsilon=1.0, delta=1e-5)
    assert dp_consistent(0.0, 0.5, 1000, 1000, epsilon=10.0, delta=1e-5)
    # Ten samples cannot contradict anything
    assert dp_consistent(0.0, 0.5, 10, 10, epsilon=1.0, delta=1e-5)
    # An inverted attack breaks the swapped inequalities just as much
    assert not dp_consistent(0.5, 0.0, 1000, 1000, epsilon=0.5, delta=0.0)
    # Chance level is consistent with eps = 0
    assert dp_consistent(0.3, 0.3, 1000, 1000, epsilon=0.0, delta=0.0)


def test_dp_consistent_on_randomised_response():
    # Randomised response with eps = 1 sits on the boundary TPR = e FPR (and 1-FPR = e(1-TPR)).
    eps, n = 1.0, 2000
    q = math.exp(eps) / (1 + math.exp(eps))
    rng = np.random.default_rng(0)
    flagged_true, flagged_false = [], []
    for _ in range(30):
        tp, fp = rng.binomial(n, q), rng.binomial(n, 1 - q)
        flagged_true.append(dp_consistent(fp / n, tp / n, n, n, eps, 0.0, confidence=0.99))
        flagged_false.append(dp_consistent(fp / n, tp / n, n, n, 0.5, 0.0, confidence=0.99))

    # Assert: the true eps is (almost) never flagged; half of it always is
    assert sum(flagged_true) >= 29
    assert not any(flagged_false)


def test_roc_point_interval_is_a_bonferroni_box():
    box = roc_point_interval(0.05, 0.4, 200, 100, confidence=0.9)

    assert (box.fpr_low, box.fpr_high) == clopper_pearson(10, 200, 0.95)
    assert (box.tpr_low, box.tpr_high) == clopper_pearson(40, 100, 0.95)
    assert box.confidence == 0.9


def test_dp_consistent_needs_counts():
    with pytest.raises(InvalidSettingError, match="count over 10 samples"):
        dp_consistent(0.3333, 0.5, 10, 10, epsilon=1.0, delta=0.0)
    with pytest.raises(InvalidSettingError, match="epsilon >= 0"):
        dp_consistent(0.3, 0.5, 10, 10, epsilon=-1.0, delta=0.0)
