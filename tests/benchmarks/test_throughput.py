"""A CI-sized run of benchmarks/throughput.py, so it and its Flower baseline cannot rot."""

from __future__ import annotations

import importlib
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


def _load_large_workload():  # noqa: ANN202
    _load_benchmark()  # puts benchmarks/ on sys.path and imports large_workload
    return importlib.import_module("large_workload")


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
    pairs = benchmark.RATIOS  # the digits workload's
    found = {(q["ratio"], q["clients"]): q["value"] for q in benchmark.ratios(rows, pairs)}
    assert found == {("ray/flower", 10): 3.0, ("inline/bare", 50): 0.75}


# The large workload (issue #11): synthetic 28×28 images, FLOPs per update, share of the peak.


def _train_flops(first_layer_macs: int, other_layer_macs: int) -> int:
    """Training FLOPs of one example from its multiply-adds: 2 per MAC forward, 2 for the
    weight gradient, 2 for the input gradient of every layer but the first."""
    return 2 * 2 * (first_layer_macs + other_layer_macs) + 2 * other_layer_macs


# LeNet-5 on 28×28: conv 1→6 5×5 pad 2 (28×28 out), conv 6→16 5×5 (10×10 out), 400-120-84-10.
LENET5_FLOPS = _train_flops(
    28 * 28 * 6 * 25, 10 * 10 * 16 * 6 * 25 + 400 * 120 + 120 * 84 + 84 * 10
)
# cnn width 208 on 28×28: conv 1→208 3×3 (28×28), conv 208→416 3×3 (14×14), 416·7·7 → 10.
CNN_1M_FLOPS = _train_flops(28 * 28 * 208 * 9, 14 * 14 * 416 * 208 * 9 + 416 * 7 * 7 * 10)


def test_large_models_have_their_hand_counted_sizes_and_flops() -> None:
    large = _load_large_workload()
    lenet, cnn = large.model_flops("lenet5"), large.model_flops("cnn-1m")
    assert lenet == {"params": 61_706, "flops_per_example": LENET5_FLOPS}
    assert LENET5_FLOPS == 2_263_920
    assert cnn == {"params": 986_346, "flops_per_example": CNN_1M_FLOPS}
    # a conv net reuses each weight at many positions: far above 6 FLOPs per parameter
    assert cnn["flops_per_example"] >= 6 * cnn["params"]


def test_large_workload_smoke_run_reports_flops_and_share(tmp_path: Path) -> None:
    benchmark = _load_benchmark()
    out = tmp_path / "large.json"
    argv = ["--workload", "large", "--clients", "5", "--rounds", "2", "--models", "lenet5"]
    argv += ["--executions", "inline,vectorized", "--device", "cpu", "--json", str(out)]
    benchmark.main(argv)
    report = json.loads(out.read_text())
    assert report["workload"] == "large"
    peak = report["matmul_peak"]
    assert peak["kind"] == "cpu" and peak["matrix"] == 1024 and peak["flop_s"] > 0
    rows = {row["execution"]: row for row in report["rows"]}
    assert set(rows) == {"inline", "vectorized"}
    for row in rows.values():
        assert row["model"] == "lenet5" and row["clients"] == 5 and row["params"] == 61_706
        assert row["updates"] == 5 and row["seconds"] > 0  # round 2 of 5 clients
        assert row["updates_per_s"] == row["updates"] / row["seconds"] > 0
        assert row["examples_per_client"] == 64  # 80·5 samples, a fifth held out
        assert row["flops_per_update"] == 64 * LENET5_FLOPS
        assert row["achieved_flop_s"] == row["flops_per_update"] * row["updates_per_s"]
        assert row["share"] == row["achieved_flop_s"] / peak["flop_s"]
        assert 0 < row["share"] <= 1
    found = {(q["model"], q["ratio"], q["clients"]): q["value"] for q in report["ratios"]}
    speed = {e: r["updates_per_s"] for e, r in rows.items()}
    assert found == {("lenet5", "vectorized/inline", 5): speed["vectorized"] / speed["inline"]}


def test_ratios_of_the_large_workload_pair_within_a_model() -> None:
    large = _load_large_workload()
    rows = [
        {"model": "lenet5", "execution": "ray", "clients": 100, "updates_per_s": 50.0},
        {"model": "lenet5", "execution": "vectorized", "clients": 100, "updates_per_s": 1000.0},
        {"model": "cnn-1m", "execution": "ray", "clients": 100, "updates_per_s": 10.0},
    ]
    found = large.ratios(rows, large.LARGE_RATIOS)
    assert found == [{"model": "lenet5", "clients": 100, "ratio": "vectorized/ray", "value": 20.0}]


def test_a_failed_execution_is_reported_and_the_others_still_run(
    tmp_path: Path,
    monkeypatch,
    capsys,  # noqa: ANN001
) -> None:
    # The failing child leaves a grandchild holding its output open, as Ray's daemons do when
    # the vanilla-Flower child dies: the benchmark must neither wait for it nor leave it behind.
    import sys
    import time

    benchmark = _load_benchmark()
    harness = sys.modules["harness"]
    original = harness._child_command
    marker = tmp_path / "grandchild.pid"
    dying = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "sys.exit('ValueError: When connecting to an existing cluster, num_cpus and num_gpus "
        "must not be provided.')\n"
    )

    def command(execution, *args):  # noqa: ANN001, ANN202
        if execution == "flower-inline":
            return [sys.executable, "-c", dying]
        return original(execution, *args)

    monkeypatch.setattr(harness, "_child_command", command)
    out = tmp_path / "throughput.json"
    started = time.monotonic()
    argv = ["--clients", "3", "--rounds", "1", "--executions", "flower-inline,bare"]
    benchmark.main([*argv, "--device", "cpu", "--json", str(out)])
    assert time.monotonic() - started < 120
    rows = {row["execution"]: row for row in json.loads(out.read_text())["rows"]}
    assert rows["flower-inline"]["status"].startswith("failed: ValueError: When connecting")
    assert rows["flower-inline"]["updates_per_s"] is None
    assert rows["bare"]["status"] == "ok" and rows["bare"]["updates_per_s"] > 0
    table = capsys.readouterr().out
    assert "flower-inline     3       1  failed: ValueError" in table
    grandchild = int(marker.read_text())
    time.sleep(0.5)
    assert (
        not Path(f"/proc/{grandchild}").exists()
        or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split(")")[1][:3]
    )
