"""Client faults end to end: dropouts, crashes, stragglers with a round timeout."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from fedsim.faults import client_faults
from fedsim.results import read_metrics
from fedsim.run.runner import run_scenario
from tests.conftest import interrupt_in_round, make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

SIX = {"data.num_clients": 6, "clients.per_round": 6}


def check_bookkeeping(row: dict) -> None:
    """Every sampled client is exactly one of: replied, failed, dropped, timed out."""
    groups = [row["replied"], list(map(int, row["failed"])), row["dropped"], row["timed_out"]]
    flat = [c for group in groups for c in group]
    assert sorted(flat) == row["sampled"]
    assert row["counts"] == {
        "sampled": len(row["sampled"]),
        "dropped": len(row["dropped"]),
        "replied": len(row["replied"]),
        "failed": len(row["failed"]),
        "timed_out": len(row["timed_out"]),
        "rejected": len(row["rejected"]),
    }


def test_dropouts_are_seeded_and_the_server_aggregates_what_arrives() -> None:
    scenario = make_scenario(rounds=4, **SIX, **{"faults.dropout": 0.4})
    rows, _ = run_scenario_in_memory(scenario)
    for row in rows:
        check_bookkeeping(row)
        assert row["failed"] == {} and row["timed_out"] == []
        expected = [
            c for c in row["sampled"] if client_faults(scenario.faults, 0, row["round"], c).dropout
        ]
        assert row["dropped"] == expected
        assert math.isfinite(row["accuracy"])
    assert 0 < sum(len(r["dropped"]) for r in rows) < 24
    again, _ = run_scenario_in_memory(scenario)
    assert [r["dropped"] for r in again] == [r["dropped"] for r in rows]
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_everyone_dropping_out_skips_rounds_without_crashing() -> None:
    rows, summary = run_scenario_in_memory(make_scenario(rounds=2, **{"faults.dropout": 1.0}))
    assert [r["skipped"] for r in rows] == ["no valid update arrived"] * 2
    assert rows[0]["accuracy"] == rows[1]["accuracy"]  # the model did not move
    assert summary["rounds"] == 2


def test_crashing_clients_are_recorded_as_failed() -> None:
    rows, _ = run_scenario_in_memory(make_scenario(rounds=3, **SIX, **{"faults.crash": 0.3}))
    crashed = 0
    for row in rows:
        check_bookkeeping(row)
        crashed += len(row["failed"])
        assert all("injected crash" in reason for reason in row["failed"].values())
    assert crashed > 0


def test_stragglers_past_the_timeout_are_left_out() -> None:
    scenario = make_scenario(
        rounds=2,
        **SIX,
        **{"faults.straggler": 0.3, "faults.straggler_delay_s": 1.5, "clients.timeout_s": 1.0},
    )
    rows, _ = run_scenario_in_memory(scenario)
    slow = 0
    for row in rows:
        check_bookkeeping(row)
        expected = [
            c
            for c in row["sampled"]
            if client_faults(scenario.faults, 0, row["round"], c).straggler
        ]
        assert row["timed_out"] == expected
        slow += len(expected)
    assert slow > 0


def test_a_rule_whose_precondition_fails_after_dropouts_skips_the_round() -> None:
    # Krum with f = 1 needs n >= 2f + 3 = 5 updates; dropouts leave fewer in some rounds
    scenario = make_scenario(
        rounds=4,
        **SIX,
        **{"faults.dropout": 0.4, "defense.aggregator": "krum", "defense.params": {"f": 1}},
    )
    rows, _ = run_scenario_in_memory(scenario)
    short = [r for r in rows if len(r["replied"]) < 5]
    assert short, "the seed should give at least one round with fewer than 5 replies"
    for row in short:
        assert "krum" in row["skipped"]
    for row in rows:
        if len(row["replied"]) >= 5:
            assert row["skipped"] is None


@pytest.mark.ray
def test_dropouts_on_ray_match_inline(tmp_path: Path) -> None:
    scenario = make_scenario(rounds=2, **SIX, **{"faults.dropout": 0.4})
    run_scenario(scenario, tmp_path / "inline", show_progress=False)
    ray = scenario.model_copy(update={"runtime": "ray"})
    run_scenario(ray, tmp_path / "ray", show_progress=False)
    inline_rows, ray_rows = read_metrics(tmp_path / "inline"), read_metrics(tmp_path / "ray")
    assert [r["dropped"] for r in ray_rows] == [r["dropped"] for r in inline_rows]
    assert any(r["dropped"] for r in ray_rows)
    assert [r["accuracy"] for r in ray_rows] == [r["accuracy"] for r in inline_rows]


def test_ctrl_c_mid_run_exits_130_and_keeps_every_finished_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fedsim.cli import main

    interrupt_in_round(monkeypatch, stop_round=3)
    path = tmp_path / "s.yaml"
    path.write_text("name: ctrl-c\nrounds: 5\nruntime: inline\ndata: {num_clients: 3}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 130
    rows = read_metrics(tmp_path / "run")
    assert [r["round"] for r in rows] == [1, 2]
    assert (tmp_path / "run" / "metrics.jsonl").read_text().endswith("\n")  # whole lines only
