"""The reliability diagram as a PNG (matplotlib's Agg backend, imported lazily)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from fedsim.evasion.calibration import ReliabilityDiagram

__all__ = ["plot_reliability"]


def plot_reliability(
    diagrams: ReliabilityDiagram | Mapping[str, ReliabilityDiagram],
    path: str | os.PathLike[str],
    title: str | None = None,
) -> Path:
    """Draw per-bin accuracy against confidence (Guo et al., ICML 2017, Fig. 1); save a PNG.

    Each diagram (e.g. ``{"clean": ..., "adversarial": ...}``: the same samples clean and
    under attack) is one series of bars, side by side within each confidence bin: a bar is
    the bin's accuracy, its black tick the bin's mean confidence, so the gap between them is
    the bin's miscalibration. The diagonal is perfect calibration. The legend names each
    series with its ECE; a single diagram is labelled ``predictions``.

    Examples
    --------
    >>> import tempfile, torch
    >>> from fedsim.evasion.calibration import reliability_diagram
    >>> d = reliability_diagram(torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([0, 0]))
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     png = plot_reliability({"clean": d, "adversarial": d}, Path(tmp) / "rel.png")
    ...     png.stat().st_size > 0
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if isinstance(diagrams, ReliabilityDiagram):
        diagrams = {"predictions": diagrams}
    if not diagrams:
        raise ValueError("plot_reliability needs at least one diagram, got none")
    path = Path(path)
    fig, ax = plt.subplots(figsize=(5, 5.6))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect calibration")
    share = 1 / len(diagrams)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, diagram) in enumerate(diagrams.items()):
        width = (diagram.edges[1] - diagram.edges[0]) * share
        bins = [
            (left + k * width, acc, conf)
            for left, acc, conf in zip(
                diagram.edges[:-1], diagram.accuracy, diagram.confidence, strict=True
            )
            if acc is not None and conf is not None
        ]
        colour = ["tab:blue", "tab:red"][k] if k < 2 else colours[k % len(colours)]
        label = f"{name} (ECE {diagram.ece:.3f}, n = {sum(diagram.count)})"
        ax.bar(
            [b[0] for b in bins],
            [b[1] for b in bins],
            width=width,
            align="edge",
            color=colour,
            alpha=0.75,
            edgecolor="black",
            lw=0.5,
            label=label,
        )
        ax.hlines(
            [b[2] for b in bins],
            [b[0] for b in bins],
            [b[0] + width for b in bins],
            color="black",
            lw=1.5,
            label="mean confidence in the bin" if k == 0 else None,
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(title or "reliability diagram")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
