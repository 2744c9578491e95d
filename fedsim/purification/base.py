"""What every purifier shares: ``purifier(x, generator=None) → x'``, both in [0, 1] pixels.

A purifier is a callable class: ``__init__`` validates its settings (raising
:class:`~fedsim.errors.InvalidSettingError`), ``__call__`` maps a batch ``(B, C, H, W)`` of
[0, 1] pixel images (:mod:`fedsim.evasion.pixel_space`) to purified images of the same shape.
A randomized purifier (``randomized = True``) draws from ``generator``; a deterministic one
ignores it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from fedsim.errors import InvalidSettingError

__all__ = ["Purifier"]


class Purifier(ABC):
    """A test-time input transformation ``P: [0, 1]^d → [0, 1]^d`` applied before the classifier."""

    name: str = "purifier"
    randomized: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Purified images, the shape of ``x`` ``(B, C, H, W)``."""
        if x.dim() != 4:
            raise InvalidSettingError(
                f"{self.name} purifies images of shape (B, C, H, W), got {tuple(x.shape)}"
            )
        return self.purify(x, generator)

    @abstractmethod
    def purify(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The transformation proper, on a checked batch."""

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"
