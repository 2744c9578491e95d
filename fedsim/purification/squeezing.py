r"""Feature squeezing (Xu, Evans and Qi, NDSS 2018): bit-depth reduction and median smoothing.

Both squeezers work on [0, 1] pixel images ``(B, C, H, W)``. REFERENCE.md notes a bug in the
reference code (a late-binding closure applied the last squeezer twice); here each squeezer
is one object and applies itself once.
"""

from __future__ import annotations

import torch

from fedsim.errors import InvalidSettingError
from fedsim.purification.base import Purifier
from fedsim.purification.registry import PURIFIERS
from fedsim.validation import require_int

__all__ = ["BitDepth", "MedianFilter", "symmetric_pad"]


@PURIFIERS.register("bit_depth")
class BitDepth(Purifier):
    r"""Reduce each pixel to ``bits`` bits: :math:`2^b` levels evenly spaced in [0, 1].

    .. math:: P(x) = \frac{\operatorname{round}\bigl(\operatorname{clip}(x, 0, 1)\,(2^b - 1)\bigr)}
        {2^b - 1}

    (Xu et al., NDSS 2018, Section 4.1). ``round`` is :func:`torch.round` (halves to even, so
    with b = 1 the pixel 0.5 maps to 0). The map is idempotent and piecewise constant: its
    gradient is zero almost everywhere (the reason BPDA exists, :mod:`fedsim.evasion.bpda`).

    Parameters
    ----------
    bits : int
        Bit depth b, 1 ≤ b ≤ 16 (8 leaves 8-bit images unchanged).

    Examples
    --------
    >>> BitDepth(bits=1)(torch.tensor([[[[0.49, 0.51, 1.2]]]])).tolist()
    [[[[0.0, 1.0, 1.0]]]]
    >>> BitDepth(bits=2)(torch.tensor([[[[0.2, 0.5, 0.9]]]])).mul(3).tolist()  # levels k/3
    [[[[1.0, 2.0, 3.0]]]]
    >>> BitDepth(bits=0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: bit_depth needs an integer bits >= 1, got 0
    """

    name = "bit_depth"

    def __init__(self, bits: int = 4) -> None:
        self.bits = require_int(self.name, "bits", bits, minimum=1)
        if self.bits > 16:
            raise InvalidSettingError(f"{self.name} needs bits <= 16, got {bits!r}")

    def purify(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Rounded to the nearest of the :math:`2^b` levels."""
        levels = float(2**self.bits - 1)
        return torch.round(x.clamp(0.0, 1.0) * levels) / levels


def symmetric_pad(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Pad the last two dimensions by mirroring with the edge repeated (``d c b a | a b c d``).

    This is SciPy's ``mode="reflect"`` (NumPy's ``"symmetric"``); PyTorch's ``"reflect"``
    leaves the edge out. Pads larger than the image are not supported.

    Examples
    --------
    >>> x = torch.tensor([[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]])
    >>> symmetric_pad(x, 2, 1)[0, 0, 2].tolist()  # a middle row: 2 1 | 1 2 3 | 3
    [2.0, 1.0, 1.0, 2.0, 3.0, 3.0]
    >>> symmetric_pad(x, 2, 1)[0, 0, :, 2].tolist()  # a column: 4 1 | 1 4 | 4
    [4.0, 1.0, 1.0, 4.0, 4.0]
    """
    for dim in (-2, -1):
        size = x.shape[dim]
        if before > size or after > size:
            raise InvalidSettingError(
                f"median_filter pads {before} before and {after} after, more than the image's "
                f"size {size}; use a smaller window"
            )
        head = x.narrow(dim, 0, before).flip(dim)
        tail = x.narrow(dim, size - after, after).flip(dim)
        x = torch.cat([head, x, tail], dim=dim)
    return x


@PURIFIERS.register("median_filter")
class MedianFilter(Purifier):
    r"""Median of each k×k window, per channel (Xu et al., NDSS 2018, Section 4.2).

    .. math:: P(x)_{c,i,j} = \operatorname{median}\{x_{c,i+u,j+v} :
        -\lfloor k/2 \rfloor \le u, v \le k - 1 - \lfloor k/2 \rfloor\}

    with the image padded symmetrically (:func:`symmetric_pad`, SciPy's ``reflect``, the mode of
    the paper's code, ``scipy.ndimage.median_filter``). For even k (the paper's 2×2 on MNIST)
    the window is SciPy's (one more row/column before the centre than after) and the median is
    the upper one, the element of rank :math:`\lfloor k^2/2 \rfloor` (0-based) as in SciPy.

    Parameters
    ----------
    size : int
        Window side k ≥ 1 (1 is the identity).

    Examples
    --------
    >>> salt = torch.full((1, 1, 3, 3), 0.2)
    >>> salt[0, 0, 1, 1] = 1.0
    >>> MedianFilter(size=3)(salt).unique().tolist()  # the salt pixel is gone
    [0.20000000298023224]
    >>> MedianFilter(size=0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: median_filter needs an integer size >= 1, got 0
    """

    name = "median_filter"

    def __init__(self, size: int = 2) -> None:
        self.size = require_int(self.name, "size", size, minimum=1)

    def purify(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The rank-⌊k²/2⌋ element of each padded k×k window."""
        k = self.size
        padded = symmetric_pad(x, k // 2, (k - 1) // 2)
        windows = padded.unfold(2, k, 1).unfold(3, k, 1).flatten(-2)  # (B, C, H, W, k*k)
        return windows.kthvalue(k * k // 2 + 1, dim=-1).values
