"""``lenet5``: LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, sized per input shape.

No normalisation layers, so it is Opacus-compatible as is.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.registry import MODELS

__all__ = ["LeNet5"]


@MODELS.register("lenet5")
class LeNet5(nn.Module):
    r"""Two 5×5 conv layers (6 and 16 channels), each ReLU + 2×2 max-pool, then 120-84-K.

    The first convolution is padded by 2, so a 28×28 MNIST image is seen as the 32×32 input of
    the original network: :math:`28 \to 28 \to 14 \to 10 \to 5`, i.e. 16·5·5 = 400 features
    into the 120-unit layer. A 32×32 CIFAR-10 image gives 16·6·6 = 576. Inputs must be at
    least 10×10 (the second convolution needs a 5×5 map).

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Number of output logits K.

    Examples
    --------
    >>> model = LeNet5((1, 28, 28), 10)
    >>> model(torch.zeros(2, 1, 28, 28)).shape, model.classifier[0].in_features
    (torch.Size([2, 10]), 400)

    References
    ----------
    LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition.
    Proceedings of the IEEE, 1998.
    """

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        c, h, w = input_shape
        if h < 10 or w < 10:
            raise InvalidSettingError(
                f"lenet5 needs images of at least 10×10, got {h}×{w}; use cnn or mlp"
            )
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        fh, fw = (h // 2 - 4) // 2, (w // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Linear(16 * fh * fw, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_classes)``."""
        return self.classifier(self.features(x).flatten(1))
