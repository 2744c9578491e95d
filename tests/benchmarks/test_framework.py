"""A CI-sized run of benchmarks/framework.py (the host pipeline with training replaced)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import clients.app as client_app
from fedsim.run.runtimes.vectorized import VectorizedGrid

ROOT = Path(__file__).resolve().parents[2]


def _load_benchmark():  # noqa: ANN202
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("framework", ROOT / "benchmarks/framework.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_both_runtimes_run_the_same_cheap_rounds_and_the_ratio_is_consistent(
    tmp_path: Path,
) -> None:
    benchmark = _load_benchmark()
    before = (client_app.train_local, VectorizedGrid._train_jobs)
    out = tmp_path / "framework.json"
    argv = ["--clients", "5", "--rounds", "2", "--runtimes", "inline,vectorized", "--profile"]
    benchmark.main([*argv, "--json", str(out)])
    assert (client_app.train_local, VectorizedGrid._train_jobs) == before  # restored
    report = json.loads(out.read_text())
    assert report["dim"] == 61_706  # lenet5 on 28×28×1, 10 classes
    inline, vectorized = report["rows"]
    # every client sends w_global + STEP on both runtimes: the same global model, round by round
    assert inline["accuracy"] == vectorized["accuracy"]
    for row in (inline, vectorized):
        assert row["updates_per_s"] == row["clients"] / row["later_s"]  # rounds 2..R
        assert row["host_over_copy"] == row["copy_limit_updates_per_s"] / row["updates_per_s"]
        phases = row["phases_ms_per_update"]
        assert phases["reply checks (parse)"] > 0 and phases["aggregation (rule)"] > 0
