"""The framework alone: fedsim's host pipeline with training replaced by a trivially cheap update.

On a GPU one small client's local training takes microseconds, so what the host does for
each client update decides a runtime's speed: building and answering the round's messages,
each client's pre- and post-training steps, the server's reply checks, stacking the updates
into the ``(n, d)`` matrix, aggregation and the round's metrics. This benchmark measures that
pipeline alone. It runs the large workload's scenario (``lenet5``, 61,706 parameters,
synthetic 28×28 data, 64 examples per client, FedAvg; see :mod:`large_workload`) with every
client's local training replaced by ``w_local = w_global + 10⁻³`` (one vector add per client
on ``inline``, one per round on ``vectorized``), and a 100-example test set so
that the server's per-round evaluation costs next to nothing.

Next to it, the **copy limit**: the seconds it takes to copy each client's float64 update
(d values) once into an ``(n, d)`` matrix, ``n`` separate copies of 8·d bytes — the least
any pipeline that receives ``n`` updates and hands a rule one matrix must move. The ratio
``host / copy`` is how many such copies' worth of time the pipeline spends per update.

Each (runtime, N) runs in this process, one after another, its rounds 2..R timed by the
ServerApp (round 1 pays one-off costs); ``--profile`` adds a cProfile breakdown by phase
(cProfile inflates code that makes many small Python calls, so the phases' sum exceeds the
unprofiled time; it says where the time goes, the unprofiled time says how much).

    python benchmarks/framework.py                      # N = 100, 1000; inline and vectorized
    python benchmarks/framework.py --clients 1000 --runtimes vectorized --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from large_workload import large_scenario_dict  # noqa: E402

STEP = 1e-3
"""The cheap update: every parameter moves by this much."""
TEST_EXAMPLES = 100
"""Test-set size: the server evaluates the global model after every round."""
PHASES: dict[str, tuple[str, ...]] = {
    "configure (sampling, messages)": ("configure_train",),
    "start_train (per client)": ("start_train",),
    "training (the cheap update)": ("_cheap_batch", "_cheap_local"),
    "finish (updates, replies)": ("finish_train", "finish_train_in_batch", "float64_delta"),
    "reply checks (parse)": ("parse_train_replies",),
    "aggregation (rule)": ("__call__",),
    "evaluation (100 examples)": ("_evaluate_global",),
}
"""Phase label → function names whose cumulative cProfile time it reports."""


def framework_scenario(num_clients: int, rounds: int, runtime: str) -> dict[str, Any]:
    """The large workload's ``lenet5`` scenario with a 100-example test set."""
    raw = large_scenario_dict("lenet5", num_clients, rounds, runtime, "cpu")
    train = 64 * num_clients
    raw["data"]["params"]["num_samples"] = train + TEST_EXAMPLES
    raw["data"]["test_fraction"] = TEST_EXAMPLES / (train + TEST_EXAMPLES)
    raw["name"] = f"framework-{runtime}-{num_clients}"
    return raw


@contextlib.contextmanager
def cheap_training() -> Iterator[None]:
    """Replace local training by ``w_local = w_global + STEP`` on every runtime.

    ``inline``: :func:`fedsim.training.train_local` adds ``STEP`` to the model's parameters.
    ``vectorized``: the round's training (``VectorizedGrid._train_jobs``) becomes one vector
    add, its result every client's trained weights.
    """
    import clients.app as client_app
    from fedsim.run.runtimes.vectorized import VectorizedGrid
    from fedsim.training import TrainResult

    def _cheap_local(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *_: Any) -> Any:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(STEP)
        return TrainResult(loss=0.0, steps=0, num_examples=len(y))

    saved = (client_app.train_local, VectorizedGrid._train_jobs)
    client_app.train_local = _cheap_local
    VectorizedGrid._train_jobs = cheap_batch_trainer()  # type: ignore[method-assign]
    try:
        yield
    finally:
        client_app.train_local, VectorizedGrid._train_jobs = saved  # type: ignore[method-assign]


def cheap_batch_trainer() -> Callable[..., Any]:
    """A stand-in for ``VectorizedGrid._train_jobs`` (same result type).

    Every client's trained weights are the one vector ``w_global + STEP`` (its rows share
    memory: the training costs one vector add per round, nothing per client).
    """
    from fedsim.training import TrainResult
    from fedsim.vectorized import ClientOutcome

    def _cheap_batch(grid: Any, fed: Any, jobs: dict[str, Any]) -> dict[str, Any]:
        if not jobs:
            return {}
        trained = next(iter(jobs.values())).global_weights + STEP
        return {
            m: ClientOutcome(trained, TrainResult(0.0, 0, fed.data.num_examples(job.client_id)))
            for m, job in jobs.items()
        }

    return _cheap_batch


