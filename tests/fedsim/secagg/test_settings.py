"""SecAggSettings: Flower's checks, the sharp edges it leaves open, and for_cohort's sizes."""

from __future__ import annotations

import pytest

from fedsim.errors import InvalidSettingError
from fedsim.secagg import Cohort, SecAggSettings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clipping_range": 0.0}, "clipping_range must be a finite number > 0, got 0.0"),
        ({"clipping_range": -1.0}, "clipping_range must be a finite number > 0, got -1.0"),
        ({"clipping_range": float("inf")}, "clipping_range must be a finite number > 0, got inf"),
        ({"modulus_range": 3 * 2**30}, "modulus_range must be a power of two, got 3221225472"),
        ({"modulus_range": 2**22}, "modulus_range must be an integer > quantization_range=4194304"),
        ({"modulus_range": 2**33}, "modulus_range must be at most 2**32"),
        ({"quantization_range": 0}, "quantization_range must be an integer > 0, got 0"),
        ({"num_shares": 2}, "num_shares as an integer must be 1 (all nodes) or > 2, got 2"),
        ({"num_shares": 1.5}, "num_shares as a float is a fraction of the cohort in (0, 1]"),
        ({"num_shares": True}, "num_shares must be an int or a float, got True"),
        ({"reconstruction_threshold": 0}, "reconstruction_threshold as an integer must be >= 1"),
        ({"reconstruction_threshold": 0.0}, "fraction of num_shares in (0, 1], got 0.0"),
        (
            {"num_shares": 5, "reconstruction_threshold": 5},
            "reconstruction_threshold=5 must be less than num_shares=5",
        ),
    ],
)
def test_a_bad_setting_is_refused_with_its_value_and_rule(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidSettingError) as raised:
        SecAggSettings(**kwargs)
    assert message in str(raised.value)


def test_a_cohort_whose_sum_can_wrap_is_refused() -> None:
    settings = SecAggSettings(quantization_range=2**20, modulus_range=2**24)
    assert settings.for_cohort(15).num_nodes == 15  # 15 * 2**20 < 2**24
    with pytest.raises(InvalidSettingError, match=r"n=16 .* n \* quantization_range = 16777216"):
        settings.for_cohort(16)  # 16 * 2**20 == 2**24 wraps to 0


def test_a_cohort_needs_two_nodes_and_a_reachable_threshold() -> None:
    with pytest.raises(InvalidSettingError, match="at least 2 nodes, got 1"):
        SecAggSettings().for_cohort(1)
    with pytest.raises(InvalidSettingError, match="reconstruction_threshold=4 exceeds the 3"):
        SecAggSettings(num_shares=0.5, reconstruction_threshold=4).for_cohort(4)


@pytest.mark.parametrize(
    ("num_shares", "threshold", "n", "expected"),
    [
        # Flower's setup_stage by hand: k = round(f n), +1 if even and < n, n if <= 2;
        # t = max(round(g k), 2)
        (0.5, 0.6, 10, (5, 3)),
        (0.5, 0.6, 4, (3, 2)),  # round(2.0) = 2, even: 3
        (0.5, 0.6, 2, (2, 2)),  # round(1.0) = 1 <= 2: all
        (0.5, 0.6, 5, (3, 2)),  # round(2.5) = 2 (banker's), even: 3; round(1.8) = 2
        (0.5, 0.6, 100, (51, 31)),  # 50 even: 51; round(30.6) = 31
        (0.3, 0.6, 20, (7, 4)),
        (1.0, 1.0, 6, (6, 6)),  # k = n even stays (it is n)
        (1, 1, 6, (6, 6)),  # the integer 1 means all, as in Flower
        (5, 3, 20, (5, 3)),
        (4, 3, 20, (5, 3)),  # an even integer is made odd, as Flower's graph does
        (7, 3, 5, (5, 3)),  # capped at n
    ],
)
def test_for_cohort_resolves_shares_and_threshold_as_flower(
    num_shares: float, threshold: float, n: int, expected: tuple[int, int]
) -> None:
    cohort = SecAggSettings(num_shares, threshold).for_cohort(n)
    assert cohort == Cohort(num_nodes=n, num_shares=expected[0], threshold=expected[1])
