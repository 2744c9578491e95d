"""The strength search (grid + golden section) and its settings."""

from __future__ import annotations

import math

import pytest

from fedsim.attacks.strength import StrengthSearch
from fedsim.errors import InvalidSettingError


def test_golden_refinement_finds_an_interior_maximum_in_log_scale() -> None:
    search = StrengthSearch(low=0.01, high=100.0, grid=12, refine=25)
    result = search.run(lambda t: -((math.log(t) - math.log(3.7)) ** 2), default=1.0)
    assert result.strength == pytest.approx(3.7, rel=1e-4)
    assert result.evaluations == 1 + 12 + 25


def test_never_worse_than_the_default_even_off_the_grid() -> None:
    # A spike at the default strength that no grid point or refinement reaches.
    result = StrengthSearch(low=0.0, high=10.0, grid=5, refine=3).run(
        lambda t: 5.0 if t == 1.2345 else 0.0, default=1.2345
    )
    assert result.strength == 1.2345 and result.value == result.default_value == 5.0


def test_non_finite_damage_counts_as_minus_infinity() -> None:
    result = StrengthSearch(low=0.0, high=1.0, grid=3, refine=0).run(
        lambda t: float("nan") if t > 0.4 else t, default=0.1
    )
    assert result.strength == 0.1 or result.strength == 0.0 or result.value == 0.1
    assert math.isfinite(result.value)


def test_settings_split_from_the_attack_params() -> None:
    search, rest = StrengthSearch.from_params(
        {"strength": "optimal", "strength_range": [0.5, 4], "strength_grid": 5, "epsilon": 0.1}
    )
    assert search == StrengthSearch(low=0.5, high=4, grid=5, refine=10)
    assert rest == {"epsilon": 0.1}


@pytest.mark.parametrize(
    "params, message",
    [
        ({"strength": "max"}, "strength must be 'optimal'"),
        ({"strength_grid": 5}, "strength must be 'optimal'"),
        ({"strength": "optimal", "strength_grid": 2}, "strength_grid >= 3"),
        ({"strength": "optimal", "strength_refine": -1}, "strength_refine >= 0"),
        ({"strength": "optimal", "strength_range": [3, 1]}, "low < high"),
        ({"strength": "optimal", "strength_range": [-1, 1]}, "low >= 0"),
        ({"strength": "optimal", "strength_range": 5}, r"\[low, high\]"),
    ],
)
def test_invalid_settings_name_the_key(params: dict, message: str) -> None:
    with pytest.raises(InvalidSettingError, match=message):
        StrengthSearch.from_params(params)
