"""Time a whole in-memory SecAgg+ round against the plain sum of the same vectors.

Usage::

    python benchmarks/secagg.py                    # n = 10 and 100 clients, d = 6186
    python benchmarks/secagg.py --clients 10,50 --d 1000 --repeat 3
    python benchmarks/secagg.py --no-flower        # skip Flower's Shamir in the micro table

``d = 6186`` is the digits ``cnn`` model's parameter count. For each n the script draws n
float vectors, times :func:`fedsim.secagg.secure_sum` with Flower's default SecAgg+ settings
(``num_shares=0.5``, ``reconstruction_threshold=0.6``, ``c = 8``) and ``np.sum`` of the same
vectors, and prints the round's seconds per stage (best of ``--repeat`` rounds). A second
table times Shamir secret sharing alone at the cohort's ``k`` and ``t``: sharing one node's
secrets (its 32-byte seed and its 48-byte ``sk1``), and rebuilding ``n`` seeds from ``k`` shares
each (the server's unmask stage when no node drops): :mod:`fedsim.secagg.shamir` against
Flower's ``create_shares``/``combine_shares`` (pycryptodome, GF(2^128)). Nothing here is a
timed test.
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


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="10,100", help="comma-separated n (default 10,100)")
    parser.add_argument("--d", type=int, default=6186, help="coordinates (default 6186)")
    parser.add_argument("--repeat", type=int, default=1, help="timed rounds per n (best)")
    parser.add_argument("--no-flower", action="store_true", help="skip Flower's Shamir")
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    print(f"SecAgg+ round, d={args.d}, Flower's default settings, best of {args.repeat}")
    round_table(clients, args.d, args.repeat)
    print("\nShamir: share one node's 32-byte seed + 48-byte sk1; rebuild n seeds from k shares")
    print("n | k | t | impl | share s | combine s")
    for n in clients:
        print("\n".join(shamir_row(n, args.repeat, not args.no_flower)), flush=True)


if __name__ == "__main__":
    main()
