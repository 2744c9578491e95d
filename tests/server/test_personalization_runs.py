"""Personalized FL (``clients.personalization``) in real rounds (inline runtime)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.models.multitask import head_mask
from fedsim.run.runner import preflight
from fedsim.run.runtimes.inline import InlineGrid
from server.app import run_server
from tests.conftest import RecordingObserver, make_scenario

NON_IID = {
    "data.partition": "shards",
    "data.shards_per_client": 2,
    "data.num_clients": 8,
    "clients.per_round": 8,
}


class ModelObserver(RecordingObserver):
    def __init__(self) -> None:
        super().__init__()
        self.models: list[torch.Tensor] = []

    def on_model(self, server_round: int, weights: torch.Tensor) -> None:
        self.models.append(weights.clone())


def run(scenario: Any) -> tuple[list[dict], dict, list[torch.Tensor]]:
    observer = ModelObserver()
    grid = InlineGrid(make_client_app(scenario), scenario.data.num_clients, scenario.seed)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    summary = run_server(grid, scenario, observer)
    return observer.rounds, summary, observer.models


@pytest.mark.parametrize("method", ["fedper", "fedrep"])
def test_heads_never_reach_the_server(method: str) -> None:
    # a Gaussian attacker adds noise to every coordinate it sends, the head's too
    scenario = make_scenario(
        rounds=2,
        **NON_IID,
        **{"clients.personalization": {"method": method}},
        attack={"name": "gaussian", "count": 2},
    )
    preflight(scenario)
    rows, summary, models = run(scenario)
    fed = federation_for(scenario)
    head, initial = head_mask(fed.model("server")), fed.initial_weights()
    for weights in models:
        assert torch.equal(weights[head], initial[head])  # the server holds no trained head
        assert not torch.equal(weights[~head], initial[~head])  # the body is shared
    assert 0.0 <= summary["final_personalized_accuracy"] <= 1.0


def test_ditto_global_model_is_fedavgs_and_personal_beats_it_on_shards() -> None:
    # seeds 0-3, 3 rounds, 8 clients with 2 classes each: personal 0.85-0.91, global 0.23-0.51
    weak = make_scenario(rounds=3, **NON_IID, **{"clients.personalization": {"method": "ditto"}})
    strong = make_scenario(
        rounds=3, **NON_IID, **{"clients.personalization": {"method": "ditto", "lam": 10.0}}
    )
    rows, summary, models = run(weak)
    rows_strong, _, models_strong = run(strong)
    # the global model does not depend on λ: every client's FedAvg step is the same
    assert all(torch.equal(a, b) for a, b in zip(models, models_strong, strict=True))
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in rows_strong]
    assert summary["final_personalized_accuracy"] > 0.75
    assert summary["final_personalized_accuracy"] > summary["final_accuracy"] + 0.25
    # the same global model on the clients' own test splits: personal models beat it there too
    assert summary["final_personalized_accuracy"] > summary["final_global_local_accuracy"] + 0.25


def test_fedrep_with_tasks_reports_personal_and_task_accuracy() -> None:
    scenario = make_scenario(
        rounds=2,
        **NON_IID,
        **{
            "clients.personalization": {"method": "fedrep"},
            "data.tasks": ["digit", "parity"],
            "data.task_assignment": "round_robin",  # each personal figure over its holders
        },
    )
    preflight(scenario)
    rows, summary, _ = run(scenario)
    assert set(summary["final_task_accuracy"]) == {"digit", "parity"}
    personal = summary["final_personalized_task_accuracy"]
    assert personal["digit"] == summary["final_personalized_accuracy"] > 0.5
    assert personal["parity"] > 0.5
    assert "final_global_local_accuracy" not in summary  # FedRep's global head is untrained


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"runtime": "vectorized"}, "runtime"),
        ({"privacy": {"local_dp": {"noise_multiplier": 1.0}}}, "privacy.local_dp"),
    ],
)
def test_preflight_refuses(changes: dict, key: str) -> None:
    scenario = make_scenario(**{"clients.personalization": {"method": "ditto"}}, **changes)
    with pytest.raises(ScenarioError) as caught:
        preflight(scenario)
    assert caught.value.path == key
