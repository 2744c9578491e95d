"""Model parameters as flat vectors: read, write, check.

The global model travels as one float32 vector and a client's update Δ = w_local − w_global
as one float64 vector (the exact difference of two float32 vectors); how they are encoded in
Flower messages is :mod:`fedsim.protocol`'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["all_finite", "flat_params", "load_flat_params"]


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every entry of ``tensor`` is finite (no NaN, no ±Inf).

    On the CPU NumPy's ``isfinite`` is used: torch's measured 10× slower there (0.9 ms against
    0.09 ms for a 50 × 6186 float64 update matrix, one thread).

    Examples
    --------
    >>> all_finite(torch.tensor([1.0, -2.0])), all_finite(torch.tensor([1.0, float("nan")]))
    (True, False)
    """
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())


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
