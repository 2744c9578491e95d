"""Model parameters as flat vectors: read, write, check.

The global model travels as one float32 vector and a client's update Δ = w_local − w_global
as one float64 vector (the exact difference of two float32 vectors); how they are encoded in
Flower messages is :mod:`fedsim.protocol`'s job.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["all_finite", "finite_rows", "flat_params", "load_flat_params"]


def all_finite(tensor: torch.Tensor) -> bool:
    """Whether every entry of ``tensor`` is finite (no NaN, no ±Inf).

    A sum is finite only if every term is (a NaN or ±Inf term makes it NaN or ±Inf), so a
    finite sum settles it in one read of the values; only a non-finite sum (a non-finite
    entry, or finite entries whose sum overflows) is checked entry by entry, on the CPU with
    NumPy (torch's ``isfinite`` measured 10× slower there). The entry-wise check also builds
    a boolean copy (62 MB for a 1,000 × 61,706 update matrix), which the sum avoids.

    Examples
    --------
    >>> all_finite(torch.tensor([1.0, -2.0])), all_finite(torch.tensor([1.0, float("nan")]))
    (True, False)
    >>> all_finite(torch.tensor([1e308, 1e308], dtype=torch.float64))  # the sum overflows
    True
    """
    tensor = tensor.detach()
    if tensor.numel() == 0 or bool(torch.isfinite(_sum(tensor))):
        return True
    if tensor.device.type == "cpu" and tensor.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(tensor.numpy()).all())
    return bool(torch.isfinite(tensor).all())


def finite_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Which rows of an ``(n, d)`` float matrix are entirely finite: a boolean ``(n,)`` tensor.

    Row sums first (one read of the matrix, see :func:`all_finite`); only rows whose sum is not
    finite are checked entry by entry.

    Examples
    --------
    >>> finite_rows(torch.tensor([[1.0, 2.0], [float("inf"), 0.0], [3e38, 3e38]]))
    tensor([ True, False,  True])
    """
    matrix = matrix.detach()
    finite = torch.isfinite(_row_sums(matrix))
    for row in (~finite).nonzero().flatten().tolist():
        finite[row] = all_finite(matrix[row])
    return finite


def _row_sums(matrix: torch.Tensor) -> torch.Tensor:
    """Row sums of a 2-D float tensor, as a matrix–vector product.

    BLAS reads a contiguous matrix once: measured 18 µs against ``sum(dim=1)``'s 26 µs per
    61,706-value float64 row.
    """
    if matrix.is_contiguous() and matrix.shape[1] > 0:
        return matrix @ torch.ones(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
    return matrix.sum(dim=1)


def _sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of all entries (of a matrix's row sums; see :func:`_row_sums`)."""
    return _row_sums(tensor).sum() if tensor.dim() == 2 else tensor.sum()


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one detached CPU vector."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])


def load_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a flat vector (any float dtype) into ``model``'s parameters, in place.

    Raises
    ------
    ValueError
        The vector's length is not the model's parameter count (nothing is copied then).
    """
    size = sum(p.numel() for p in model.parameters())
    if size != flat.numel():
        raise ValueError(f"vector has {flat.numel()} values, model has {size} parameters")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            n = p.numel()
            p.copy_(flat[offset : offset + n].view_as(p).to(device=p.device, dtype=p.dtype))
            offset += n
