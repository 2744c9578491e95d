"""Multi-task federations (``data.tasks``) in real rounds (inline runtime)."""

from __future__ import annotations

import pytest

from fedsim.errors import ScenarioError
from fedsim.run.runner import preflight
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory


def tasks_scenario(assignment: str, **changes: object):  # noqa: ANN201
    return make_scenario(
        rounds=3,
        **{
            "data.tasks": ["digit", "parity"],
            "data.task_assignment": assignment,
            "data.num_clients": 6,
            "clients.per_round": 6,
        },
        **changes,
    )


def test_digit_and_parity_both_learn_and_accuracy_is_the_first_tasks() -> None:
    # seeds 0-4, 3 rounds: parity 0.82-0.93, digit 0.79-0.87, parity - digit +0.02..+0.09
    scenario = tasks_scenario("all")
    preflight(scenario)
    rows, summary = run_scenario_in_memory(scenario)
    final = summary["final_task_accuracy"]
    assert set(final) == {"digit", "parity"}
    assert final["parity"] > 0.7 and final["digit"] > 0.6
    assert final["parity"] >= final["digit"]  # the easier task (2 classes, same features)
    assert all(r["accuracy"] == r["task_accuracy"]["digit"] for r in rows)
    assert summary["final_accuracy"] == final["digit"]


def test_round_robin_clients_train_their_task_and_heads_average_over_holders() -> None:
    # seeds 0-4: parity 0.84-0.90, digit 0.73-0.88
    rows, summary = run_scenario_in_memory(tasks_scenario("round_robin"))
    assert summary["final_task_accuracy"]["parity"] > 0.7
    assert summary["final_task_accuracy"]["digit"] > 0.6


def test_single_task_runs_have_no_task_figures() -> None:
    rows, summary = run_scenario_in_memory(make_scenario(rounds=1))
    assert "task_accuracy" not in rows[0] and "final_task_accuracy" not in summary


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"data.tasks": ["parity", "digit"]}, "data.tasks"),
        ({"data.tasks": ["digit", "animal"]}, "data.tasks"),
        ({"data.tasks": ["digit", "parity"], "runtime": "vectorized"}, "runtime"),
        (
            {
                "data.tasks": ["digit", "parity"],
                "data.task_assignment": "round_robin",
                "privacy": {"central_dp": {"noise_multiplier": 0.1}},
            },
            "data.task_assignment",
        ),
    ],
)
def test_preflight_refuses(changes: dict, key: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        preflight(make_scenario(**changes))
    assert caught.value.path == key
