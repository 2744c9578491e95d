import math

import pytest
from scipy.stats import beta

from fedsim.audit import clopper_pearson_epsilon
from fedsim.errors import InvalidSettingError


def upper(k, n, confidence):
    return 1.0 if k == n else beta.ppf(1 - (1 - confidence) / 2, k + 1, n - k)


@pytest.mark.parametrize(
    ("fp", "n_neg", "fn", "n_pos", "delta"),
    [
        (0, 100, 0, 100, 0.0),
        (3, 500, 40, 500, 0.0),
        (30, 500, 4, 500, 1e-5),
        (10, 1000, 200, 1000, 0.01),
    ],
)
def test_matches_hand_computation(fp, n_neg, fn, n_pos, delta):
    fpr_ub, fnr_ub = upper(fp, n_neg, 0.95), upper(fn, n_pos, 0.95)
    expected = max(
        0.0,
        math.log((1 - delta - fnr_ub) / fpr_ub),
        math.log((1 - delta - fpr_ub) / fnr_ub),
    )

    got = clopper_pearson_epsilon(fp, n_neg, fn, n_pos, delta=delta, confidence=0.95)

    assert got == pytest.approx(expected, rel=1e-12)


def test_symmetric_in_the_two_error_kinds():
    assert clopper_pearson_epsilon(3, 500, 40, 500) == clopper_pearson_epsilon(40, 500, 3, 500)


def test_zero_errors_hand_computed():
    # FPR_ub = FNR_ub = u = 1 - 0.025^(1/100)
    u = 1 - 0.025 ** (1 / 100)
    assert clopper_pearson_epsilon(0, 100, 0, 100) == pytest.approx(math.log((1 - u) / u))


def test_chance_level_and_large_delta_give_zero():
    assert clopper_pearson_epsilon(50, 100, 50, 100) == 0.0
    assert clopper_pearson_epsilon(0, 100, 0, 100, delta=0.99) == 0.0


def test_more_runs_tighten_the_bound():
    bounds = [clopper_pearson_epsilon(n // 100, n, n // 100, n) for n in (100, 1000, 10_000)]
    assert bounds[0] < bounds[1] < bounds[2] < math.log(99)  # tends to log(0.99/0.01)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((11, 10, 0, 10), {}, "false_positives <= negatives"),
        ((0, 0, 0, 10), {}, "negatives >= 1"),
        ((0, 10, 0, 10), {"delta": 1.0}, "delta < 1"),
        ((0, 10, 0, 10), {"confidence": 0.0}, "confidence in"),
    ],
)
def test_invalid_settings(args, kwargs, match):
    with pytest.raises(InvalidSettingError, match=match):
        clopper_pearson_epsilon(*args, **kwargs)
