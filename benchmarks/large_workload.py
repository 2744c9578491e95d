"""The throughput benchmark's large workload (``throughput.py --workload large``, issue #11).

Synthetic 28×28 grey images in 10 classes, 64 training examples per client, two models
(:data:`LARGE_MODELS`). Besides its scenario, this module counts each row's training FLOPs
per client update, achieved FLOP/s and share of the device's measured float32 matmul
throughput (see :mod:`flops`), runs every (model, N, execution) through :mod:`harness`, and
prints and writes the results.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

from harness import measure, measure_peak, ok, ratios
from training_setup import BATCH_SIZE, LOCAL_EPOCHS, SEED, clients_block

LARGE_MODELS: dict[str, dict[str, Any]] = {
    "lenet5": {"name": "lenet5"},
    "cnn-1m": {"name": "cnn", "params": {"width": 208}},
}
"""The large workload's models: label → the scenario's ``model`` block."""
LARGE_EXECUTIONS = ("ray", "inline", "vectorized", "bare")
LARGE_DEFAULTS = {"clients": [100, 1000], "executions": "ray,vectorized", "models": "lenet5,cnn-1m"}
EXAMPLES_PER_CLIENT, IMAGE_SHAPE, NUM_CLASSES = 64, (1, 28, 28), 10
LARGE_RATIOS = (
    ("vectorized", "ray"),
    ("vectorized", "inline"),
    ("vectorized", "bare"),
    ("ray", "bare"),
    ("inline", "bare"),
)


def large_scenario_dict(
    model: str,
    num_clients: int,
    rounds: int,
    runtime: str,
    device: str,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """The large workload as a fedsim scenario (``model``: a :data:`LARGE_MODELS` label).

    The synthetic dataset has 80·N samples; a fifth is the test set, the other 64·N are split
    IID into N near-equal parts (64 examples each when 5 divides N).
    """
    c, h, _ = IMAGE_SHAPE
    return {
        "name": f"throughput-large-{model}-{runtime}-{num_clients}",
        "seed": SEED,
        "rounds": rounds,
        "runtime": runtime,
        "device": device,
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "num_clients": num_clients,
            "test_fraction": 0.2,
            "params": {
                "num_samples": EXAMPLES_PER_CLIENT * num_clients * 5 // 4,
                "image_size": h,
                "channels": c,
                "num_classes": NUM_CLASSES,
            },
        },
        "model": LARGE_MODELS[model],
        "clients": clients_block(num_clients),
        "attack": {"name": "none"},
        "defense": {"aggregator": "fedavg"},
        "vectorized": {"chunk_size": chunk_size},
    }


def model_flops(model: str) -> dict[str, float]:
    """Parameters of the large workload's ``model`` and its training FLOPs per example (f)."""
    from flops import training_flops_per_example

    from fedsim.models import build_model

    spec = LARGE_MODELS[model]
    net = build_model(spec["name"], IMAGE_SHAPE, NUM_CLASSES, **spec.get("params", {}))
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "flops_per_example": training_flops_per_example(net, IMAGE_SHAPE, BATCH_SIZE),
    }


def add_flops(row: dict[str, Any], counted: dict[str, float], peak: dict[str, Any]) -> None:
    r"""Add the row's FLOPs per update, achieved FLOP/s and shares of the matmul peak.

    :math:`F_u = E \cdot \bar n \cdot f`, achieved :math:`= F_u \cdot U`, share = achieved / Π
    (``share``: Π at torch's default float32 precision; ``share_tf32``: Π with TF32).
    """
    per_update = LOCAL_EPOCHS * row["examples_per_client"] * counted["flops_per_example"]
    achieved = per_update * row["updates_per_s"]
    row.update(
        params=counted["params"],
        flops_per_update=per_update,
        achieved_flop_s=achieved,
        share=achieved / peak["flop_s"],
        share_tf32=achieved / peak["flop_s_tf32"],
    )


