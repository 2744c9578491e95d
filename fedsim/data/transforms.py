"""Tensor transforms for image datasets: per-channel normalisation and CIFAR augmentation.

Written in plain torch (no torchvision), on whole batches ``(B, C, H, W)``. Every random draw
comes from an explicit :class:`torch.Generator`, so a client's augmented batches are a
function of the run's seed, the round and the client id.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from fedsim.errors import InvalidSettingError

__all__ = ["Augment", "RandomCropFlip", "normalize"]

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
"""A training-time augmentation: ``augment(x, generator) -> x'`` with the shape of ``x``."""


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    r"""Standardise each channel: :math:`x'_{c} = (x_{c} - \mu_c) / \sigma_c`.

    Parameters
    ----------
    x : Tensor
        Images ``(N, C, H, W)`` with values in [0, 1].
    mean, std : sequence of float
        :math:`\mu_c` and :math:`\sigma_c > 0`, one per channel.

    Returns
    -------
    Tensor
        The standardised images, float32.

    Examples
    --------
    >>> normalize(torch.tensor([[[[0.0, 1.0]]]]), [0.5], [0.25]).tolist()
    [[[[-2.0, 2.0]]]]
    """
    if len(mean) != x.shape[1] or len(std) != x.shape[1] or min(std) <= 0:
        raise InvalidSettingError(
            f"normalize needs one mean and one std > 0 per channel ({x.shape[1]}), "
            f"got mean={tuple(mean)}, std={tuple(std)}"
        )
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return x.to(torch.float32, copy=True).sub_(m).div_(s)


class RandomCropFlip:
    r"""Random crop after padding, then a random horizontal flip, sample by sample.

    The standard CIFAR-10 training augmentation (He et al., CVPR 2016, §4.2): each image is
    padded by ``padding`` pixels on every side with ``fill`` (per channel; the normalised value
    of a black pixel, as torchvision pads before normalising), an ``H × W`` window is cut at an
    offset :math:`(i, j) \sim U\{0..2p\}^2`, and with probability 1/2 it is mirrored left–right.

    Parameters
    ----------
    padding : int
        :math:`p \ge 0`, pixels of padding on each side.
    flip : bool
        Mirror half of the images horizontally.
    fill : sequence of float
        Padding value per channel (one value is broadcast to all channels).

    Examples
    --------
    >>> aug = RandomCropFlip(padding=0, flip=False)
    >>> x = torch.arange(8.0).view(2, 1, 2, 2)
    >>> torch.equal(aug(x, torch.Generator().manual_seed(0)), x)
    True

    References
    ----------
    He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016.
    """

    def __init__(self, padding: int = 4, flip: bool = True, fill: Sequence[float] = (0.0,)) -> None:
        if padding < 0:
            raise InvalidSettingError(f"random crop needs padding ≥ 0, got {padding}")
        if len(fill) < 1:
            raise InvalidSettingError("random crop needs at least one fill value")
        self.padding = int(padding)
        self.flip = bool(flip)
        self.fill = tuple(float(v) for v in fill)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``(B, C, H, W)``; draws come from ``generator`` (CPU)."""
        b, c, h, w = x.shape
        if len(self.fill) not in (1, c):
            raise InvalidSettingError(
                f"random crop has {len(self.fill)} fill values for {c} channels; give 1 or {c}"
            )
        p = self.padding
        offsets = torch.randint(0, 2 * p + 1, (2, b), generator=generator).to(x.device)
        mirror = torch.rand(b, generator=generator).to(x.device) < 0.5
        if p > 0:
            fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
            padded = fill.expand(c).view(1, c, 1, 1).repeat(b, 1, h + 2 * p, w + 2 * p)
            padded[:, :, p : p + h, p : p + w] = x
            rows = offsets[0].view(b, 1) + torch.arange(h, device=x.device)  # (B, H)
            cols = offsets[1].view(b, 1) + torch.arange(w, device=x.device)  # (B, W)
            batch = torch.arange(b, device=x.device).view(b, 1, 1)
            x = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]
            x = x.permute(0, 3, 1, 2)
        if self.flip:
            x = torch.where(mirror.view(b, 1, 1, 1), x.flip(-1), x)
        return x.contiguous()

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip}, fill={self.fill})"
