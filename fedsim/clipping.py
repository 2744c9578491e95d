"""L2 clipping of update rows, shared by robust rules (norm bounding, FLAME, SignGuard) and DP.

:func:`clip_factors` gives each row's factor min(1, M/‖Δᵢ‖); :func:`clip_to_norm` applies it.
"""

from __future__ import annotations

import torch

__all__ = ["clip_factors", "clip_to_norm"]


def clip_to_norm(updates: torch.Tensor, max_norm: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each row to L2 norm ≤ ``max_norm``: Δᵢ·min(1, M/‖Δᵢ‖); also return the norms.

    Rows already within the bound (zero rows included) are left unchanged.

    Examples
    --------
    >>> u = torch.tensor([[3.0, 4.0], [0.3, 0.4]], dtype=torch.float64)
    >>> clipped, norms = clip_to_norm(u, 1.0)
    >>> clipped.round(decimals=12).tolist(), norms.tolist()
    ([[0.6, 0.8], [0.3, 0.4]], [5.0, 0.5])
    """
    norms = torch.linalg.vector_norm(updates, dim=1)
    return updates * clip_factors(norms, max_norm)[:, None], norms


def clip_factors(norms: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Return min(1, M/‖Δᵢ‖) for each norm (1 for zero norms).

    Examples
    --------
    >>> clip_factors(torch.tensor([5.0, 0.5, 0.0], dtype=torch.float64), 1.0).tolist()
    [0.2, 1.0, 1.0]
    """
    safe = norms.clamp_min(torch.finfo(norms.dtype).tiny)
    return torch.where(norms > max_norm, max_norm / safe, 1.0)
