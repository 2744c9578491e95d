"""``fedsim plot RUN_DIR``: accuracy and loss per round as PNG files in the run directory."""

from __future__ import annotations

import os
from pathlib import Path

from fedsim.errors import ScenarioError
from fedsim.results import read_metrics

__all__ = ["plot_run"]


def plot_run(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Write ``accuracy.png`` and ``loss.png`` for a run directory; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not (run_dir / "metrics.jsonl").is_file():
        raise ScenarioError("RUN_DIR", str(run_dir), "a run directory holding metrics.jsonl")
    rows = read_metrics(run_dir)
    if not rows:
        raise ScenarioError("RUN_DIR", str(run_dir), "a run with at least one finished round")
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
