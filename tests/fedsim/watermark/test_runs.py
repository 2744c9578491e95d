"""WAFFLE inside runs: the server embeds, the probe measures, a thief removes, resumes agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.checkpoint import load_checkpoint
from fedsim.cli import main
from fedsim.results import read_metrics
from tests.conftest import TINY, interrupt_in_round, make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

REMOVAL = {"fine_tune": [{"epochs": 1, "lr": 0.01}, {"epochs": 3, "lr": 0.05}], "prune": [0.5]}
# An unmarked model's accuracy on 50 triggers with random labels: chance 0.1 (s.d. 0.042 if it
# answered independently per image; noise images tend to get the same few classes, so more).
# Measured without embedding, every seed shifted by 1000·k, k = 0..4 (rounds 1, 2): 0.10 0.26,
# 0.08 0.10, 0.18 0.22, 0.00 0.10, 0.04 0.12 (mean 0.12, s.d. 0.08); with embedding ≥ 0.98 in
# every round. 0.4 is 3.5 s.d. above that mean and far below the marked model's.
UNMARKED = 0.4


def _without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in rows]


def test_embedded_watermark_is_read_back_and_absent_without_embedding() -> None:
    marked, summary = run_scenario_in_memory(
        make_scenario(rounds=2, watermark={"trigger_set": 50, "removal": REMOVAL})
    )
    unmarked, plain = run_scenario_in_memory(
        make_scenario(rounds=2, watermark={"trigger_set": 50, "embed": False, "removal": REMOVAL})
    )
    baseline, _ = run_scenario_in_memory(make_scenario(rounds=2))
    for row in marked:
        assert row["watermark_accuracy"] >= 0.9
        assert row["watermark_accuracy_before_embedding"] <= row["watermark_accuracy"]
        cost = row["watermark_clean_accuracy_before_embedding"] - row["watermark_clean_accuracy"]
        assert row["watermark_clean_cost"] == pytest.approx(cost)
    assert marked[0]["watermark_accuracy_before_embedding"] <= UNMARKED  # round 1: not yet marked
    for row in unmarked:
        assert row["watermark_accuracy"] <= UNMARKED
        assert "watermark_clean_cost" not in row
    # the probe alone changes nothing: the same numbers as a run without the block
    assert [r["accuracy"] for r in unmarked] == [r["accuracy"] for r in baseline]
    assert summary["final_watermark_accuracy"] == marked[-1]["watermark_accuracy"]
    assert plain["final_watermark_accuracy"] <= UNMARKED
    (probe,) = summary["probes"]
    assert (probe["direction"], probe["threat_model"], probe["rounds"]) == (
        "data→data",
        "global_model",
        [1, 2],
    )
    # removal: once, in the last round, the untouched copy first
    assert "watermark_removal" not in marked[0]
    table = marked[-1]["watermark_removal"]
    assert [(p["method"], p["strength"]) for p in table] == [
        ("none", "0"),
        ("fine_tune", "lr=0.01 epochs=1"),
        ("fine_tune", "lr=0.05 epochs=3"),
        ("prune", "0.5"),
    ]
    assert table[0]["watermark_accuracy"] == marked[-1]["watermark_accuracy"]
    assert summary["watermark_removal"] == table
    assert isinstance(summary["watermark_removed"], bool)
    assert plain["watermark_removed"] is None  # nothing to remove from an unmarked copy
    assert summary["final_removal_watermark_accuracy"] <= table[0]["watermark_accuracy"]


def test_extracted_surrogate_is_scored_on_the_triggers() -> None:
    rows, summary = run_scenario_in_memory(
        make_scenario(
            rounds=1,
            watermark={"trigger_set": 50},
            extraction={"queries": 200, "train": {"epochs": 3}},
        )
    )
    assert 0.0 <= rows[0]["extraction_watermark_accuracy"] <= 1.0
    assert "final_extraction_watermark_accuracy" in summary


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"method": "uchida"}, "watermark.method"),
        ({"trigger_set": 0}, "watermark.trigger_set"),
        ({"threshold": 1.5}, "watermark.threshold"),
        ({"rounds": [3]}, "watermark.rounds"),
        ({"removal": {"prune": [1.5]}}, "watermark.removal.prune"),
        ({"removal": {"fine_tune": [{"lr": 0}]}}, "watermark.removal.fine_tune.0.lr"),
        ({"removal": {"public_fraction": 0.001}}, "watermark.removal.public_fraction"),
    ],
)
def test_bad_settings_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: dict, key: str
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({**TINY, "watermark": block}))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"fedsim: error: {key}:" in err and len(err.strip().splitlines()) == 1


def test_resumed_run_with_watermarking_equals_the_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {
        **TINY,
        "name": "resume-watermark",
        "rounds": 4,
        "checkpoint_every": 2,
        "watermark": {"trigger_set": 50, "removal": {"prune": [0.5]}},
        "extraction": {"queries": 100, "train": {"epochs": 2}, "rounds": [1, 4]},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(["run", str(path), "--out", str(full), "--no-progress"]) == 0
    with monkeypatch.context() as patch:
        interrupt_in_round(patch, stop_round=3)
        assert main(["run", str(path), "--out", str(resumed), "--no-progress"]) == 130
    checkpoint = load_checkpoint(resumed)
    assert checkpoint is not None and checkpoint.round == 2
    assert main(["run", str(path), "--resume", str(resumed), "--no-progress"]) == 0
    expected, got = read_metrics(full), read_metrics(resumed)
    assert [r["round"] for r in got] == [1, 2, 3, 4]
    assert _without_timing(got) == _without_timing(expected)
    assert all(r["watermark_accuracy"] >= 0.9 for r in got)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (full, resumed)]
    drop = {"wall_s", "mean_round_s", "final_extraction_cost_s"}
    assert [{k: v for k, v in s.items() if k not in drop} for s in summaries][0] == {
        k: v for k, v in summaries[1].items() if k not in drop
    }


def test_report_shows_the_model_to_model_and_data_to_data_sections(tmp_path: Path) -> None:
    raw = {
        **TINY,
        "rounds": 1,
        "watermark": {"trigger_set": 50, "removal": {"prune": [0.5]}},
        "extraction": {"queries": 100, "budgets": [50], "train": {"epochs": 2}},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    model_model = report.split("## model→model")[1].split("## data→data")[0]
    data_data = report.split("## data→data")[1]
    assert "### Probe: extraction" in model_model and "Threat model: query" in model_model
    assert "extraction_fidelity" in model_model and "extraction_accuracy" in model_model
    assert "](extraction/round001_curve.png)" in model_model
    assert "### Probe: watermark" in data_data and "Threat model: global_model" in data_data
    assert "watermark_accuracy" in data_data and "removal_watermark_accuracy" in data_data
    assert "](watermark/removal.png)" in data_data
    assert json.loads((run_dir / "watermark" / "removal.json").read_text())["points"]
