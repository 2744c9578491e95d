"""The robustness probe with the query-only Square attack: through the purifier, queries."""

from __future__ import annotations

import math

import pytest

from fedsim.errors import ScenarioError
from fedsim.evasion import OnClassifier, Square
from fedsim.federation import federation_for
from server.parts import ServerParts
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

SQUARE = {"name": "square", "eps": 0.1, "queries": 40}
PGD = {"name": "pgd", "eps": 0.1, "steps": 5}
BLOCK = {
    "samples": 32,
    "purifier": {"name": "bit_depth", "params": {"bits": 2}},
    "attacks": [PGD, SQUARE],
    "save_plots": False,
}


def test_square_queries_the_purified_model_and_pgd_crafts_on_the_classifier() -> None:
    fed = federation_for(make_scenario(rounds=1, robustness=BLOCK))
    (probe,) = ServerParts.build(fed).probes.probes
    pgd, square = probe.attacks
    assert isinstance(pgd, OnClassifier)
    assert isinstance(square, Square)  # not wrapped: it attacks f(P(x)) as a black box


def test_a_run_reports_square_accuracy_and_its_queries() -> None:
    rows, summary = run_scenario_in_memory(make_scenario(rounds=1, robustness=BLOCK))
    figures = rows[0]["robust_accuracy"]
    assert set(figures) == {"pgd-linf-0.1", "square-linf-0.1", "worst_case"}
    assert figures["worst_case"] <= min(figures["pgd-linf-0.1"], figures["square-linf-0.1"])
    queries = rows[0]["evasion_queries"]["square-linf-0.1"]
    assert math.isfinite(queries) and 1.0 <= queries <= 40.0
    assert summary["final_robust_accuracy_square-linf-0.1"] == figures["square-linf-0.1"]


@pytest.mark.parametrize(
    ("attack", "match"),
    [
        ({"name": "square", "eps": 0.1, "queries": 0}, "queries"),
        ({"name": "square", "eps": 0.1, "norm": "l2"}, "linf"),
        ({"name": "square", "eps": 0.1, "adaptive": "bpda_eot"}, "needs name: pgd"),
    ],
)
def test_bad_square_settings_name_the_key(attack: dict, match: str) -> None:
    with pytest.raises(ScenarioError, match=r"robustness\.attacks\.1") as info:
        make_scenario(robustness={**BLOCK, "attacks": [PGD, attack]})
    assert match in str(info.value)
