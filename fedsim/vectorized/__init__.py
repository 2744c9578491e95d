"""Many clients' local training as one batched computation, for the vectorized runtime.

- :mod:`~fedsim.vectorized.plan`: each client's batches (and DP noise), drawn as it would draw
  them alone, padded into one chunk;
- :mod:`~fedsim.vectorized.steps`: one SGD or DP-SGD step of every client of a chunk;
- :mod:`~fedsim.vectorized.train`: grouping by step count, chunks, the step loop;
- :mod:`~fedsim.vectorized.memory`: the chunk size that fits the GPU;
- :mod:`~fedsim.vectorized.support`: which models can be vectorized.
"""

from __future__ import annotations

from fedsim.privacy.dp_sgd import DPSettings
from fedsim.vectorized.memory import auto_chunk_size
from fedsim.vectorized.plan import LocalTask
from fedsim.vectorized.support import unsupported_reason
from fedsim.vectorized.train import ClientOutcome, train_clients_vectorized

__all__ = [
    "ClientOutcome",
    "DPSettings",
    "LocalTask",
    "auto_chunk_size",
    "train_clients_vectorized",
    "unsupported_reason",
]
