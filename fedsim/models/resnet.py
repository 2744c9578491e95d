"""``resnet``: the CIFAR ResNet (He et al., 2016, §4.2) with GroupNorm instead of BatchNorm.

BatchNorm's running statistics drift apart across non-IID clients and make per-sample
gradients undefined (no DP-SGD); GroupNorm has neither problem (Hsieh et al., ICML 2020), so
the network is Opacus-compatible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models.registry import MODELS

__all__ = ["BasicBlock", "ResNet"]


class BasicBlock(nn.Module):
    """Two 3×3 conv–GroupNorm layers with an identity (or 1×1 projection) shortcut.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels in and out.
    stride : int
        Stride of the first convolution (2 halves the map).
    groups : int
        GroupNorm groups (must divide ``out_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.GroupNorm(groups, out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``relu(F(x) + shortcut(x))``."""
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


@MODELS.register("resnet")
class ResNet(nn.Module):
    r"""ResNet-(6n+2) for small images: a 3×3 stem, three stages of n blocks, pool, linear.

    Stages have ``width``, 2·``width`` and 4·``width`` channels (16, 32, 64 in the paper); the
    second and third halve the map. ``depth`` = 6n + 2 counts the weighted layers: 8, 14, 20,
    32, 44, 56, 110. Global average pooling makes the head independent of the input size, so
    28×28 grey and 32×32 colour images both work.

    Parameters
    ----------
    input_shape : tuple[int, int, int]
        ``(channels, height, width)`` of one sample.
    num_classes : int
        Number of output logits.
    depth : int
        6n + 2 with n ≥ 1 (default 8: one block per stage, cheap on a CPU; 20 is the
        usual choice for CIFAR-10 in federated learning papers).
    width : int
        Channels of the first stage.
    groups : int
        GroupNorm groups in every layer (2 as in Hsieh et al.); must divide ``width``.

    Examples
    --------
    >>> model = ResNet((3, 32, 32), 10, depth=8)
    >>> model(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
    >>> sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules()) + 1
    8

    References
    ----------
    He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
    Wu, He. Group Normalization. ECCV 2018.
    Hsieh, Phanishayee, Mutlu, Gibbons. The Non-IID Data Quagmire of Decentralized Machine
    Learning. ICML 2020.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        num_classes: int,
        depth: int = 8,
        width: int = 16,
        groups: int = 2,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise InvalidSettingError(
                f"resnet needs depth = 6n + 2 with n ≥ 1 (8, 14, 20, 32, ...), got {depth}"
            )
        if width < 1 or groups < 1 or width % groups != 0:
            raise InvalidSettingError(
                f"resnet needs groups ≥ 1 dividing width ≥ 1, got width={width}, groups={groups}"
            )
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False),
            nn.GroupNorm(groups, width),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(3):
            out = width * 2**stage
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(channels, out, stride, groups))
                channels = out
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(batch, num_classes)``."""
        features = self.blocks(self.stem(x))
        return self.head(features.mean(dim=(2, 3)))
