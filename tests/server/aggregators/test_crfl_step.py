"""CRFL's server step in real rounds (``defense.crfl``): clip and perturb the global model."""

from __future__ import annotations

import pytest

from fedsim.errors import ScenarioError
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import numbers, run_scenario_in_memory


def _accuracies(**crfl: float) -> list[tuple]:
    defense = {"aggregator": "fedavg", **({"crfl": crfl} if crfl else {})}
    rows, _ = run_scenario_in_memory(make_scenario(rounds=2, defense=defense))
    return numbers(rows)


def test_a_loose_bound_without_noise_changes_nothing() -> None:
    assert _accuracies(rho=1e9, sigma=0.0) == _accuracies()


def test_the_noise_is_seeded_per_round_and_a_tight_bound_bites() -> None:
    noisy = _accuracies(rho=1e9, sigma=0.05)
    assert noisy == _accuracies(rho=1e9, sigma=0.05) and noisy != _accuracies()
    assert _accuracies(rho=0.5, sigma=0.0) != _accuracies()


@pytest.mark.parametrize("crfl", [{"rho": 0}, {"sigma": 0.1}, {"rho": 1, "sigma": -1}])
def test_settings_are_validated(crfl: dict) -> None:
    with pytest.raises(ScenarioError, match="defense.crfl"):
        make_scenario(defense={"aggregator": "fedavg", "crfl": crfl})
