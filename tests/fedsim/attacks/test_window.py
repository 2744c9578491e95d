"""Attack windows end to end (inline runtime, digits): honest outside, lifespan after."""

from __future__ import annotations

from typing import Any

import pytest

from fedsim.errors import ScenarioError
from fedsim.scenario import parse_scenario
from tests.fedsim.attacks.test_e2e import BASE
from tests.fedsim.run.test_runner import run_scenario_in_memory


def _run(rounds: int, **attack: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    return run_scenario_in_memory(parse_scenario({**BASE, "rounds": rounds, "attack": attack}))


def test_before_the_window_malicious_clients_are_honest() -> None:
    clean, _ = _run(3)
    local, _ = _run(3, name="sign_flip", fraction=0.4, start_round=3)
    colluding, _ = _run(3, name="ipm", fraction=0.4, start_round=3, stop_round=3)
    for rows in (local, colluding):
        assert [r["accuracy"] for r in rows[:2]] == [r["accuracy"] for r in clean[:2]]
        assert rows[2]["accuracy"] != clean[2]["accuracy"]
    assert "attack" not in colluding[1] and colluding[2]["attack"]["epsilon"] == 0.1
    assert [r["attack_active"] for r in colluding] == [False, False, True]


def test_a_backdoor_stopped_at_round_4_has_a_finite_reported_lifespan() -> None:
    stop = 4
    rows, summary = _run(
        8,
        name="backdoor",
        fraction=0.2,
        stop_round=stop,
        params={"boost": 2, "poison_fraction": 0.5},
    )
    asr = {r["round"]: r["asr"] for r in rows}
    # The backdoor took while poisoning and fades once it stops: the mean ASR of rounds 1-4
    # against that of rounds 5-8 (one round's ASR swings: asr[4] measured 0.71 0.86 0.42 0.36
    # 0.39 at seeds 0-4, 0.41 and 0.20 with every seed shifted by 1000·k, k = 1, 2). Measured
    # means, seeds 0-4, poisoning / after: 0.87 / 0.02, 0.91 / 0.14, 0.75 / 0.02, 0.65 / 0.01,
    # 0.66 / 0.08; the gap 0.58-0.85 (mean 0.71, s.d. 0.11): 0.3 is 3.8 s.d. below
    during = sum(asr[r] for r in range(1, stop + 1)) / stop
    after = sum(asr[r] for r in range(stop + 1, len(rows) + 1)) / (len(rows) - stop)
    assert during >= after + 0.3
    first_below = min(r for r in asr if r > stop and asr[r] < 0.5)
    assert summary["backdoor_lifespan"] == first_below - stop
    assert 1 <= summary["backdoor_lifespan"] <= 8 - stop


def test_lifespan_is_absent_while_the_attack_never_stops() -> None:
    _, summary = _run(2, name="backdoor", fraction=0.2, params={"poison_fraction": 0.5})
    assert "final_asr" in summary and "backdoor_lifespan" not in summary


@pytest.mark.parametrize(
    "attack, key",
    [
        ({"start_round": 4, "stop_round": 2}, "attack.stop_round"),
        ({"stop_round": 9}, "attack.stop_round"),
        ({"start_round": 9}, "attack.start_round"),
        ({"start_round": 0}, "attack.start_round"),
    ],
)
def test_the_window_is_validated(attack: dict[str, Any], key: str) -> None:
    raw = {**BASE, "rounds": 5, "attack": {"name": "ipm", "fraction": 0.2, **attack}}
    with pytest.raises(ScenarioError) as error:
        parse_scenario(raw)
    assert error.value.path == key
