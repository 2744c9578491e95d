"""Pictures of the model-theft probes: the extraction curve and the watermark removal table.

Drawn with matplotlib's Agg canvas (no display, no global pyplot state), like the inversion
grids; the per-run report shows every PNG under ``RUN_DIR/<probe name>/``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedsim.extraction import CurvePoint
from fedsim.watermark import RemovalPoint

__all__ = ["save_extraction_curve", "save_removal_chart"]


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    FigureCanvasAgg(fig).print_png(str(path))
    return path


def save_extraction_curve(
    points: Sequence[CurvePoint],
    victim_accuracy: float,
    path: str | os.PathLike[str],
    title: str,
) -> Path:
    """Fidelity and accuracy of the surrogate against the query budget (log x), one PNG."""
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.add_subplot()
    queries = [p.queries for p in points]
    ax.plot(queries, [p.fidelity for p in points], marker="o", label="fidelity")
    ax.plot(queries, [p.accuracy for p in points], marker="s", label="surrogate accuracy")
    ax.axhline(victim_accuracy, color="grey", ls="--", lw=1, label="victim accuracy")
    if len(queries) > 1 and min(queries) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("queries")
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def save_removal_chart(
    points: Sequence[RemovalPoint], threshold: float, path: str | os.PathLike[str], title: str
) -> Path:
    """Watermark and clean accuracy after each removal attempt, as paired bars."""
    fig = Figure(figsize=(max(5.0, 0.8 * len(points) + 2.0), 4.2))
    ax = fig.add_subplot()
    labels = [f"{p.method}\n" + p.strength.replace(" ", "\n") for p in points]
    xs = range(len(points))
    ax.bar([x - 0.2 for x in xs], [p.watermark_accuracy for p in points], 0.4, label="watermark")
    ax.bar([x + 0.2 for x in xs], [p.clean_accuracy for p in points], 0.4, label="clean")
    ax.axhline(threshold, color="grey", ls="--", lw=1, label="owner's threshold")
    ax.set_xticks(list(xs), labels, fontsize=7)
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    return _save(fig, path)
