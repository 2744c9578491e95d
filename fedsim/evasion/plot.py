"""The reliability diagram as a PNG (matplotlib's Agg backend, imported lazily)."""

from __future__ import annotations

import os
from pathlib import Path

from fedsim.evasion.calibration import ReliabilityDiagram

__all__ = ["plot_reliability"]


def plot_reliability(
    diagram: ReliabilityDiagram, path: str | os.PathLike[str], title: str | None = None
) -> Path:
    """Draw per-bin accuracy against confidence (Guo et al., ICML 2017, Fig. 1); save a PNG.

    Bars are each bin's accuracy, drawn over its width; the gap to the diagonal (perfect
    calibration) is shaded, and the title carries the ECE.

    Examples
    --------
    >>> import tempfile, torch
    >>> from fedsim.evasion.calibration import reliability_diagram
    >>> d = reliability_diagram(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     plot_reliability(d, Path(tmp) / "rel.png").stat().st_size > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    lefts = diagram.edges[:-1]
    width = diagram.edges[1] - diagram.edges[0]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for left, acc, conf in zip(lefts, diagram.accuracy, diagram.confidence, strict=True):
        if acc is None or conf is None:
            continue
        ax.bar(left, acc, width=width, align="edge", color="tab:blue", edgecolor="black", lw=0.5)
        low, high = sorted((acc, conf))
        ax.bar(left, high - low, bottom=low, width=width, align="edge", color="tab:red", alpha=0.3)
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ece = f"ECE = {diagram.ece:.3f}"
    ax.set_title(f"{title}: {ece}" if title else ece)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
