"""Model parameters as flat vectors, and their Flower ``ArrayRecord`` form.

The global model travels as one float32 vector; a client's update Δ = w_local − w_global
travels as one float64 vector (the exact difference of two float32 vectors), so distances and
norms on the server are computed on exact deltas.
"""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import Array, ArrayRecord
from torch import nn

__all__ = [
    "flat_params",
    "from_array_record",
    "load_flat_params",
    "to_array_record",
]


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one detached CPU vector."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def load_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector (any float dtype) into ``model``'s parameters, in place."""
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p).to(device=p.device, dtype=p.dtype))
            offset += n
    if offset != flat.numel():
        raise ValueError(f"vector has {flat.numel()} values, model has {offset} parameters")


def to_array_record(key: str, vector: torch.Tensor) -> ArrayRecord:
    """Wrap a flat vector as a one-array ``ArrayRecord``."""
    return ArrayRecord({key: Array(np.ascontiguousarray(vector.detach().cpu().numpy()))})


def from_array_record(record: ArrayRecord, key: str) -> torch.Tensor:
    """The flat vector stored under ``key`` (raises ``KeyError`` if absent)."""
    return torch.from_numpy(record[key].numpy().copy())
