"""The crfl probe in runs: its records, certified accuracy by radius and by attackers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from fedsim.certify import certified_accuracy
from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from server.parts import ServerParts
from server.probes import RoundView
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

CERTIFY = {"models": 30, "alpha": 0.01, "samples": 20, "radii": [0.0, 0.01, 0.03]}
BACKDOOR = {"name": "backdoor", "fraction": 0.2, "params": {"target": 0}, "stop_round": 1}


def _defense(**certify) -> dict:
    return {"aggregator": "fedavg", "crfl": {"rho": 20.0, "sigma": 0.01, **certify}}


def test_a_crfl_run_writes_records_and_reports_certified_accuracy(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    scenario = make_scenario(rounds=2, defense=_defense(certify=CERTIFY), attack=BACKDOOR)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "crfl_certified_accuracy" not in rows[0]  # default: the last round only
    records = json.loads((run_dir / "crfl" / "crfl_certify_round2.json").read_text())
    assert len(records) == CERTIFY["samples"]
    assert all(set(r) == {"label", "prediction", "count", "n", "radius"} for r in records)
    assert all(r["n"] == CERTIFY["models"] for r in records)
    figure = rows[1]["crfl_certified_accuracy"]
    assert figure == certified_accuracy(records, CERTIFY["radii"])
    assert figure["r0"] >= figure["r0.01"] >= figure["r0.03"]
    assert figure["r0"] > 0.5  # the smoothed model classifies most samples correctly
    by_attackers = rows[1]["crfl_certified_accuracy_attackers"]
    assert list(by_attackers) == ["R1", "R2", "R3", "R4"]
    assert rows[1]["crfl_attackers"] == 1  # one malicious client of 5
    assert by_attackers["R1"] == figure
    for fewer, more in zip(by_attackers.values(), list(by_attackers.values())[1:], strict=False):
        assert all(more[k] <= fewer[k] for k in fewer)
    # BadNets' 2×2 trigger at the maximum value: far beyond any certified radius here
    assert rows[1]["crfl_trigger_norm"] > max(r["radius"] for r in records)
    assert rows[1]["crfl_certified_accuracy_trigger"] == 0.0
    assert rows[1]["crfl_certify_s"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_crfl_certified_accuracy"] == figure
    assert summary["final_crfl_certified_accuracy_attackers"] == by_attackers
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()


def test_the_radius_uses_the_runs_constants() -> None:
    # TINY: 5 digits clients of ~287 examples, batch 32 → τ = 1 · ⌈287.4/32⌉ = 9; η = 0.05;
    # 5 per round → p = 0.2; backdoor q_B/n_B = 0.5, γ = 1; attack stopped after round 1, so a
    # certificate after round 3 contracts over rounds 2, 3 and the test-time clip: 3 ρ's.
    scenario = make_scenario(rounds=3, defense=_defense(certify=CERTIFY), attack=BACKDOOR)
    fed = federation_for(scenario)
    probe = ServerParts.build(fed).probes.find("crfl")
    setting = probe.setting(3, 2)
    assert math.ceil(float(fed.data.sizes().mean()) / 32) == 9
    assert (setting.local_iters, setting.lr, setting.scale) == (9.0, 0.05, 1.0)
    assert setting.poison_per_batch / setting.batch_size == 0.5
    assert list(setting.attacker_weights) == [0.2, 0.2]
    assert list(setting.rhos) == [20.0, 20.0, 20.0]
    assert (setting.sigma, setting.sigma_test) == (0.01, 0.01)
    assert probe.setting(1, 1).rhos == [20.0]  # attacked in the certified round itself


@pytest.mark.parametrize(
    "defense",
    [
        _defense(certify=None),  # turned off
        {"aggregator": "fedavg", "crfl": {"rho": 20.0, "sigma": 0.0}},  # nothing to certify
        {"aggregator": "fedavg"},
    ],
)
def test_no_probe_without_a_certificate(defense: dict) -> None:
    rows, summary = run_scenario_in_memory(make_scenario(rounds=1, defense=defense))
    assert not any(k.startswith("crfl") for k in rows[0])
    assert "final_crfl_certified_accuracy" not in summary


@pytest.mark.parametrize(
    ("certify", "path"),
    [
        ({"radii": [-0.1]}, "defense.crfl.certify.radii"),
        ({"attackers": [0]}, "defense.crfl.certify.attackers"),
        ({"models": 0}, "defense.crfl.certify.models"),
        ({"sigma_test": 0}, "defense.crfl.certify.sigma_test"),
    ],
)
def test_bad_settings_name_the_key(certify: dict, path: str) -> None:
    with pytest.raises(ScenarioError, match=path.replace(".", r"\.")):
        make_scenario(defense=_defense(certify=certify))


def test_a_non_finite_global_model_gives_no_figure() -> None:
    scenario = make_scenario(rounds=1, defense=_defense(certify=CERTIFY))
    probe = ServerParts.build(federation_for(scenario)).probes.find("crfl")
    size = sum(p.numel() for p in probe.fed.model("crfl").parameters())
    nan = torch.full((size,), float("nan"))
    assert probe.observe(RoundView(1, nan, nan, [])) == {}
