"""Small models for image classification: ``mlp`` and ``cnn``.

Normalisation layers are GroupNorm, never BatchNorm, so every model can be wrapped by Opacus
for DP-SGD (per-sample gradients are undefined under BatchNorm).
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.models.registry import MODELS

__all__ = ["CNN", "MLP"]


@MODELS.register("mlp")
class MLP(nn.Module):
    """Two hidden ReLU layers on the flattened image.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Number of output logits.
    hidden : int
        Width of both hidden layers.
    """

    def __init__(
        self, input_shape: tuple[int, int, int], num_classes: int, hidden: int = 128
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c * h * w, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_classes)``."""
        return self.net(x)


@MODELS.register("cnn")
class CNN(nn.Module):
    """Two 3×3 conv blocks (GroupNorm, ReLU, 2×2 max-pool) and a linear head.

    The head is sized from ``input_shape``, so the same model serves 8×8 digits, 28×28 MNIST
    and 32×32 CIFAR-10.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Number of output logits.
    width : int
        Channels of the first conv block (the second has twice as many).
    groups : int
        GroupNorm groups (must divide ``width``).
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 16,
        groups: int = 4,
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        self.features = nn.Sequential(
            nn.Conv2d(c, width, 3, padding=1),
            nn.GroupNorm(groups, width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.GroupNorm(groups, 2 * width),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * (h // 4) * (w // 4), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_classes)``."""
        return self.head(self.features(x).flatten(1))
