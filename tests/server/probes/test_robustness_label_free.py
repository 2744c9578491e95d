"""The robustness probe's label-free attackers (generative, task_agnostic, noise) in runs."""

from __future__ import annotations

import pytest
import torch

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.params import flat_params
from fedsim.run.runner import preflight
from server.parts import ServerParts
from server.probes.base import RoundView
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

FAST = {"epochs": 2}
ATTACKS = [
    {"name": "noise", "eps": 0.1},
    {"name": "pgd", "eps": 0.1, "steps": 3},
    {"name": "task_agnostic", "eps": 0.1, "steps": 3, **FAST},
    {"name": "generative", "eps": 0.1, "agents": 2, **FAST},
]
BLOCK = {
    "samples": 40,
    "attacks": ATTACKS,
    "transfer": {"epochs": 1, "public_samples": 64, "surrogates": ["mlp", "mlp"]},
    "save_plots": False,
}


def test_multi_task_runs_report_robust_accuracy_per_task_and_every_attacks_success() -> None:
    scenario = make_scenario(rounds=1, robustness=BLOCK, **{"data.tasks": ["digit", "parity"]})
    rows, summary = run_scenario_in_memory(scenario)
    again, _ = run_scenario_in_memory(scenario)
    (row,) = rows
    per_task = row["robust_accuracy"]
    labels = {
        "noise-linf-0.1",
        "pgd-linf-0.1",
        "task_agnostic-linf-0.1",
        "generative-linf-0.1-2agents",
        "worst_case",
    }
    assert set(per_task) == {"digit", "parity"}
    assert set(per_task["digit"]) == labels | {"mifgsm-linf-0.1-transfer"}  # surrogates: digits
    assert set(per_task["parity"]) == labels
    for figures in per_task.values():
        assert all(figures["worst_case"] <= v <= 1.0 for v in figures.values())
    assert per_task == again[0]["robust_accuracy"]  # seeded, fits included
    success = row["attack_success_rate"]
    assert set(success) == labels - {"worst_case"} | {"mifgsm-linf-0.1-transfer"}
    assert success["mifgsm-linf-0.1-transfer"] == row["transfer_success_rate"]
    clean = row["robustness_clean_accuracy"]
    assert success["noise-linf-0.1"] == pytest.approx(
        (clean - per_task["digit"]["noise-linf-0.1"]) / clean
    )
    assert summary["final_robust_accuracy"] == per_task["digit"]["worst_case"]
    assert summary["final_robust_accuracy_per_task"] == per_task
    assert (
        summary["final_robust_accuracy_task_agnostic-linf-0.1"]
        == (per_task["digit"]["task_agnostic-linf-0.1"])
    )


def test_outsider_agents_are_the_transfer_surrogates_and_client_agents_its_own_models() -> None:
    attacks = [
        {"name": "generative", "eps": 0.1, "agents": 3, **FAST},
        {"name": "generative", "eps": 0.1, "agents": 2, "threat_model": "client", **FAST},
    ]
    scenario = make_scenario(rounds=1, robustness={**BLOCK, "attacks": attacks})
    fed = federation_for(scenario)
    (probe,) = ServerParts.build(fed).probes.probes
    before = fed.initial_weights()
    view = RoundView(1, before, before + 0.01, [])
    figures = probe.observe(view)
    assert set(figures["robust_accuracy"]) == {
        "generative-linf-0.1-3agents",
        "generative-linf-0.1-2agents-client",
        "mifgsm-linf-0.1-transfer",
        "worst_case",
    }
    # one cache: MI-FGSM's two surrogates are the generator's first two agents
    assert len(probe.attackers.surrogates) == 3
    ensemble = probe.attackers.transfer._surrogate.members
    assert all(a is b for a, b in zip(ensemble, probe.attackers.surrogates[:2], strict=True))
    # the client's agent 0 is the global model it received (not the target), agent 1 its
    # local model trained from it
    agents = probe.attackers.client_agents(view, 2, torch.device("cpu"))
    assert torch.equal(flat_params(agents[0]).double(), before.double())
    assert not torch.equal(flat_params(agents[1]), flat_params(agents[0]))


def test_an_outsider_without_public_data_is_refused() -> None:
    block = {"samples": 10_000, "attacks": [{"name": "task_agnostic", "eps": 0.1}]}
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(rounds=1, robustness=block))
    assert info.value.path == "robustness.samples"
