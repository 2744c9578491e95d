"""PNG figures for ``fedsim plot RUN_DIR`` and for the sweep report.

``plot_run`` draws accuracy and loss per round of one run; ``plot_curves``, ``plot_heatmap`` and
``plot_bars`` draw the sweep report's figures from data prepared by
:mod:`fedsim.reporting.sweep_report`.

Everything draws with matplotlib's Agg backend, imported lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedsim.results import finished_rounds

__all__ = ["Curve", "plot_bars", "plot_curves", "plot_heatmap", "plot_panels", "plot_run"]


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``accuracy.png`` and ``loss.png`` for a run directory; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = finished_rounds(run_dir)
    rounds = [r["round"] for r in rows]
    written = []
    for key, label in (("accuracy", "test accuracy"), ("loss", "test loss")):
        fig, ax = plt.subplots(figsize=(6, 4))
        values = [r.get(key) for r in rows]
        ax.plot(rounds, [v if v is not None else float("nan") for v in values], marker="o", ms=3)
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.set_title(f"{run_dir.name}: {label}")
        ax.grid(alpha=0.3)
        if key == "accuracy":
            ax.set_ylim(0, 1)
        path = run_dir / f"{key}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written


Curve = tuple[list[int], list[float], list[float | None]]
"""Rounds, mean and standard deviation (``None`` where fewer than two runs) of one series."""


def _pyplot():  # noqa: ANN202  (matplotlib.pyplot, imported lazily with the Agg backend)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    panels: dict[str, dict[str, Curve]], path: Path, ylabel: str = "test accuracy"
) -> Path:
    """One panel per key of ``panels``, one line (mean, ± std band) per series; save to ``path``.

    Parameters
    ----------
    panels : dict
        Panel title → series label → (rounds, mean, std).
    path : Path
        The PNG file to write.
    ylabel : str
        The y-axis label (values are plotted on [0, 1]).
    """
    plt = _pyplot()
    cols = min(4, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols + 1.8, 3.0 * rows), sharey=True, squeeze=False
    )
    for ax, (title, series) in zip(axes.flat, panels.items(), strict=False):
        for label, (rounds, mean, std) in series.items():
            (line,) = ax.plot(rounds, mean, label=label, lw=1.4)
            if any(s is not None for s in std):
                lo = [m - (s or 0.0) for m, s in zip(mean, std, strict=True)]
                hi = [m + (s or 0.0) for m, s in zip(mean, std, strict=True)]
                ax.fill_between(rounds, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("round")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / (3.6 * cols + 1.8), 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_heatmap(
    values: list[list[float | None]],
    row_labels: list[str],
    col_labels: list[str],
    path: Path,
    title: str,
    higher_is_better: bool = True,
) -> Path:
    """A rows × columns heatmap on [0, 1] with each cell's value written in it.

    Parameters
    ----------
    values : list of lists
        ``values[i][j]`` for row ``i`` and column ``j`` (``None``: no result, left blank).
    row_labels, col_labels : list of str
        Tick labels.
    path : Path
        The PNG file to write.
    title : str
        Figure title.
    higher_is_better : bool
        Colour scale direction (good cells are always the same colour).
    """
    import numpy as np

    plt = _pyplot()
    data = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(
        figsize=(1.0 + 0.9 * len(col_labels), 1.0 + 0.45 * len(row_labels) + 0.6)
    )
    cmap = "viridis" if higher_is_better else "viridis_r"
    image = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if value is not None:
                good = value if higher_is_better else 1.0 - value
                colour = "black" if good > 0.6 else "white"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bars(
    labels: list[str],
    values: list[float],
    errors: list[float | None],
    path: Path,
    title: str,
    ylabel: str,
    notes: list[str] | None = None,
) -> Path:
    """A bar per label with an error bar (where given) and an optional note on each bar."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.7 * len(labels)), 3.8))
    positions = list(range(len(labels)))
    ax.bar(
        positions,
        values,
        yerr=[e or 0.0 for e in errors],
        capsize=3,
        color="#4c72b0",
        alpha=0.85,
    )
    for x, value, error, note in zip(
        positions, values, errors, notes or [""] * len(labels), strict=True
    ):
        if note:
            y = value + (error or 0.0) + 0.02
            ax.text(x, y, note, ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(positions, labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.3 if notes else 1.0)
    ax.set_yticks([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


Series = list[tuple[float, float]]
"""``(x, y)`` points of one line, in drawing order."""


def plot_tradeoff(
    series: dict[str, Series],
    path: Path,
    xlabel: str,
    ylabel: str,
    title: str,
    log_x: bool = False,
) -> Path:
    """One line with markers per series (e.g. accuracy against ε, one per clip norm)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    for label, points in series.items():
        ordered = sorted(points)
        ax.plot([x for x, _ in ordered], [y for _, y in ordered], marker="o", ms=4, label=label)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    if len(series) > 1 or next(iter(series), ""):
        ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_panels(
    panels: dict[str, dict[str, Series]],
    path: Path,
    xlabel: str,
    log_y: tuple[str, ...] = (),
) -> Path:
    """Side-by-side panels sharing the x axis, one line with markers per series in each.

    ``panels`` maps a panel's y label to its series (label → points); panels named in
    ``log_y`` get a log y axis (non-positive values are left out there).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (ylabel, series) in zip(axes[0], panels.items(), strict=True):
        for label, points in series.items():
            ordered = sorted(p for p in points if ylabel not in log_y or p[1] > 0)
            ax.plot([x for x, _ in ordered], [y for _, y in ordered], marker="o", ms=4, label=label)
        if ylabel in log_y:
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
