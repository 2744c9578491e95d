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


def rounds(**changes: Any) -> list[dict[str, Any]]:
    rows, _ = run_scenario_in_memory(parse_scenario({**BASE, **changes}))
    return rows


def final(**changes: Any) -> dict[str, Any]:
    return rounds(**changes)[-1]


@pytest.fixture(scope="module")
def clean() -> dict[str, Any]:
    return final()


def test_backdoor_with_model_replacement_succeeds_under_fedavg(clean: dict[str, Any]) -> None:
    rows = rounds(
        attack={"name": "backdoor", "fraction": 0.2, "params": {"boost": 2, "poison_fraction": 0.5}}
    )
    attacked = rows[-1]
    # The ASR swings from round to round (seed 0: 1.00 0.86 0.92 0.71 0.52 0.45 0.68 0.90), so
    # one round's figure is noisy. Measured, seeds 0-4: last round 0.898 0.802 0.861 0.882
    # 0.601 (and 0.703 0.628 0.752 with every seed shifted by 1000·k, k = 1..3; mean 0.77,
    # s.d. 0.11); mean of the 8 rounds 0.756 0.818 0.735 0.687 0.672 (mean 0.73, s.d. 0.06).
    # Both thresholds are about 3 s.d. below; a backdoor that does not take stays near 0.
    assert sum(r["asr"] for r in rows) / len(rows) >= 0.55
    assert attacked["asr"] >= 0.4
    # clean − attacked accuracy, seeds 0-4: 0.042 0.006 0.022 −0.006 0.039 (s.d. 0.02)
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
