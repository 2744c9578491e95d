"""Time a whole in-memory SecAgg+ round against the plain sum of the same vectors.

Usage::

    python benchmarks/secagg.py                    # n = 10 and 100 clients, d = 6186
    python benchmarks/secagg.py --runs             # + whole inline rounds, clear vs SecAgg+
    python benchmarks/secagg.py --clients 10,50 --d 1000 --repeat 3
    python benchmarks/secagg.py --no-flower        # skip Flower's Shamir in the micro table

``d = 6186`` is the digits ``cnn`` model's parameter count. For each n the script draws n
float vectors, times :func:`fedsim.secagg.secure_sum` with Flower's default SecAgg+ settings
(``num_shares=0.5``, ``reconstruction_threshold=0.6``, ``c = 8``) and ``np.sum`` of the same
vectors, and prints the round's seconds per stage (best of ``--repeat`` rounds). A second
table times Shamir secret sharing alone at the cohort's ``k`` and ``t``: sharing one node's
secrets (its 32-byte seed and its 48-byte ``sk1``), and rebuilding ``n`` seeds from ``k`` shares
each (the server's unmask stage when no node drops): :mod:`fedsim.secagg.shamir` against
Flower's ``create_shares``/``combine_shares`` (pycryptodome, GF(2^128)). With ``--runs`` a
third table runs the issue's comparison: the same digits ``cnn`` scenario on the ``inline``
runtime (n IID clients, all n per round, 1 local epoch) in the clear and under SecAgg+, side by
side, with the median seconds of rounds 2..R, their ratio, the round's ``secagg_s`` and the
bytes each client sent and received (``secagg_bytes``). Nothing here is a timed test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from flwr.common.secure_aggregation.crypto import shamir as flwr_shamir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fedsim.secagg import STAGES, SecAggSettings, secure_sum, shamir  # noqa: E402


def best(fn: Callable[[], object], repeat: int) -> float:
    """Fewest seconds of ``repeat`` calls of ``fn``."""
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def round_table(clients: list[int], d: int, repeat: int) -> None:
    """Print secure_sum's seconds per stage next to the plain sum's, one row per n."""
    settings = SecAggSettings()
    header = ["n", "k", "t", "plain s", "secagg s", "ratio", *STAGES]
    print(" | ".join(header))
    for n in clients:
        x = np.random.default_rng(n).normal(size=(n, d))
        plain = best(lambda x=x: np.sum(x, axis=0), max(repeat, 5))
        rounds = []
        for r in range(max(1, repeat)):
            start = time.perf_counter()
            out = secure_sum(x, settings, seed=r)
            rounds.append((time.perf_counter() - start, out))
        seconds, out = min(rounds, key=lambda item: item[0])
        stages = [f"{out.stages[s].seconds:.3f}" for s in STAGES]
        cohort = out.cohort
        row = [n, cohort.num_shares, cohort.threshold, f"{plain:.5f}", f"{seconds:.3f}"]
        print(" | ".join(map(str, [*row, f"{seconds / plain:.0f}", *stages])), flush=True)


def shamir_row(n: int, repeat: int, flower: bool) -> list[str]:
    """Rows for cohort size ``n``: share one node's secrets, rebuild ``n`` seeds from ``k``."""
    cohort = SecAggSettings().for_cohort(n)
    k, t = cohort.num_shares, cohort.threshold
    secrets = [os.urandom(32), os.urandom(48)]
    seeds = shamir.create_shares(secrets, t, k)[0]
    share = best(lambda: shamir.create_shares(secrets, t, k), max(repeat, 5))
    combine = best(lambda: shamir.combine_shares([seeds] * n), max(repeat, 5))
    rows = [f"{n} | {k} | {t} | fedsim | {share:.6f} | {combine:.6f}"]
    if flower:
        seeds = flwr_shamir.create_shares(secrets[0], t, k)
        share = best(lambda: [flwr_shamir.create_shares(s, t, k) for s in secrets], repeat)
        combine = best(lambda: [flwr_shamir.combine_shares(seeds) for _ in range(n)], repeat)
        rows.append(f"{n} | {k} | {t} | flower | {share:.6f} | {combine:.6f}")
    return rows


def run_rounds(n: int, rounds: int, secure: bool) -> dict[str, float]:
    """Median seconds of rounds 2..R of the digits ``cnn`` scenario on ``inline`` (n clients)."""
    import tempfile

    from fedsim.results import read_metrics
    from fedsim.run.logs import quiet_flower
    from fedsim.run.runner import run_scenario
    from fedsim.scenario import parse_scenario

    quiet_flower()
    raw = {
        "name": f"secagg-bench-{n}",
        "seed": 0,
        "rounds": rounds,
        "runtime": "inline",
        "data": {"dataset": "digits", "partition": "iid", "num_clients": n},
        "model": {"name": "cnn"},
        "clients": {"per_round": n, "local_epochs": 1, "batch_size": 16, "lr": 0.05},
        "defense": {"aggregator": "fedavg"},
    }
    if secure:
        raw["defense"]["secure_aggregation"] = {"protocol": "secaggplus"}
    with tempfile.TemporaryDirectory() as out:
        _, summary = run_scenario(parse_scenario(raw), out, show_progress=False)
        rows = read_metrics(out)[1:]
    return {
        "round_s": float(np.median([row["time_s"] for row in rows])),
        "secagg_s": float(np.median([row.get("secagg_s", 0.0) for row in rows])),
        "bytes": float(np.median([row.get("secagg_bytes", 0.0) for row in rows])),
        "accuracy": summary["final_accuracy"],
    }


def runs_table(clients: list[int], rounds: int) -> None:
    """Print clear and SecAgg+ rounds of one scenario side by side, one row per n."""
    print("n | clear s | secagg s | ratio | secagg_s | bytes/client | acc clear | acc secagg")
    for n in clients:
        clear, secure = run_rounds(n, rounds, False), run_rounds(n, rounds, True)
        ratio = secure["round_s"] / clear["round_s"]
        row = [n, f"{clear['round_s']:.3f}", f"{secure['round_s']:.3f}", f"{ratio:.1f}"]
        row += [f"{secure['secagg_s']:.3f}", f"{secure['bytes']:.0f}"]
        row += [f"{clear['accuracy']:.4f}", f"{secure['accuracy']:.4f}"]
        print(" | ".join(map(str, row)), flush=True)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100", help="comma-separated n (default 10,100)")
    parser.add_argument("--d", type=int, default=6186, help="coordinates (default 6186)")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds per n (best)")
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's Shamir")
    parser.add_argument("--runs", action="store_true", help="also whole inline rounds")
    parser.add_argument("--rounds", type=int, default=4, help="rounds per run (--runs)")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    print(f"SecAgg+ round, d={args.d}, Flower's default settings, best of {args.repeat}")
    round_table(clients, args.d, args.repeat)
    print("\nShamir: share one node's 32-byte seed + 48-byte sk1; rebuild n seeds from k shares")
    print("n | k | t | impl | share s | combine s")
    for n in clients:
        print("\n".join(shamir_row(n, args.repeat, not args.no_flower)), flush=True)
    if args.runs:
        print(f"\nWhole inline rounds, digits cnn, all n clients per round, {args.rounds} rounds")
        runs_table(clients, args.rounds)


if __name__ == "__main__":
    main()