def copy_limit(num_clients: int, dim: int, repeats: int = 5) -> float:
    """Best seconds of copying ``num_clients`` separate float64 vectors of ``dim`` into a matrix."""
    sources = [torch.randn(dim, dtype=torch.float64) for _ in range(num_clients)]
    matrix = torch.empty(num_clients, dim, dtype=torch.float64)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for i, source in enumerate(sources):
            matrix[i].copy_(source)
        best = min(best, time.perf_counter() - started)
    return best


def run_once(num_clients: int, rounds: int, runtime: str, profile: bool) -> dict[str, Any]:
    """One run of the framework scenario; its timed rounds and (with ``profile``) phases."""
    from fedsim.results import read_metrics
    from fedsim.run.logs import quiet_flower
    from fedsim.run.runner import run_scenario
    from fedsim.scenario import parse_scenario

    quiet_flower()
    scenario = parse_scenario(framework_scenario(num_clients, rounds, runtime))
    profiler = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory() as out, cheap_training(), _from_round_2(profiler):
        _, summary = run_scenario(scenario, out, show_progress=False)
        if profiler is not None:
            profiler.disable()
        seconds = [row["time_s"] for row in read_metrics(out)]
    later = sum(seconds[1:])
    row = {
        "runtime": runtime,
        "clients": num_clients,
        "round_1_s": seconds[0],
        "later_s": later,
        "updates_per_s": num_clients * (len(seconds) - 1) / later,
        "accuracy": summary["final_accuracy"],
    }
    if profiler is not None:
        row["phases_ms_per_update"] = _phases(profiler, num_clients * (len(seconds) - 1))
    return row


@contextlib.contextmanager
def _from_round_2(profiler: cProfile.Profile | None) -> Iterator[None]:
    """Profile from the start of round 2 on (round 1 pays one-off costs)."""
    if profiler is None:
        yield
        return
    from server.strategy import FedsimStrategy

    configure = FedsimStrategy.configure_train

    def configure_train(self: Any, server_round: int, *args: Any, **kwargs: Any) -> Any:
        if server_round == 2:
            profiler.enable()
        return configure(self, server_round, *args, **kwargs)

    FedsimStrategy.configure_train = configure_train  # type: ignore[method-assign]
    try:
        yield
    finally:
        FedsimStrategy.configure_train = configure  # type: ignore[method-assign]


def _phases(profiler: cProfile.Profile, updates: int) -> dict[str, float]:
    """Cumulative cProfile milliseconds per client update of each :data:`PHASES` entry."""
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    phases = {}
    for label, names in PHASES.items():
        total = 0.0
        for (filename, _, function), (_, _, _, cumulative, _) in stats.items():
            if function not in names:
                continue
            if function == "__call__" and "aggregators" not in filename:
                continue
            total += cumulative
        phases[label] = 1e3 * total / updates
    return phases


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Measure, print the table and the ratios to the copy limit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="100,1000", help="comma-separated N")
    parser.add_argument("--runtimes", default="inline,vectorized")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", action="store_true", help="add a per-phase breakdown")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from fedsim.models import build_model

    dim = sum(p.numel() for p in build_model("lenet5", (1, 28, 28), 10).parameters())
    rows = []
    for n in [int(c) for c in args.clients.split(",")]:
        limit_s = copy_limit(n, dim)
        for runtime in args.runtimes.split(","):
            row = run_once(n, args.rounds, runtime, args.profile)
            row["copy_limit_updates_per_s"] = n / limit_s
            row["host_over_copy"] = row["copy_limit_updates_per_s"] / row["updates_per_s"]
            rows.append(row)
            print(
                f"{runtime} N={n}: {row['updates_per_s']:.0f} updates/s, copy limit "
                f"{row['copy_limit_updates_per_s']:.0f}/s, ratio {row['host_over_copy']:.2f}",
                flush=True,
            )
    print(f"\nframework only (lenet5, d = {dim:,}, float64 updates; one CPU thread)\n")
    print(
        f"{'runtime':<12}{'N':>6}{'round 1 s':>11}{'later s':>9}{'updates/s':>11}"
        f"{'copy limit/s':>14}{'host/copy':>11}"
    )
    for r in rows:
        print(
            f"{r['runtime']:<12}{r['clients']:>6}{r['round_1_s']:>11.3f}{r['later_s']:>9.3f}"
            f"{r['updates_per_s']:>11.0f}{r['copy_limit_updates_per_s']:>14.0f}"
            f"{r['host_over_copy']:>11.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"dim": dim, "rows": rows}, indent=2) + "\n")
    if args.profile:
        print("\nper update, ms (cProfile, cumulative; rounds 2..R):")
        labels = list(PHASES)
        print(f"{'phase':<34}" + "".join(f"{r['runtime'][:6]}/{r['clients']:<6}" for r in rows))
        for label in labels:
            print(
                f"{label:<34}" + "".join(f"{r['phases_ms_per_update'][label]:<13.4f}" for r in rows)
            )
    return rows


if __name__ == "__main__":
    main()
