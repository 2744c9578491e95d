"""Defence-aware strength end to end (inline runtime, digits): ALIE tuned against the rule."""

from __future__ import annotations

from typing import Any

import pytest

from fedsim.errors import ScenarioError
from fedsim.run.runner import preflight
from fedsim.scenario import parse_scenario
from tests.fedsim.attacks.test_e2e import BASE
from tests.fedsim.run.test_runner import run_scenario_in_memory


def _rows(rule: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    scenario = parse_scenario(
        {
            **BASE,
            "rounds": 5,
            "attack": {"name": "alie", "fraction": 0.3, "knowledge": "full", "params": params},
            "defense": {"aggregator": rule},
        }
    )
    rows, _ = run_scenario_in_memory(scenario)
    return rows


@pytest.mark.parametrize("rule", ["krum", "median", "fltrust"])
def test_optimal_alie_hurts_at_least_as_much_as_the_paper_z(rule: str) -> None:
    fixed = _rows(rule, {})
    tuned = _rows(rule, {"strength": "optimal"})
    for row in tuned:  # every round: the chosen z does at least the default z's damage
        info = row["attack"]
        assert info["damage"] >= info["damage_default"] and info["strength_key"] == "z"
        assert info["z"] == info["strength"] and info["evaluations"] == 1 + 12 + 10
    # Per-round damage is greedy, so a lower final accuracy is the usual outcome, not a theorem
    # (against Krum, IPM at chance level is a tie: 0.017 vs 0.098). Measured final accuracy,
    # fixed → tuned (10 clients, f = 3, 5 rounds), every seed shifted by 1000·k, k = 0, 1, 2:
    # krum 0.930 → 0.794, 0.877 → 0.766, 0.911 → 0.797; median 0.950 → 0.925, 0.877 → 0.833,
    # 0.922 → 0.883; fltrust 0.958 → 0.946, 0.880 → 0.876, 0.927 → 0.907. FLTrust's gain is
    # the smallest, 0.012 ± 0.008 (one test image is 0.004): a tolerance of 0.015 is about
    # 3.5 s.d. above its mean; a tuned z that does less harm than the paper's by more fails.
    assert tuned[-1]["accuracy"] <= fixed[-1]["accuracy"] + 0.015


def test_sign_flip_with_optimal_scale_runs_in_the_stage_and_clients_stay_honest() -> None:
    scenario = parse_scenario(
        {
            **BASE,
            "rounds": 2,
            "attack": {"name": "sign_flip", "fraction": 0.3, "params": {"strength": "optimal"}},
            "defense": {"aggregator": "median"},
        }
    )
    rows, summary = run_scenario_in_memory(scenario)
    for row in rows:
        assert row["attack"]["strength_key"] == "scale"
        assert row["attack"]["damage"] >= row["attack"]["damage_default"]
    assert summary["attack_strength"] == pytest.approx(sum(r["attack"]["scale"] for r in rows) / 2)


def test_strength_optimal_is_refused_for_an_attack_without_a_searchable_strength() -> None:
    scenario = parse_scenario(
        {
            **BASE,
            "rounds": 1,
            "attack": {"name": "backdoor", "fraction": 0.2, "params": {"strength": "optimal"}},
        }
    )
    with pytest.raises(ScenarioError, match="attack.params.*strength: optimal needs"):
        preflight(scenario)
