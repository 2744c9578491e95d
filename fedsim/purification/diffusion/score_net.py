r"""A small U-Net with a time embedding: the noise predictor :math:`\varepsilon_\theta(x_t, t)`.

The score of the VP-SDE's marginal is :math:`\nabla_x \log p_t(x) \approx
-\varepsilon_\theta(x, t) / \sqrt{1 - \bar\alpha(t)}` (Ho et al., NeurIPS 2020; Song et al.,
ICLR 2021, Section 3.3): the network predicts the noise, which keeps its output of unit scale at
every t. Sized for small images (8×8 digits, 28×28, 32×32): residual blocks with GroupNorm and
SiLU, the sinusoidal time embedding of DDPM added to every block, and up to two 2× down/up
sampling levels with skip connections (taken while the side stays even and ≥ 8).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fedsim.validation import require_int

__all__ = ["ScoreNet", "time_embedding"]


def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    r"""DDPM's sinusoidal embedding of :math:`1000\,t`: ``(B,)`` → ``(B, dim)``, dim even.

    .. math:: e_{2i} = \sin(1000\,t\,\omega_i), \; e_{2i+1} = \cos(1000\,t\,\omega_i), \quad
        \omega_i = 10000^{-i/(d/2)}.

    Examples
    --------
    >>> time_embedding(torch.tensor([0.0]), 4).tolist()
    [[0.0, 0.0, 1.0, 1.0]]
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = 1000.0 * t.reshape(-1, 1).to(freqs.dtype) * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class _ResBlock(nn.Module):
    """conv(SiLU(GN(h))) + time, conv(SiLU(GN(·))), plus the (1×1-projected) input."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.act = nn.SiLU()

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.act(self.norm1(h))) + self.time(emb)[:, :, None, None]
        out = self.conv2(self.act(self.norm2(out)))
        return out + self.skip(h)


class ScoreNet(nn.Module):
    r"""The noise predictor :math:`\varepsilon_\theta(x, t)` for images ``(B, C, H, W)``.

    Parameters
    ----------
    channels : int
        Image channels C.
    size : int
        The smaller image side (decides the down-sampling levels: 8 → one, 28 or 32 → two).
    width : int
        Feature channels at full resolution (doubled per level), ≥ 8.

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> net = ScoreNet(channels=1, size=8, width=16)
    >>> net(torch.zeros(2, 1, 8, 8), torch.tensor([0.1, 0.5])).shape
    torch.Size([2, 1, 8, 8])
    >>> net.levels, ScoreNet(channels=3, size=32, width=16).levels
    (1, 2)
    """

    def __init__(self, channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        channels = require_int("score network", "channels", channels, minimum=1)
        size = require_int("score network", "size", size, minimum=1)
        width = require_int("score network", "width", width, minimum=8)
        self.levels = 0
        while self.levels < 2 and size % 2 == 0 and size >= 8:
            self.levels, size = self.levels + 1, size // 2
        self.emb_dim = 4 * width
        self.embed = nn.Sequential(
            nn.Linear(width, self.emb_dim), nn.SiLU(), nn.Linear(self.emb_dim, self.emb_dim)
        )
        self.width = width
        self.stem = nn.Conv2d(channels, width, 3, padding=1)
        widths = [width * 2**i for i in range(self.levels + 1)]
        self.down = nn.ModuleList([_ResBlock(widths[0], widths[0], self.emb_dim)])
        self.pool = nn.ModuleList()
        for i in range(self.levels):
            self.pool.append(nn.Conv2d(widths[i], widths[i], 3, stride=2, padding=1))
            self.down.append(_ResBlock(widths[i], widths[i + 1], self.emb_dim))
        self.mid = _ResBlock(widths[-1], widths[-1], self.emb_dim)
        self.up = nn.ModuleList()
        self.unpool = nn.ModuleList()
        for i in reversed(range(self.levels)):
            self.unpool.append(nn.Upsample(scale_factor=2, mode="nearest"))
            self.up.append(_ResBlock(widths[i + 1] + widths[i], widths[i], self.emb_dim))
        self.head = nn.Sequential(_norm(width), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise, the shape of ``x``; ``t`` a scalar or ``(B,)`` in [0, 1]."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])
        emb = self.embed(time_embedding(t, self.width).to(x.dtype))
        h = self.down[0](self.stem(x), emb)
        skips = [h]
        for pool, block in zip(self.pool, self.down[1:], strict=True):
            h = block(pool(h), emb)
            skips.append(h)
        h = self.mid(skips.pop(), emb)
        for unpool, block in zip(self.unpool, self.up, strict=True):
            skip = skips.pop()
            h = unpool(h)[..., : skip.shape[-2], : skip.shape[-1]]
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.head(h)
