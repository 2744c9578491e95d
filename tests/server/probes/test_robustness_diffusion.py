"""The diffusion purifier and denoiser in runs: server-side training, adaptive attacks, certify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.purification import DiffusionPurifier
from fedsim.run.runner import preflight
from server.parts import ServerParts
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

PGD = {"name": "pgd", "norm": "linf", "eps": 0.1, "steps": 2}
TINY_DIFFUSION = {"train_steps": 10, "width": 8, "sampler": "ode", "steps": 2}
ROBUSTNESS = {
    "samples": 12,
    "purifier": {"name": "diffusion", "params": TINY_DIFFUSION},
    "attacks": [
        PGD,
        {**PGD, "adaptive": "bpda_eot", "eot": 1},
        {**PGD, "adaptive": "full_eot", "eot": 1},
    ],
    "certify": {
        "sigma": 0.5,
        "n0": 5,
        "n": 20,
        "alpha": 0.01,
        "samples": 6,
        "denoiser": "diffusion",
    },
    "save_plots": False,
}


def test_a_diffusion_run_trains_once_and_reports_every_attack_and_the_certificate(
    tmp_path: Path,
) -> None:
    scenario = make_scenario(rounds=2, robustness={**ROBUSTNESS, "rounds": [1, 2]})
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["purifier_s"] > 0 and "purifier_s" not in rows[1]  # trained once
    figures = rows[1]["robust_accuracy"]
    assert set(figures) == {
        "pgd-linf-0.1",
        "pgd_bpda_eot-linf-0.1",
        "pgd_full_eot-linf-0.1",
        "worst_case",
    }
    clean = rows[1]["purifier_clean_accuracy"]
    assert all(figures["worst_case"] <= v <= clean for v in figures.values())
    records = json.loads((run_dir / "robustness" / "certify_round2.json").read_text())
    assert len(records) == 6 and all(row["n"] == 20 for row in records)
    assert set(rows[1]["certified_accuracy"]) == {"r0.25", "r0.5", "r1"}


def test_the_server_trains_on_its_public_pool_only_and_the_same_seed_repeats() -> None:
    scenario = make_scenario(rounds=1, robustness=ROBUSTNESS)
    fed = federation_for(scenario)
    (probe,) = ServerParts.build(fed).probes.probes
    assert isinstance(probe.diffusion, DiffusionPurifier)
    assert probe.certification is not None
    held = len(probe.held_out[1])
    assert len(probe.diffusion_pool) == held - 12  # neither the attacked nor the certified
    evaluated = {tuple(v.flatten().tolist()) for v in torch.cat([probe.x, probe.certification.x])}
    assert not evaluated & {tuple(v.flatten().tolist()) for v in probe.diffusion_pool}
    first, _ = run_scenario_in_memory(scenario)
    second, _ = run_scenario_in_memory(scenario)
    keys = ("robust_accuracy", "purifier_clean_accuracy", "certified_accuracy")
    assert [first[0][k] for k in keys] == [second[0][k] for k in keys]


def test_a_denoiser_alone_trains_a_default_diffusion_model() -> None:
    block = {"samples": 8, "attacks": [PGD], "certify": ROBUSTNESS["certify"]}
    fed = federation_for(make_scenario(rounds=1, robustness=block))
    (probe,) = ServerParts.build(fed).probes.probes
    assert not probe.purified and isinstance(probe.diffusion, DiffusionPurifier)


@pytest.mark.parametrize(
    ("block", "path", "words"),
    [
        ({"samples": 5000}, "robustness.samples", "public pool"),
        (
            {"purifier": {"name": "bit_depth"}, "attacks": [{**PGD, "adaptive": "full_eot"}]},
            "robustness.attacks",
            "differentiable",
        ),
        (
            {"purifier": {"name": "diffusion", "params": {"t_star": 0}}},
            "robustness.purifier.params",
            "t_star",
        ),
    ],
)
def test_bad_diffusion_settings_name_the_key(block: dict, path: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(rounds=1, robustness={**ROBUSTNESS, **block}))
    assert info.value.path == path and words in str(info.value)


def test_a_federated_purifier_is_trained_by_fedavg_over_every_clients_partition(
    monkeypatch,
) -> None:
    params = {**TINY_DIFFUSION, "training": "federated", "fed_rounds": 2, "local_steps": 1}
    block = {"samples": 12, "purifier": {"name": "diffusion", "params": params}}
    block |= {"attacks": [PGD, {**PGD, "adaptive": "bpda_eot", "eot": 1}], "save_plots": False}
    scenario = make_scenario(rounds=1, robustness=block, **{"data.partition": "dirichlet"})
    calls: list[list[torch.Tensor]] = []
    real = DiffusionPurifier.fit_federated

    def spy(self, clients, generator, client_generators):
        calls.append(clients)
        return real(self, clients, generator, client_generators)

    monkeypatch.setattr(DiffusionPurifier, "fit_federated", spy)
    rows, _ = run_scenario_in_memory(scenario)
    fed = federation_for(scenario)
    (clients,) = calls
    assert len(clients) == scenario.data.num_clients
    sizes = [len(fed.data.client(k)[1]) for k in range(scenario.data.num_clients)]
    assert [len(c) for c in clients] == sizes and len(set(sizes)) > 1  # non-IID shares
    assert rows[0]["purifier_s"] > 0
    labels = {"pgd-linf-0.1", "pgd_bpda_eot-linf-0.1", "worst_case"}
    assert set(rows[0]["robust_accuracy"]) == labels
