"""A round's update matrix in memory that is reused from round to round when nobody holds it.

A fresh (1,000 × 61,706) float64 matrix (494 MB) is new pages to the kernel: filling it costs
a page fault per 4 KiB, measured 0.35 s on the CI machine against 0.06 s to fill the same
matrix a second time (glibc serves allocations this large with ``mmap`` and returns them on
free, so every round would pay the faults again). :class:`ReusableMatrix` hands out the same
memory each round — but only when no tensor or array still refers to it (a rule or probe that
kept a row of last round's updates): then it allocates a fresh matrix, and the old one stays
with whoever holds it. Correctness never depends on the reuse.
"""

from __future__ import annotations

import torch

__all__ = ["ReusableMatrix"]


class ReusableMatrix:
    """Hands out an ``(n, d)`` matrix, reusing the previous one's memory when it is unshared.

    Examples
    --------
    >>> buffers = ReusableMatrix()
    >>> a = buffers.take(3, 4, torch.float64)
    >>> b = buffers.take(2, 4, torch.float64)  # ``a`` is still alive: fresh memory
    >>> a.data_ptr() == b.data_ptr()
    False
    >>> del a, b
    >>> c = buffers.take(2, 4, torch.float64)
    >>> d = buffers.take(3, 4, torch.float64)  # ``c`` still alive again
    >>> c.data_ptr() != d.data_ptr()
    True
    """

    def __init__(self) -> None:
        self._matrix: torch.Tensor | None = None

    def take(
        self, rows: int, cols: int, dtype: torch.dtype, device: torch.device | None = None
    ) -> torch.Tensor:
        """An uninitialised ``(rows, cols)`` matrix of ``dtype`` on ``device``."""
        device = device or torch.device("cpu")
        held = self._matrix
        if (
            held is not None
            and held.dtype == dtype
            and held.device == device
            and held.shape[1] == cols
            and held.shape[0] >= rows
            and _unshared(held)
        ):
            return held[:rows]
        self._matrix = None  # let an unshared old matrix go before the new one is allocated
        self._matrix = torch.empty(rows, cols, dtype=dtype, device=device)
        return self._matrix[:rows]

    def release(self) -> None:
        """Drop the held memory (the next :meth:`take` allocates)."""
        self._matrix = None


def _unshared(matrix: torch.Tensor) -> bool:
    """Whether no tensor or array but ``matrix`` refers to its memory.

    ``torch._C._storage_Use_Count`` counts the references to a storage: ``matrix`` and the
    temporary ``UntypedStorage`` object of the query make 2; every view (a row handed to the
    server, a NumPy array over it) adds one. Without that function nothing is reused.
    """
    use_count = getattr(torch._C, "_storage_Use_Count", None)
    if use_count is None:
        return False
    return int(use_count(matrix.untyped_storage()._cdata)) <= 2
