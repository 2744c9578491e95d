"""``fedsim sweep``: run a scenario once per point of its ``sweep:`` grid.

``sweep: {defense.aggregator: [fedavg, median], seed: [0, 1]}`` gives the Cartesian product of
the listed values over the dotted keys (4 runs here). Every point is validated — schema and
preflight — before any run starts, so one bad point stops the sweep with exit 2 and nothing
run. Each point gets its own run directory inside the sweep directory, and ``results.csv``
gets one row per run.
"""

from __future__ import annotations

import copy
import csv
import itertools
import os
from pathlib import Path
from typing import Any

from fedsim.config import Scenario, apply_overrides, parse_scenario, read_raw, set_dotted
from fedsim.errors import ScenarioError
from fedsim.results import default_run_dir

__all__ = ["SweepPoint", "expand_sweep", "run_sweep"]

RESULT_COLUMNS = ["final_accuracy", "best_accuracy", "final_asr", "wall_s", "status"]


class SweepPoint:
    """One validated point: its swept values, its scenario and its directory name."""

    def __init__(self, values: dict[str, Any], scenario: Scenario) -> None:
        self.values = values
        self.scenario = scenario
        label = ",".join(f"{k}={v}" for k, v in values.items())
        self.name = "".join(ch if ch.isalnum() or ch in "-_.=," else "-" for ch in label) or "point"


def expand_sweep(raw: Any) -> list[SweepPoint]:
    """Validate the base scenario and every grid point; return the points in grid order."""
    base = parse_scenario(raw)  # the base must be valid on its own
    grid = base.sweep or {}
    raw = copy.deepcopy(raw)
    raw.pop("sweep", None)
    keys = list(grid)
    points = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        point_raw = copy.deepcopy(raw)
        values = dict(zip(keys, combo, strict=True))
        for key, value in values.items():
            set_dotted(point_raw, key, value)
        try:
            scenario = parse_scenario(point_raw)
        except ScenarioError as e:
            raise ScenarioError(e.path, e.value, f"{e.allowed} (sweep point {values})") from None
        points.append(SweepPoint(values, scenario))
    return points


def run_sweep(
    file: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
) -> Path:
    """Validate every point of ``file``'s sweep, then run them one after another."""
    from fedsim.runner import preflight, run_scenario

    raw = apply_overrides(read_raw(file), overrides or [])
    points = expand_sweep(raw)
    for point in points:
        try:
            preflight(point.scenario)
        except ScenarioError as e:
            raise ScenarioError(
                e.path, e.value, f"{e.allowed} (sweep point {point.values})"
            ) from None
    name = points[0].scenario.name if points else "sweep"
    sweep_dir = Path(out) if out is not None else default_run_dir(f"{name}-sweep")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    keys = list(points[0].values) if points else []
    with open(sweep_dir / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["point", *keys, "seed", *RESULT_COLUMNS])
        writer.writeheader()
        for i, point in enumerate(points, 1):
            row: dict[str, Any] = {"point": point.name, **point.values, "seed": point.scenario.seed}
            try:
                _, summary = run_scenario(
                    point.scenario, sweep_dir / point.name, show_progress=False
                )
                row.update({k: summary.get(k) for k in RESULT_COLUMNS[:-1]}, status="ok")
            except Exception as e:  # noqa: BLE001  (one failed point must not stop the others)
                row["status"] = f"failed: {type(e).__name__}: {e}"[:300]
            writer.writerow(row)
            f.flush()
            print(
                f"[{i}/{len(points)}] {point.name}: {row.get('final_accuracy')} ({row['status']})",
                flush=True,
            )
    return sweep_dir
