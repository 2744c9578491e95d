"""Live progress display (round, accuracy, loss, seconds per round) and the final table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from fedsim.results import RunRecorder
from fedsim.scenario import Scenario

__all__ = ["ProgressObserver", "summary_table"]


class ProgressObserver:
    """Records each round to the run directory and shows it on the console.

    Use as a context manager around the run; the final table is printed on a clean exit.
    """

    def __init__(self, recorder: RunRecorder, scenario: Scenario, enabled: bool = True) -> None:
        self.recorder = recorder
        self.scenario = scenario
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.summary: dict[str, Any] | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "acc {task.fields[acc]}  loss {task.fields[loss]}  {task.fields[spr]} s/round"
            ),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(
            scenario.name,
            total=scenario.rounds,
            completed=len(recorder.rounds),
            acc="-",
            loss="-",
            spr="-",
        )

    @property
    def run_dir(self) -> Path:
        """The run directory (where artefacts such as inversion grids go)."""
        return self.recorder.run_dir

    def __enter__(self) -> ProgressObserver:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        if self.enabled and self.summary is not None:
            self.console.print(summary_table(self.recorder.rounds, self.summary))
            self.console.print(f"run directory: {self.recorder.run_dir}")

    def on_round(self, record: dict[str, Any]) -> None:
        """Write the round and advance the display."""
        self.recorder.write_round(record)
        self._progress.update(
            self._task,
            completed=record["round"],
            acc=f"{record['accuracy']:.4f}",
            loss=f"{record['loss']:.4f}",
            spr=f"{record['time_s']:.2f}",
        )

    def on_end(self, summary: dict[str, Any]) -> None:
        """Write ``summary.json``."""
        self.summary = summary
        self.recorder.finish(summary)


def summary_table(rounds: list[dict[str, Any]], summary: dict[str, Any], last: int = 10) -> Table:
    """The last ``last`` rounds and the final figures as a rich table."""
    table = Table(title=f"{summary['name']} (seed {summary['seed']}, {summary['runtime']})")
    for column in ("round", "accuracy", "loss", "time_s", "accepted", "left out"):
        table.add_column(column, justify="right")
    for r in rounds[-last:]:
        left_out = len(r.get("failed") or {}) + len(r.get("rejected") or {})
        accepted = "-" if r.get("accepted") is None else str(len(r["accepted"]))
        table.add_row(
            str(r["round"]),
            f"{r['accuracy']:.4f}",
            f"{r['loss']:.4f}",
            f"{r['time_s']:.2f}",
            accepted,
            str(left_out),
        )
    table.caption = (
        f"final accuracy {summary['final_accuracy']:.4f}, best {summary['best_accuracy']:.4f}, "
        f"{summary['mean_round_s']:.2f} s/round, wall {summary['wall_s']:.1f} s"
        if summary.get("final_accuracy") is not None
        else "no round finished"
    )
    return table
