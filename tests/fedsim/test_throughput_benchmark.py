"""A CI-sized run of benchmarks/throughput.py, so it and its Flower baseline cannot rot."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("throughput", ROOT / "benchmarks/throughput.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_smoke_run_measures_every_execution_and_the_ratios(tmp_path: Path) -> None:
    benchmark = _load_benchmark()
    out = tmp_path / "throughput.json"
    argv = ["--clients", "3", "--rounds", "1", "--executions", "flower-inline,inline,bare"]
    benchmark.main([*argv, "--device", "cpu", "--json", str(out)])
    report = json.loads(out.read_text())
    rows = {row["execution"]: row for row in report["rows"]}
    assert set(rows) == {"flower-inline", "inline", "bare"}
    for row in rows.values():
        assert row["updates"] == 3 and row["seconds"] > 0
        assert row["updates_per_s"] == row["updates"] / row["seconds"]
        assert 0.0 <= row["accuracy"] <= 1.0
    (ratio,) = report["ratios"]
    assert ratio["ratio"] == "inline/bare"
    assert ratio["value"] == rows["inline"]["updates_per_s"] / rows["bare"]["updates_per_s"]


def test_ratios_pair_only_executions_measured_at_the_same_size() -> None:
    benchmark = _load_benchmark()
    rows = [
        {"execution": "ray", "clients": 10, "updates_per_s": 30.0},
        {"execution": "flower", "clients": 10, "updates_per_s": 10.0},
        {"execution": "bare", "clients": 50, "updates_per_s": 60.0},
        {"execution": "inline", "clients": 50, "updates_per_s": 45.0},
    ]
    found = {(q["ratio"], q["clients"]): q["value"] for q in benchmark.ratios(rows)}
    assert found == {("ray/flower", 10): 3.0, ("inline/bare", 50): 0.75}
