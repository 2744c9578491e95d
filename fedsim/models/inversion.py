"""``lenet_sigmoid``: the small sigmoid CNN that gradient-inversion attacks are shown on.

Gradient matching (DLG, iDLG, Inverting Gradients) differentiates the parameter gradient with
respect to the input, so the network must be twice differentiable: sigmoid activations, strided
convolutions instead of pooling, no normalisation layers.
"""

from __future__ import annotations

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.registry import MODELS

__all__ = ["LeNetSigmoid"]


def _conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length of a convolution with ``padding = kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


@MODELS.register("lenet_sigmoid")
class LeNetSigmoid(nn.Module):
    r"""Three 5×5 sigmoid conv layers (strides 2, 2, 1) and a linear head.

    The network of the DLG paper:

    .. math:: f(x) = W\,\mathrm{vec}\big(\sigma(c_3(\sigma(c_2(\sigma(c_1(x)))))))\big) + b

    where :math:`c_i` are convolutions with ``width`` channels, kernel 5, padding 2 and strides
    ``strides[i]``, :math:`\sigma` is the logistic sigmoid and :math:`W, b` the head. There is no
    pooling and no normalisation, so the parameter gradient is a smooth function of the input.
    The head is sized from ``input_shape``: 1×8×8 digits give 12·2·2 = 48 features, 3×32×32
    CIFAR 12·8·8 = 768 as in the paper.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Number of output logits.
    width : int
        Channels of every conv layer (12 in the paper).
    strides : tuple[int, int, int]
        Strides of the three conv layers.
    init_range : float or None
        If given, every weight and bias is drawn from :math:`U(-r, r)` (the DLG authors' choice,
        :math:`r = 0.5`; larger weights give larger, better-conditioned gradients). ``None``
        keeps PyTorch's default initialisation. Draws use the global torch generator, so seed
        it (``torch.manual_seed``) for a reproducible model.

    Examples
    --------
    >>> import torch
    >>> model = LeNetSigmoid((1, 8, 8), 10)
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> model.head.in_features
    48

    References
    ----------
    Zhu, Liu, Han. Deep Leakage from Gradients. NeurIPS 2019.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        width: int = 12,
        strides: tuple[int, int, int] = (2, 2, 1),
        init_range: float | None = 0.5,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise InvalidSettingError(
                f"lenet_sigmoid needs input_shape (channels, height, width), got {input_shape!r}"
            )
        if width < 1 or len(strides) != 3 or any(s < 1 for s in strides):
            raise InvalidSettingError(
                f"lenet_sigmoid needs width ≥ 1 and three strides ≥ 1, got width={width}, "
                f"strides={strides!r}"
            )
        if init_range is not None and not init_range > 0:
            raise InvalidSettingError(
                f"lenet_sigmoid needs init_range > 0 or None, got {init_range!r}"
            )
        c, h, w = input_shape
        layers: list[nn.Module] = []
        channels = c
        for stride in strides:
            layers += [nn.Conv2d(channels, width, 5, stride=stride, padding=2), nn.Sigmoid()]
            channels = width
            h, w = _conv_out(h, 5, stride), _conv_out(w, 5, stride)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width * h * w, num_classes)
        if init_range is not None:
            with torch.no_grad():
                for p in self.parameters():
                    p.uniform_(-init_range, init_range)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_classes)``."""
        return self.head(self.features(x).flatten(1))
