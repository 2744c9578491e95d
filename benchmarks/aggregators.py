"""Time every registered aggregation rule on one random float64 update matrix.

Usage::

    python benchmarks/aggregators.py                 # n=100 updates of d=1e6 coordinates
    python benchmarks/aggregators.py --quick         # n=20, d=1e4
    python benchmarks/aggregators.py --n 50 --d 200000 --repeat 3

Rules that need f get f = ⌊n/5⌋ (20% Byzantine; Bulyan needs n ≥ 4f+3, so it gets
⌊(n−3)/4⌋ if that is smaller); trimmed mean trims k = f per side; FLTrust gets a random
server update. One extra row times ``bucketing(s=2) → krum``. Each rule is built fresh and
called once untimed on a small slice first (imports, lazy initialisation), then timed on the
full matrix; the table shows the best of ``--repeat`` calls and the ratio to FedAvg.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.aggregators import Aggregator, build, build_pipeline, names  # noqa: E402


def settings(name: str, n: int) -> dict[str, Any]:
    """Benchmark settings for rule ``name`` with ``n`` updates."""
    f = max(1, n // 5)
    return {
        "krum": {"f": f},
        "multikrum": {"f": f},
        "bulyan": {"f": min(f, (n - 3) // 4)},
        "dnc": {"f": f},
        "trimmed_mean": {"k": f},
        "norm_bound": {"max_norm": 1.0, "sigma": 0.001},
    }.get(name, {})


def timed(rule: Aggregator, updates: torch.Tensor, server_update: torch.Tensor) -> float:
    """Seconds for one call of ``rule`` on ``updates``."""
    n = updates.shape[0]
    weights = torch.ones(n, dtype=torch.float64)
    ids = list(range(n))
    if hasattr(rule, "server_update"):
        rule.server_update = server_update
    start = time.perf_counter()
    rule(updates, weights, ids)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, time the rules, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="number of updates (default 100)")
    parser.add_argument("--d", type=int, default=1_000_000, help="coordinates (default 1e6)")
    parser.add_argument("--quick", action="store_true", help="n=20, d=1e4")
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per rule (best)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, d = (20, 10_000) if args.quick else (args.n, args.d)

    g = torch.Generator().manual_seed(args.seed)
    updates = torch.randn(n, d, generator=g, dtype=torch.float64)
    server_update = torch.randn(d, generator=g, dtype=torch.float64)
    rules = {name: (lambda name=name: build(name, **settings(name, n))) for name in names()}
    rules["bucketing(s=2)+krum"] = lambda: build_pipeline(
        "krum", {"f": max(1, n // 10)}, [{"name": "bucketing", "params": {"bucket_size": 2}}]
    )

    print(f"n={n}, d={d}, float64, torch {torch.__version__}, {torch.get_num_threads()} threads")
    results: dict[str, float] = {}
    for label, make in rules.items():
        timed(make(), updates[:, : min(d, 64)], server_update[: min(d, 64)])  # warm-up
        results[label] = min(
            timed(make(), updates, server_update) for _ in range(max(1, args.repeat))
        )
        print(f"  {label}: {results[label]:.3f} s", file=sys.stderr, flush=True)

    base = results["fedavg"]
    width = max(len(label) for label in results)
    print(f"{'rule':<{width}}  {'seconds':>9}  {'× fedavg':>9}")
    for label, seconds in sorted(results.items(), key=lambda item: item[1]):
        print(f"{label:<{width}}  {seconds:>9.3f}  {seconds / base:>9.1f}")


if __name__ == "__main__":
    main()
