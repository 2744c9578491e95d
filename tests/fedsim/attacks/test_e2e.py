"""Attacks end to end on digits (inline runtime): the effects their papers report."""

from __future__ import annotations

from typing import Any

import pytest

from fedsim.scenario import parse_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

BASE: dict[str, Any] = {
    "name": "attack-e2e",
    "seed": 0,
    "rounds": 8,
    "runtime": "inline",
    "device": "cpu",
    "data": {"dataset": "digits", "partition": "iid", "num_clients": 10},
    "model": {"name": "cnn", "params": {"width": 8}},
    "clients": {"local_epochs": 1, "batch_size": 16, "lr": 0.05, "momentum": 0.9},
}


def final(**changes: Any) -> dict[str, Any]:
    rows, _ = run_scenario_in_memory(parse_scenario({**BASE, **changes}))
    return rows[-1]


@pytest.fixture(scope="module")
def clean() -> dict[str, Any]:
    return final()


def test_backdoor_with_model_replacement_succeeds_under_fedavg(clean: dict[str, Any]) -> None:
    attacked = final(
        attack={"name": "backdoor", "fraction": 0.2, "params": {"boost": 2, "poison_fraction": 0.5}}
    )
    assert attacked["asr"] >= 0.8
    assert attacked["accuracy"] >= clean["accuracy"] - 0.10
    assert len(attacked["malicious"]) == 2


def test_sign_flip_breaks_fedavg_but_not_the_median(clean: dict[str, Any]) -> None:
    attack = {"name": "sign_flip", "fraction": 0.4}
    fedavg = final(attack=attack)
    median = final(attack=attack, defense={"aggregator": "median"})
    assert fedavg["accuracy"] < clean["accuracy"] - 0.25
    assert median["accuracy"] >= clean["accuracy"] - 0.10


def test_colluding_attack_runs_in_the_adversary_stage_and_logs_its_settings() -> None:
    row = final(rounds=1, attack={"name": "alie", "fraction": 0.2})
    # n = 10 sampled, f = 2 malicious: s = ⌊10/2 + 1⌋ − 2 = 4, z = Φ⁻¹((10 − 4)/10) = Φ⁻¹(0.6)
    assert row["attack"]["s"] == 4
    assert row["attack"]["z"] == pytest.approx(0.2533471, abs=1e-6)
