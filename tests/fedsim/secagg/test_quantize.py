"""Stochastic quantization: round trip, unbiased rounding, the sum's error bound, the seed."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.errors import InvalidSettingError
from fedsim.secagg import SecAggSettings, decode_sum, dequantize, quantize, sum_error_bound

SMALL = SecAggSettings(clipping_range=1.0, quantization_range=4, modulus_range=64)  # step 0.5


def test_grid_points_round_trip_exactly_and_values_beyond_c_are_clipped() -> None:
    x = np.array([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 7.0])
    q = quantize(x, SMALL, np.random.default_rng(0))
    assert q.dtype == np.int64
    assert q.tolist() == [0, 0, 1, 2, 3, 4, 4]  # (clip(x) + 1) * 4 / 2
    assert dequantize(q, SMALL).tolist() == [-1.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0]


def test_rounding_is_to_a_neighbour_and_unbiased() -> None:
    # 0.2 maps to y = 2.4: q is 2 (p = 0.6) or 3 (p = 0.4), mean 2.4
    q = quantize(np.full(20_000, 0.2), SMALL, np.random.default_rng(1))
    assert set(np.unique(q).tolist()) == {2, 3}
    assert abs(q.mean() - 2.4) < 0.02  # 4.5 standard errors of sqrt(0.24 / 20000)


def test_the_sum_decodes_within_one_step_per_client_hand_computed() -> None:
    # three clients, c = 1, Q = 4 (step 0.5): y = 2(x + 1)
    x = np.array([[0.2, -0.9], [0.3, 0.1], [-0.6, 1.5]])  # 1.5 is clipped to 1.0
    clipped_sum = np.array([-0.1, 0.2])
    assert sum_error_bound(3, SMALL) == 1.5  # 3 * 2 * 1 / 4
    for seed in range(50):
        q = quantize(x, SMALL, np.random.default_rng(seed))
        total = decode_sum(q.sum(axis=0), 3, SMALL)
        assert np.all(np.abs(total - clipped_sum) < 1.5)
    # the extremes by hand: all rounded down / all up
    low = np.floor(2 * (np.clip(x, -1, 1) + 1)).sum(axis=0)  # [2+2+0, 0+2+4] = [4, 6]
    assert decode_sum(low, 3, SMALL).tolist() == [-1.0, 0.0]  # 4 * 0.5 - 3, 6 * 0.5 - 3
    assert np.all(np.abs(decode_sum(low, 3, SMALL) - clipped_sum) < 1.5)


def test_the_same_seed_gives_the_same_integers() -> None:
    x = np.random.default_rng(3).normal(size=1000)
    s = SecAggSettings()
    a = quantize(x, s, np.random.default_rng(42))
    b = quantize(x, s, np.random.default_rng(42))
    c = quantize(x, s, np.random.default_rng(43))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    legacy = quantize(x, s, np.random.RandomState(7))  # a RandomState serves too
    assert np.array_equal(legacy, quantize(x, s, np.random.RandomState(7)))


def test_weight_is_applied_before_clipping() -> None:
    x = np.array([0.25, 0.75])
    weighted = quantize(x, SMALL, np.random.default_rng(0), weight=2.0)
    assert weighted.tolist() == [3, 4]  # 2x = [0.5, 1.5 -> clipped to 1.0]


def test_a_non_finite_update_is_refused() -> None:
    with pytest.raises(InvalidSettingError, match="non-finite"):
        quantize([0.0, np.nan], SMALL, np.random.default_rng(0))
