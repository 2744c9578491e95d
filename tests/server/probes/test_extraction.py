"""The extraction probe inside runs: figures on its rounds, seeded, the curve, bad settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.cli import main
from fedsim.federation import federation_for
from fedsim.run.runtimes.inline import InlineGrid
from server.app import run_server
from server.parts import ServerParts
from server.probes import RoundView
from server.probes.extraction import ExtractionProbe
from server.probes.held_out import held_out_split
from tests.conftest import TINY, RecordingObserver, make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

SMALL = {"queries": 200, "train": {"epochs": 3}}


def _without_cost(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


def test_extraction_figures_on_its_rounds_seeded_and_in_the_summary() -> None:
    scenario = make_scenario(rounds=2, extraction=SMALL)
    rows, summary = run_scenario_in_memory(scenario)
    assert "extraction_fidelity" not in rows[0]  # default: the last round only
    last = rows[1]
    assert last["extraction_queries"] == 200
    assert 0.0 <= last["extraction_accuracy"] <= 1.0
    # a surrogate trained on 200 answers agrees with the victim far above chance (0.1)
    assert last["extraction_fidelity"] > 0.3
    assert last["extraction_cost_s"] > 0
    assert summary["final_extraction_fidelity"] == last["extraction_fidelity"]
    assert summary["final_extraction_accuracy"] == last["extraction_accuracy"]
    (probe,) = summary["probes"]
    assert (probe["direction"], probe["threat_model"], probe["rounds"]) == (
        "model→model",
        "query",
        [2],
    )
    again, _ = run_scenario_in_memory(scenario)
    assert _without_cost(again) == _without_cost(rows)


def test_curve_is_written_and_contains_the_configured_budget(tmp_path: Path) -> None:
    scenario = make_scenario(
        rounds=1, extraction={**SMALL, "budgets": [50, 100], "answers": "top1"}
    )
    observer = RecordingObserver()
    observer.run_dir = tmp_path  # type: ignore[attr-defined]
    grid = InlineGrid(make_client_app(scenario), scenario.data.num_clients, scenario.seed)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    summary = run_server(grid, scenario, observer)
    row = observer.rounds[0]
    assert [p["queries"] for p in row["extraction_curve"]] == [50, 100, 200]
    assert row["extraction_queries"] == 200  # one transfer set for the whole curve
    assert row["extraction_curve"][-1]["fidelity"] == row["extraction_fidelity"]
    saved = json.loads((tmp_path / "extraction" / "round001_curve.json").read_text())
    assert saved["points"] == row["extraction_curve"] == summary["extraction_curve"]
    assert (tmp_path / "extraction" / "round001_curve.png").stat().st_size > 0


@pytest.mark.parametrize(
    "changes",
    [
        {"data": "noise"},
        {"data": "permuted", "attack": "copycat"},
        {"answers": "rounded", "decimals": 1, "surrogate": {"name": "mlp", "params": {}}},
    ],
)
def test_query_pools_attacks_and_answers(changes: dict[str, Any]) -> None:
    scenario = make_scenario(rounds=1, extraction={**SMALL, **changes})
    fed = federation_for(scenario)
    probe = ServerParts.build(fed).probes.find("extraction")
    assert isinstance(probe, ExtractionProbe)
    weights = fed.initial_weights()
    figures = probe.observe(RoundView(1, weights, weights, []))
    assert figures["extraction_queries"] == 200
    assert 0.0 <= figures["extraction_fidelity"] <= 1.0


def test_thief_split_is_seeded_and_nested() -> None:
    fed = federation_for(make_scenario(rounds=1))
    data, seed = ServerParts.build(fed).data, fed.scenario.seed
    half = held_out_split(data, seed, 0.5, "extraction.public_fraction")
    n = len(fed.data.dataset.y_test)
    assert len(half.public_y) == round(n / 2) and len(half.eval_y) == n - round(n / 2)
    again = held_out_split(data, seed, 0.5, "extraction.public_fraction")
    assert torch.equal(again.public_x, half.public_x)
    # a smaller share is a subset of the larger one (one permutation per run)
    quarter = held_out_split(data, seed, 0.25, "watermark.removal.public_fraction")
    rows = {tuple(x.flatten().tolist()) for x in half.public_x}
    assert all(tuple(x.flatten().tolist()) in rows for x in quarter.public_x)


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"answers": "logits"}, "extraction.answers"),
        ({"attack": "jbda"}, "extraction.attack"),
        ({"queries": 0}, "extraction.queries"),
        ({"rounds": [3]}, "extraction.rounds"),
        ({"budgets": [0, 10]}, "extraction.budgets"),
        ({"surrogate": {"name": "nope"}}, "extraction.surrogate.name"),
        ({"surrogate": {"name": "mlp", "params": {"bogus": 1}}}, "extraction.surrogate.params"),
        ({"public_fraction": 0.9999}, "extraction.public_fraction"),
        ({"train": {"lr": -1}}, "extraction.train.lr"),
        ({"shift": 0, "queries": 1000}, "extraction.shift"),
    ],
)
def test_bad_settings_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: dict, key: str
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({**TINY, "extraction": block}))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"fedsim: error: {key}:" in err and len(err.strip().splitlines()) == 1