def print_large_table(
    rows: list[dict[str, Any]], found: list[dict[str, Any]], peak: dict[str, Any]
) -> None:
    """The large workload's results, FLOPs, shares and ratios as plain-text tables."""
    print(
        f"\nthroughput on {peak_device(peak)} (large: synthetic 28×28, "
        f"{EXAMPLES_PER_CLIENT} examples per client, 1 local epoch, batch {BATCH_SIZE}, FedAvg)"
    )
    matmul = (
        f"float32 matmul {peak['matrix']}²: {peak['flop_s'] / 1e9:.1f} GFLOP/s at precision "
        f"{peak['float32_matmul_precision']!r}"
    )
    if peak["kind"] == "cuda":
        matmul += (
            f", {peak['flop_s_tf32'] / 1e9:.1f} GFLOP/s with TF32; cuDNN convolutions: "
            f"{peak['cudnn_conv_fp32_precision']}"
        )
    print(matmul)
    models = {r["model"]: r["params"] for r in rows if ok(r)}
    print(", ".join(f"{m}: {p:,} parameters" for m, p in models.items()) + "\n")
    print(
        f"{'model':<8}{'execution':<12}{'N':>6}{'round 1 s':>11}{'later s':>9}{'updates/s':>11}"
        f"{'GFLOP/upd':>11}{'GFLOP/s':>10}{'share':>9}{'TF32':>9}{'peak MiB':>10}"
        f"{'accuracy':>10}"
    )
    for r in rows:
        if not ok(r):
            print(f"{r['model']:<8}{r['execution']:<12}{r['clients']:>6}  {r['status']}")
            continue
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "-"
        print(
            f"{r['model']:<8}{r['execution']:<12}{r['clients']:>6}{r['first_round_s']:>11.2f}"
            f"{r['seconds']:>9.2f}{r['updates_per_s']:>11.1f}{r['flops_per_update'] / 1e9:>11.3f}"
            f"{r['achieved_flop_s'] / 1e9:>10.1f}{_percent(r['share']):>9}"
            f"{_percent(r['share_tf32']):>9}{rss:>10}{r['accuracy']:>10.4f}"
        )
    if found:
        print(f"\n{'model':<8}{'ratio of updates/s':<20}{'N':>6}{'value':>9}")
        for q in found:
            print(f"{q['model']:<8}{q['ratio']:<20}{q['clients']:>6}{q['value']:>9.2f}")


def peak_device(peak: dict[str, Any]) -> str:
    """What the large workload ran on, in words, without touching CUDA in this process."""
    if peak["kind"] == "cuda":
        return f"GPU {peak['device']}, {os.cpu_count()} CPU cores"
    return f"CPU ({os.cpu_count()} cores)"


def _percent(share: float) -> str:
    """``share`` as a percentage: one decimal from 1 %, two significant digits below."""
    return f"{100 * share:.1f}%" if share >= 0.01 else f"{100 * share:.2g}%"


def run_large(
    models: list[str],
    sizes: list[int],
    executions: list[str],
    *,
    rounds: int,
    device: str,
    threads: int = 1,
    chunk_size: int | None = None,
    json_path: str | None = None,
) -> list[dict[str, Any]]:
    """The matmul peak, then every (model, N, execution) in a child process, then the tables.

    With ``json_path`` the report is rewritten after every measurement, so a run cut short
    keeps what it measured.
    """
    peak = measure_peak(device)
    counted = {m: model_flops(m) for m in models}
    rows: list[dict[str, Any]] = []
    for model, n, e in itertools.product(models, sizes, executions):
        row = measure(e, n, rounds, device, threads, model=model, chunk_size=chunk_size)
        rows.append(row)
        if not ok(row):  # reported in the table; the others still run
            print(f"{model} N={n} {e}: {row['status']}", flush=True)
        else:
            add_flops(row, counted[model], peak)
            share = _percent(row["share"])
            speed = row["updates_per_s"]
            print(f"{model} N={n} {e}: {speed:.1f} updates/s, share {share}", flush=True)
        if json_path:
            write_large_report(json_path, peak, rows)
    print_large_table(rows, ratios(rows, LARGE_RATIOS), peak)
    if json_path:
        write_large_report(json_path, peak, rows)
    return rows


def write_large_report(path: str, peak: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The large workload's JSON report at ``path``: device, matmul peak, rows and ratios."""
    report = {
        "device": peak_device(peak),
        "workload": "large",
        "matmul_peak": peak,
        "rows": rows,
        "ratios": ratios(rows, LARGE_RATIOS),
    }
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
