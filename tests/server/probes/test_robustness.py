"""The robustness probe in runs: figures per evaluated round, summary, seeding, errors, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.evasion import BPDAEOT, OnClassifier, Purified, model_in_pixel_space, robust_accuracy
from fedsim.evasion import PGD as PGD_ATTACK
from fedsim.federation import federation_for
from fedsim.purification import Identity
from fedsim.run.runner import preflight
from fedsim.training import TrainSettings, train_local
from server.parts import ServerParts
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

ATTACKS = [
    {"name": "fgsm", "eps": 0.1},
    {"name": "pgd", "norm": "linf", "eps": 0.1, "steps": 5},
]
ROBUSTNESS = {"samples": 48, "rounds": [2], "attacks": ATTACKS}


def test_run_reports_robust_accuracy_in_the_evaluated_round_and_the_report_shows_it(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    scenario = make_scenario(rounds=2, robustness=ROBUSTNESS)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "robust_accuracy" not in rows[0]
    figures = rows[1]["robust_accuracy"]
    assert set(figures) == {"fgsm-0.1", "pgd-linf-0.1", "worst_case"}
    clean = rows[1]["robustness_clean_accuracy"]
    assert all(figures["worst_case"] <= v <= clean for v in figures.values())
    assert figures["worst_case"] < clean  # an attack at eps 0.1 fools a 2-round model
    for key in ("ece", "ece_adversarial", "robustness_s"):
        assert rows[1][key] >= 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_robust_accuracy"] == figures["worst_case"]
    assert summary["final_ece"] == rows[1]["ece"]
    (probe,) = summary["probes"]
    assert (probe["name"], probe["direction"], probe["threat_model"]) == (
        "robustness",
        "data→model",
        "global_model",
    )
    assert (run_dir / "robustness" / "round002_reliability.png").stat().st_size > 0
    bins = json.loads((run_dir / "robustness" / "round002_reliability.json").read_text())
    clean, adversarial = bins["clean"], bins["adversarial (worst attack per sample)"]
    assert clean["ece"] == pytest.approx(rows[1]["ece"])
    assert adversarial["ece"] == pytest.approx(rows[1]["ece_adversarial"])
    assert sum(clean["count"]) == sum(adversarial["count"]) == ROBUSTNESS["samples"]

    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    data_model = (run_dir / "report.md").read_text().split("## model→data")[0]
    assert "### Probe: robustness" in data_model
    assert "robust_accuracy.worst_case" in data_model and "| ece |" in data_model
    assert "robustness/round002_reliability.png" in data_model


def test_same_seed_same_figures_and_rounds_default_to_the_last() -> None:
    block = {
        "samples": 32,
        "attacks": ATTACKS,
        "transfer": {"epochs": 1, "public_samples": 64},
        "client_spread": 8,
    }
    scenario = make_scenario(rounds=2, robustness=block)
    first, summary = run_scenario_in_memory(scenario)
    second, _ = run_scenario_in_memory(scenario)
    assert "robust_accuracy" not in first[0]
    keys = ("robust_accuracy", "ece", "ece_adversarial", "transfer_success_rate")
    assert (
        summary["final_robust_accuracy_mifgsm-linf-0.1-transfer"]
        == (first[1]["robust_accuracy"]["mifgsm-linf-0.1-transfer"])
    )
    assert [first[1][k] for k in keys] == [second[1][k] for k in keys]
    assert "mifgsm-linf-0.1-transfer" in first[1]["robust_accuracy"]
    assert 0.0 <= first[1]["transfer_success_rate"] <= 1.0
    assert summary["final_robust_accuracy"] == first[1]["robust_accuracy"]["worst_case"]
    spread = first[1]["robust_accuracy_clients"]
    assert spread == second[1]["robust_accuracy_clients"]
    assert 0.0 <= spread["min"] <= spread["median"] <= spread["max"] <= 1.0


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"attacks": [{"name": "pgd", "eps": -0.1}]}, "robustness.attacks.0"),
        ({"attacks": [{"name": "fgsm", "eps": 0.1}, {"name": "cw"}]}, "robustness.attacks.1"),
        ({"attacks": [{"name": "fgsm", "eps": 0.1}] * 2}, "robustness.attacks"),
        ({"rounds": [3]}, "robustness.rounds"),
        ({"samples": 0}, "robustness.samples"),
        ({"transfer": {"surrogates": ["nope"]}}, "robustness.transfer.surrogates.0"),
        ({"transfer": {"data": "client", "client": 9}}, "robustness.transfer.client"),
    ],
)
def test_bad_robustness_settings_fail_preflight(block: dict, path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(rounds=2, robustness=block))
    assert info.value.path == path


def test_bad_settings_exit_2_naming_the_key(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    raw = make_scenario(rounds=1).model_dump(mode="json")
    raw["robustness"] = {"attacks": [{"name": "pgd", "eps": 0.1, "steps": 0}]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "robustness.attacks.0" in capsys.readouterr().err


def test_the_probe_draws_from_the_servers_held_out_set_without_fltrusts_root() -> None:
    scenario = make_scenario(
        rounds=1, robustness={"samples": 1000}, defense={"aggregator": "fltrust"}
    )
    fed = federation_for(scenario)
    parts = ServerParts.build(fed)
    x, y = parts.data.held_out
    assert parts.data.root is not None and len(y) + len(parts.data.root[1]) == len(
        fed.data.dataset.y_test
    )
    (probe,) = parts.probes.probes
    assert len(probe.y) == len(y)  # at most the held-out set


PGD = {"name": "pgd", "norm": "linf", "eps": 0.1, "steps": 5}
PURIFIED = {
    "samples": 48,
    "purifier": {"name": "bit_depth", "params": {"bits": 2}},
    "attacks": [PGD, {**PGD, "adaptive": "bpda_eot", "eot": 1}],
    "save_plots": False,
}


def test_a_purifier_reports_non_adaptive_and_adaptive_side_by_side() -> None:
    scenario = make_scenario(rounds=2, robustness=PURIFIED)
    rows, summary = run_scenario_in_memory(scenario)
    again, _ = run_scenario_in_memory(scenario)
    figures = rows[1]["robust_accuracy"]
    assert set(figures) == {"pgd-linf-0.1", "pgd_bpda_eot-linf-0.1", "worst_case"}
    purified_clean = rows[1]["purifier_clean_accuracy"]
    assert 0.0 < purified_clean <= 1.0 and 0.0 < rows[1]["robustness_clean_accuracy"] <= 1.0
    assert all(figures["worst_case"] <= v <= purified_clean for v in figures.values())
    # the adaptive attack is never weaker than the non-adaptive one
    assert figures["pgd_bpda_eot-linf-0.1"] <= figures["pgd-linf-0.1"]
    assert summary["final_purifier_clean_accuracy"] == purified_clean
    assert summary["final_robust_accuracy"] == figures["worst_case"]
    keys = ("robust_accuracy", "purifier_clean_accuracy", "robustness_clean_accuracy")
    assert [rows[1][k] for k in keys] == [again[1][k] for k in keys]


def test_without_a_purifier_the_figures_are_unchanged_and_there_is_no_purifier_figure() -> None:
    rows, _ = run_scenario_in_memory(
        make_scenario(rounds=1, robustness={"samples": 16, "attacks": [PGD], "save_plots": False})
    )
    assert "purifier_clean_accuracy" not in rows[0] and "certified_accuracy" not in rows[0]


def test_bpda_eot_through_the_identity_purifier_is_plain_pgd() -> None:
    scenario = make_scenario(rounds=1, robustness={"samples": 48, "save_plots": False})
    fed = federation_for(scenario)
    (probe,) = ServerParts.build(fed).probes.probes
    dataset = fed.data.dataset
    model = fed.model("robustness")
    x, y = fed.data.client(0)
    train_local(model, x, y, TrainSettings(2, 16, 0.05, 0.9), torch.Generator().manual_seed(0))
    pixel = model_in_pixel_space(model, dataset.mean, dataset.std)
    settings = {"eps": 0.1, "steps": 5}
    plain = robust_accuracy(
        pixel, probe.x, probe.y, [PGD_ATTACK(**settings)], torch.Generator().manual_seed(3)
    )
    through = robust_accuracy(
        Purified(pixel, Identity()),
        probe.x,
        probe.y,
        [OnClassifier(BPDAEOT(Identity(), eot=1, **settings))],
        torch.Generator().manual_seed(3),
    )
    assert plain.clean > 0.5
    assert through.worst_case == plain.worst_case
    assert torch.equal(through.robust, plain.robust)


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"purifier": {"name": "bit_depth", "params": {"bits": 0}}}, "robustness.purifier.params"),
        ({"purifier": {"name": "jpeg"}}, "robustness.purifier.name"),
        ({"attacks": [{**PGD, "adaptive": "bpda_eot"}]}, "robustness.attacks"),
        ({"certify": {"n0": 0}}, "robustness.certify.n0"),
    ],
)
def test_bad_purifier_settings_name_the_key(block: dict, path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        make_scenario(rounds=1, robustness=block)
    assert info.value.path == path
