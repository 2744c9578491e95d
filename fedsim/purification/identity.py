"""The ``none`` purifier: the identity, the baseline every purifier is compared with."""

from __future__ import annotations

import torch

from fedsim.purification.base import Purifier
from fedsim.purification.registry import PURIFIERS

__all__ = ["Identity"]


@PURIFIERS.register("none")
class Identity(Purifier):
    r"""No purification: :math:`P(x) = x` (the same tensor is returned).

    Examples
    --------
    >>> x = torch.rand(1, 1, 2, 2)
    >>> Identity()(x) is x
    True
    """

    name = "none"

    def purify(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """``x`` itself."""
        return x
