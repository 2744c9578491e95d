"""Checkpoints and ``--resume``: an interrupted run, resumed, equals the uninterrupted run."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from fedsim.checkpoint import CHECKPOINT_FILE, Checkpoint, load_checkpoint, save_checkpoint
from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.results import read_metrics
from tests.conftest import TINY, interrupt_in_round

TIMING = {"time_s", "wall_s", "mean_round_s"}

STATEFUL = {
    # FoolsGold keeps every client's summed updates; crashes and dropouts shift who replies.
    "foolsgold-labelflip-faults": {
        "attack": {"name": "label_flip", "count": 2},
        "defense": {"aggregator": "foolsgold"},
        "faults": {"dropout": 0.1, "crash": 0.1},
    },
    # Local DP ledgers live on the clients; the central accountant and adaptive clip on the
    # server; sampling 3 of 5 makes the ledgers differ between clients.
    "local-and-central-dp": {
        "clients": {"per_round": 3},
        "privacy": {
            "local_dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0},
            "central_dp": {"noise_multiplier": 0.5, "clip": 1.0, "adaptive": True},
        },
    },
    # Neurotoxin reads the global change since the client last trained (client node state);
    # FLAME's clustering noise comes from a generator the rule owns.
    "neurotoxin-flame": {
        "clients": {"per_round": 3},
        "attack": {"name": "backdoor", "count": 2, "params": {"neurotoxin": 0.5}},
        "defense": {"aggregator": "flame"},
    },
    # A probe's scores of the rounds before the checkpoint (the inversion probe's history)
    # enter summary.json; its last figures become final_* keys even if it did not run after.
    "inversion-probe": {
        "privacy": {
            "inversion": {"attack": "dlg", "rounds": [1, 3], "iterations": 5, "max_clients": 1}
        },
    },
}


def _write(tmp_path: Path, changes: dict[str, Any]) -> Path:
    raw = {**TINY, "name": "resume", "rounds": 5, "checkpoint_every": 2, **changes}
    raw["clients"] = {**TINY["clients"], **changes.get("clients", {})}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _without_timing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize("changes", STATEFUL.values(), ids=STATEFUL.keys())
def test_resumed_run_reproduces_the_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, changes: dict[str, Any]
) -> None:
    path = _write(tmp_path, changes)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(["run", str(path), "--out", str(full), "--no-progress"]) == 0

    with monkeypatch.context() as patch:
        interrupt_in_round(patch, stop_round=4)
        assert main(["run", str(path), "--out", str(resumed), "--no-progress"]) == 130
    assert [r["round"] for r in read_metrics(resumed)] == [1, 2, 3]
    checkpoint = load_checkpoint(resumed)
    assert checkpoint is not None and checkpoint.round == 2

    assert main(["run", str(path), "--resume", str(resumed), "--no-progress"]) == 0
    expected, got = read_metrics(full), read_metrics(resumed)
    assert [r["round"] for r in got] == [1, 2, 3, 4, 5]
    assert _without_timing(got) == _without_timing(expected)
    summaries = [yaml.safe_load((d / "summary.json").read_text()) for d in (full, resumed)]
    assert _without_timing(summaries[:1]) == _without_timing(summaries[1:])
    final = load_checkpoint(full)
    assert final is not None and final.round == 4  # rounds 2 and 4 are multiples of 2


def test_resume_without_a_checkpoint_runs_from_round_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, {"checkpoint_every": 10})
    with monkeypatch.context() as patch:
        interrupt_in_round(patch, stop_round=2)
        assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 130
    assert not (tmp_path / "run" / CHECKPOINT_FILE).exists()
    assert main(["run", str(path), "--resume", str(tmp_path / "run"), "--no-progress"]) == 0
    assert [r["round"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3, 4, 5]


def test_resume_refuses_a_different_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, {"rounds": 2})
    run = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["run", str(path), "--resume", str(run), "--set", "seed=7", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--resume" in err and "seed" in err and len(err.strip().splitlines()) == 1
    # runtime is free to change: the numbers do not depend on it.
    assert main(["run", str(path), "--resume", str(run), "--set", "runtime=inline"]) == 0


def test_resume_refuses_a_directory_that_is_not_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, {})
    assert main(["run", str(path), "--resume", str(tmp_path / "nothing")]) == 2
    assert "a run directory written by fedsim run" in capsys.readouterr().err


def test_checkpoint_round_trips_through_weights_only_loading(tmp_path: Path) -> None:
    state = Checkpoint(
        round=3,
        weights=torch.arange(5, dtype=torch.float32),
        history=[{"round": 1, "accuracy": 0.5, "failed": {"2": "boom"}}],
        aggregator={"history": {4: torch.ones(3, dtype=torch.float64)}},
        privacy={"central_rounds": 3, "adaptive_clip": 0.7},
        clients={"ledgers": {1: [1.0, 0.1, 20.0]}, "last_global": {}},
        probes={"inversion": {"state": {"history": [{"psnr": 12.0}]}, "last": {"psnr": 12.0}}},
    )
    save_checkpoint(tmp_path, state)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None
    assert loaded.round == 3 and torch.equal(loaded.weights, state.weights)
    assert torch.equal(loaded.aggregator["history"][4], torch.ones(3, dtype=torch.float64))
    assert loaded.history == state.history and loaded.clients == state.clients
    assert loaded.probes == state.probes


def test_a_pickled_object_in_the_checkpoint_is_refused(tmp_path: Path) -> None:
    payload = argparse.Namespace(cmd="rm -rf ~")  # any object that is not plain data
    torch.save({"format": 2, "round": 1, "weights": payload}, tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ScenarioError, match="checkpoint.pt"):
        load_checkpoint(tmp_path)
