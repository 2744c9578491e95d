"""Reconstruction quality: MSE, PSNR, SSIM, label accuracy, and matching batch order.

Every function takes ``(reconstruction, original)`` batches of shape ``(B, C, H, W)`` (the
torchmetrics ``(preds, target)`` order), computes in float64 on the CPU and returns a Python
float averaged over the batch. A reconstructed batch comes out in arbitrary order: call
:func:`match_reconstructions` first, or use :func:`reconstruction_metrics`, which does.
"""

from __future__ import annotations

import math

import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics.functional.image import structural_similarity_index_measure

from fedsim.errors import InvalidSettingError
from fedsim.inversion.base import Reconstruction

__all__ = [
    "label_accuracy",
    "match_reconstructions",
    "pair_reconstructions",
    "mse",
    "psnr",
    "reconstruction_metrics",
    "ssim",
]


def _pair(
    reconstruction: torch.Tensor, original: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if reconstruction.shape != original.shape or reconstruction.ndim != 4:
        raise InvalidSettingError(
            f"metrics need two (B, C, H, W) batches of the same shape, got "
            f"{tuple(reconstruction.shape)} and {tuple(original.shape)}"
        )
    as64 = {"device": "cpu", "dtype": torch.float64}
    return reconstruction.detach().to(**as64), original.detach().to(**as64)


def _span(data_range: tuple[float, float]) -> float:
    lo, hi = (float(v) for v in data_range)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InvalidSettingError(f"metrics need a finite data_range lo < hi, got {data_range!r}")
    return hi - lo


def _per_image_mse(reconstruction: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    return ((reconstruction - original) ** 2).flatten(1).mean(dim=1)


def mse(reconstruction: torch.Tensor, original: torch.Tensor) -> float:
    r"""Mean squared error :math:`\frac1{BCHW} \sum (x'-x)^2` (= the mean of per-image MSEs).

    Examples
    --------
    >>> import torch
    >>> mse(torch.full((2, 1, 4, 4), 0.5), torch.zeros(2, 1, 4, 4))
    0.25
    """
    rec, orig = _pair(reconstruction, original)
    return float(_per_image_mse(rec, orig).mean())


def psnr(
    reconstruction: torch.Tensor,
    original: torch.Tensor,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> float:
    r"""Peak signal-to-noise ratio in dB, per image then averaged over the batch.

    .. math:: \mathrm{PSNR} = \frac1B \sum_b 10 \log_{10} \frac{R^2}{\mathrm{MSE}_b}

    where :math:`R = hi - lo` is the width of ``data_range`` and :math:`\mathrm{MSE}_b` image
    *b*'s mean squared error; ``inf`` if some image is reconstructed exactly. Equal to
    ``torchmetrics``' ``peak_signal_noise_ratio(..., data_range=R, dim=(1, 2, 3))``.

    Examples
    --------
    >>> import torch
    >>> round(psnr(torch.full((1, 1, 4, 4), 0.25), torch.zeros(1, 1, 4, 4)), 4)  # 10·log10(16)
    12.0412
    """
    rec, orig = _pair(reconstruction, original)
    span = _span(data_range)
    return float((10 * torch.log10(span**2 / _per_image_mse(rec, orig))).mean())


def ssim(
    reconstruction: torch.Tensor,
    original: torch.Tensor,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> float:
    r"""Structural similarity (Wang et al., IEEE TIP 2004), averaged over the batch.

    .. math:: \mathrm{SSIM}(x', x) = \frac{(2\mu_{x'}\mu_x + c_1)(2\sigma_{x'x} + c_2)}
        {(\mu_{x'}^2 + \mu_x^2 + c_1)(\sigma_{x'}^2 + \sigma_x^2 + c_2)}

    with local means :math:`\mu`, variances :math:`\sigma^2` and covariance :math:`\sigma_{x'x}`
    under an 11×11 Gaussian window (σ = 1.5), :math:`c_1 = (0.01 R)^2`, :math:`c_2 = (0.03 R)^2`,
    :math:`R = hi - lo`, averaged over pixels, then images. Computed by torchmetrics'
    ``structural_similarity_index_measure``; images must be at least 6×6.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> round(ssim(x, x), 6)
    1.0
    """
    rec, orig = _pair(reconstruction, original)
    if min(rec.shape[-2:]) < 6:
        raise InvalidSettingError(
            f"ssim needs images of at least 6×6 (11×11 window), got {tuple(rec.shape[-2:])}"
        )
    return float(structural_similarity_index_measure(rec, orig, data_range=_span(data_range)))


def label_accuracy(predicted: torch.Tensor, true: torch.Tensor) -> float:
    """Fraction of positions where ``predicted`` equals ``true`` (both shape ``(B,)``).

    Examples
    --------
    >>> import torch
    >>> label_accuracy(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4]))
    0.75
    """
    predicted, true = predicted.detach().cpu().reshape(-1), true.detach().cpu().reshape(-1)
    if predicted.numel() != true.numel() or true.numel() == 0:
        raise InvalidSettingError(
            f"label_accuracy needs two non-empty label vectors of one length, got "
            f"{predicted.numel()} and {true.numel()}"
        )
    return float((predicted == true).double().mean())


def match_reconstructions(reconstruction: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    r"""Pair each original with a distinct reconstruction, minimising the total MSE.

    Solves the assignment problem :math:`\min_\pi \sum_b \mathrm{MSE}(x'_{\pi(b)}, x_b)` over
    permutations :math:`\pi` with the Hungarian method
    (``scipy.optimize.linear_sum_assignment``).

    Returns
    -------
    torch.Tensor
        ``perm`` (int64, shape ``(B,)``) such that ``reconstruction[perm]`` lines up with
        ``original``.

    Examples
    --------
    >>> import torch
    >>> orig = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    >>> match_reconstructions(orig.flip(0), orig).tolist()
    [1, 0]
    """
    _pair(reconstruction, original)
    rec_index, orig_index = pair_reconstructions(reconstruction, original)
    perm = torch.empty(len(orig_index), dtype=torch.int64)
    perm[orig_index] = rec_index
    return perm


def pair_reconstructions(
    reconstruction: torch.Tensor, original: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Pair reconstructions with distinct originals, minimising the total MSE.

    The two batches may differ in size (e.g. an attack reconstructing fewer images than a
    round's clients used): min(B', B) pairs are made, by the Hungarian method on the
    :math:`B \times B'` matrix of MSE(x'_j, x_b).

    Returns
    -------
    tuple of torch.Tensor
        ``(rec_index, orig_index)``, int64: ``reconstruction[rec_index[k]]`` is paired with
        ``original[orig_index[k]]``; ``orig_index`` is increasing.

    Examples
    --------
    >>> import torch
    >>> orig = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2), 2 * torch.ones(1, 2, 2)])
    >>> [t.tolist() for t in pair_reconstructions(orig[[2, 0]], orig)]
    [[1, 0], [0, 2]]
    """
    if reconstruction.ndim != 4 or reconstruction.shape[1:] != original.shape[1:]:
        raise InvalidSettingError(
            f"pairing needs two (B, C, H, W) batches of one image shape, got "
            f"{tuple(reconstruction.shape)} and {tuple(original.shape)}"
        )
    as64 = {"device": "cpu", "dtype": torch.float64}
    rec = reconstruction.detach().to(**as64).flatten(1)
    orig = original.detach().to(**as64).flatten(1)
    cost = ((orig[:, None, :] - rec[None, :, :]) ** 2).mean(dim=2)
    rows, cols = linear_sum_assignment(cost.numpy())
    return torch.as_tensor(cols, dtype=torch.int64), torch.as_tensor(rows, dtype=torch.int64)


def reconstruction_metrics(
    original: torch.Tensor,
    labels: torch.Tensor,
    reconstruction: Reconstruction,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> dict[str, float]:
    """MSE, PSNR, SSIM and label accuracy of a reconstruction, after matching batch order.

    Parameters
    ----------
    original : torch.Tensor
        The client's true inputs, shape ``(B, C, H, W)``.
    labels : torch.Tensor
        Their true labels, shape ``(B,)``.
    reconstruction : Reconstruction
        What an attack returned.
    data_range : tuple[float, float]
        ``(lo, hi)`` of valid inputs.

    Returns
    -------
    dict[str, float]
        Keys ``mse``, ``psnr``, ``ssim`` (``nan`` for images smaller than 6×6),
        ``label_accuracy`` and ``grad_loss``.
    """
    perm = match_reconstructions(reconstruction.x, original)
    x, predicted = reconstruction.x[perm], reconstruction.labels[perm]
    small = min(original.shape[-2:]) < 6
    return {
        "mse": mse(x, original),
        "psnr": psnr(x, original, data_range),
        "ssim": math.nan if small else ssim(x, original, data_range),
        "label_accuracy": label_accuracy(predicted, labels),
        "grad_loss": reconstruction.grad_loss,
    }
