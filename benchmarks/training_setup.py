"""The local training both workloads of ``throughput.py`` give every client, and the seed.

Each client trains ``LOCAL_EPOCHS`` epoch of SGD (batch ``BATCH_SIZE``, learning rate ``LR``,
momentum ``MOMENTUM``); ``SEED`` seeds the scenarios and the bare loop's shuffles. A leaf
module, so that :mod:`throughput` and :mod:`large_workload` share it without importing each
other.
"""

from __future__ import annotations

from typing import Any

BATCH_SIZE, LR, MOMENTUM, SEED, LOCAL_EPOCHS = 32, 0.05, 0.9, 0, 1


def clients_block(num_clients: int) -> dict[str, Any]:
    """The scenario's ``clients`` block: every client, 1 epoch of SGD with momentum."""
    return {
        "per_round": num_clients,
        "local_epochs": LOCAL_EPOCHS,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "momentum": MOMENTUM,
    }
