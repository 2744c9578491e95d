"""A picture of a reconstruction: originals on top, each reconstruction below with its PSNR."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsim.errors import InvalidSettingError
from fedsim.inversion.metrics import psnr

__all__ = ["CELL_INCHES", "DPI", "save_reconstruction_grid"]

CELL_INCHES = 1.5
"""Side of one image cell of the grid, in inches."""
DPI = 100
"""Resolution of the PNG: each cell is ``CELL_INCHES * DPI`` pixels square."""


def save_reconstruction_grid(
    originals: torch.Tensor,
    reconstructions: torch.Tensor | Sequence[torch.Tensor],
    path: str | os.PathLike[str],
    titles: Sequence[str] | None = None,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> Path:
    """Write a PNG grid: one column per sample, originals in the top row.

    Each further row is one reconstruction of the batch (e.g. one per attack), already in the
    originals' order (see :func:`~fedsim.inversion.metrics.match_reconstructions`); every
    reconstructed image is titled with its PSNR against the original above it. One-channel
    images are drawn in grey, three-channel ones in colour, both mapped from ``data_range`` to
    the full intensity scale. The figure is drawn with matplotlib's Agg canvas (no display,
    no global pyplot state) at a fixed size: ``(1 + rows) * CELL_INCHES * DPI`` pixels high and
    ``B * CELL_INCHES * DPI`` wide.

    Parameters
    ----------
    originals : torch.Tensor
        The true inputs, shape ``(B, C, H, W)`` with ``C`` 1 or 3.
    reconstructions : torch.Tensor or sequence of torch.Tensor
        One batch of the same shape, or several (one row each).
    path : str or os.PathLike
        Where to write the PNG; missing parent folders are created.
    titles : sequence of str, optional
        A label per reconstruction row (default ``"reconstruction"``, numbered if several).
    data_range : tuple[float, float]
        ``(lo, hi)`` of valid inputs.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    InvalidSettingError
        Shapes differ, a channel count is not 1 or 3, or ``titles`` has the wrong length.
    """
    rows = [reconstructions] if isinstance(reconstructions, torch.Tensor) else list(reconstructions)
    if originals.ndim != 4 or originals.shape[1] not in (1, 3) or not rows:
        raise InvalidSettingError(
            f"save_reconstruction_grid needs (B, C, H, W) originals with C 1 or 3 and at least one "
            f"reconstruction, got shape {tuple(originals.shape)} and {len(rows)} reconstructions"
        )
    for row in rows:
        if row.shape != originals.shape:
            raise InvalidSettingError(
                f"reconstruction shape {tuple(row.shape)} differs from the originals' "
                f"{tuple(originals.shape)}"
            )
    if titles is None:
        titles = (
            ["reconstruction"]
            if len(rows) == 1
            else [f"reconstruction {i + 1}" for i in range(len(rows))]
        )
    titles = list(titles)
    if len(titles) != len(rows):
        raise InvalidSettingError(f"got {len(titles)} titles for {len(rows)} reconstruction rows")
    lo, hi = (float(v) for v in data_range)

    batch = originals.shape[0]
    fig = Figure(figsize=(batch * CELL_INCHES, (1 + len(rows)) * CELL_INCHES), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1 + len(rows), batch, squeeze=False)
    for r, (label, images) in enumerate([("original", originals), *zip(titles, rows, strict=True)]):
        for b in range(batch):
            ax = axes[r][b]
            _show(ax, images[b], lo, hi)
            if r > 0:
                ax.set_title(
                    f"{psnr(images[b : b + 1], originals[b : b + 1], (lo, hi)):.1f} dB", fontsize=8
                )
            if b == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.02, top=0.9, wspace=0.1, hspace=0.3)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def _show(ax: Axes, image: torch.Tensor, lo: float, hi: float) -> None:
    """Draw one ``(C, H, W)`` image on ``ax`` scaled from ``[lo, hi]`` to ``[0, 1]``."""
    pixels = ((image.detach().cpu().double() - lo) / (hi - lo)).clamp(0, 1)
    if pixels.shape[0] == 1:
        ax.imshow(pixels[0].numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    else:
        ax.imshow(pixels.permute(1, 2, 0).numpy())
    ax.set_xticks([])
    ax.set_yticks([])
