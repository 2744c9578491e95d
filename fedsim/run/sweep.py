"""``fedsim sweep``: run a scenario once per point of its ``sweep:`` block.

The ``sweep:`` grammar
----------------------
A sweep is a set of *axes*; the points are their Cartesian product, the last axis varying
fastest. An axis is either one dotted scenario key with a list of values (a *grid* key), or a
*zip group*: several keys with lists of the same length whose i-th values go together (e.g. an
attack with its own parameters). Two spellings::

    # plain form (grid keys only), as in most ready scenarios
    sweep: {defense.aggregator: [fedavg, median], seed: [0, 1]}

    # full form: `grid` and/or `zip`, axes in the order written
    sweep:
      zip:
        - attack.name:   [alie,           ipm]
          attack.params: [{z_mode: paper}, {epsilon: 0.1}]
      grid:
        defense.aggregator: [fedavg, krum]
        seed: [0, 1, 2]

The full form is recognised by its keys being only ``grid`` and ``zip`` (neither is a scenario
key, so the plain form is unaffected); mixing plain keys with them is an error. Any dotted key
may be swept (``seed``, ``rounds``, ``privacy.local_dp.noise_multiplier`` ...), except
``sweep`` itself; one key may appear in one axis only, and not together with a key inside it
(``attack`` and ``attack.name``). Values of an axis must be distinct, so every point differs.

Every point is validated before anything runs — the schema and the cross-field checks
(:mod:`fedsim.run.sweep_points`), then :func:`~fedsim.run.runner.preflight` — so one bad point
stops the sweep with exit code 2 and nothing written. The schema check of every point is part
of validating the scenario itself (:func:`fedsim.scenario.parse_scenario`), so ``fedsim run``
refuses such a file too.

The sweep directory
-------------------
One run directory per point, named by its values (``defense.aggregator=krum,seed=0``; a zip
group is named by its first key alone when that key's values are distinct), plus:

``results.csv``
    One row per finished or failed point, in sweep order: ``point``, every swept key, ``seed``,
    ``runtime`` (the one the point ran on, as its ``summary.json`` records it; with the swept
    keys when swept), ``final_accuracy``, ``best_accuracy``, ``final_asr``, then any other
    ``final_*``/``best_*`` figure some summary has (``final_loss``, ``final_epsilon``,
    ``final_psnr`` ...), ``wall_s`` and ``status`` (``ok`` or ``failed: <error>``). Dict, list,
    bool and null values are written as JSON. It is rebuilt from the point directories after
    every finished point and replaced atomically, so it is always complete for what has
    finished.
``sweep.json``
    The axes and the point names, for the report.
``report.md`` and ``figures/``
    Written at the end by :func:`fedsim.reporting.sweep_report.write_report` (also
    ``fedsim report DIR``).

A point is *finished* when its directory holds ``summary.json`` with the scenario's number of
rounds (or one that says the run ``stopped`` early on purpose, e.g. at its privacy budget).
Re-running the same command with the same ``--out`` skips finished points and runs the
others again from scratch (a partial or failed point directory is deleted first). A finished
point whose ``scenario.yaml`` differs from the point's settings (other than ``runtime``,
``ray`` and ``vectorized``) stops the sweep with exit code 2 rather than mixing two experiments
in one table. A point that fails is recorded (``error.txt`` in its directory, its ``status`` in
``results.csv``) and the others go on; the command then exits with code 1.

How points run
--------------
Every point runs on the runtime its scenario names (``runtime:``, which may itself be swept);
none is substituted. ``--parallel 1`` (default, no ``--ray-address``): one after another in
this process. With ``--parallel N > 1`` or ``--ray-address ADDR``, Ray is started once
(``num_cpus=N``) or attached to (``address=ADDR``) and each ``inline`` or ``vectorized``
point is one Ray task on that runtime (``num_cpus=1``, torch on one thread, a GPU share when
the cluster has GPUs and the device is not ``cpu``, so a GPU machine runs a sweep of
``vectorized`` points on its GPUs). A task runs in a scratch directory on its node and sends
the run directory back; the driver writes it to a hidden sibling and renames it into place.
This works on a multi-node cluster, whose nodes do not see the driver's disk, and a point
directory is then either complete or absent. At most N tasks are in flight (N defaults to the
cluster's CPUs with an address). A point on the ``ray`` runtime starts or attaches to a Ray of
its own, which a Ray task cannot do: such points run after the tasks, in this process, one at a
time, each using the whole machine or cluster as with ``--parallel 1`` (``--ray-address`` is
their ``ray.address`` unless they set one); the sweep says so when it starts. A point's numbers
are those of ``--parallel 1`` (for ``vectorized``, up to the floating-point effect of torch's
thread count). The runtime a point ran on is in its ``summary.json`` and ``scenario.yaml``,
in the ``runtime`` column of ``results.csv`` and in its progress line.
"""

from __future__ import annotations

import csv
import json
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim.errors import ScenarioError
from fedsim.reporting.sweep_report import write_report
from fedsim.results import default_run_dir, is_summary_figure, write_json_atomic
from fedsim.run.runner import preflight
from fedsim.run.sweep_exec import SweepProgress, run_here, run_on_ray, runs_in_task
from fedsim.run.sweep_points import SweepPoint, expand_sweep, plan_sweep
from fedsim.scenario import apply_overrides, parse_scenario, read_raw, scenario_to_dict
from fedsim.scenario.sweep_grammar import SweepAxis, format_value, sweep_axes

__all__ = [
    "SweepAxis",
    "SweepOutcome",
    "SweepPoint",
    "expand_sweep",
    "format_value",
    "point_state",
    "run_sweep",
    "sweep_axes",
]

FIRST_METRICS = ["final_accuracy", "best_accuracy", "final_asr"]
"""Result columns always present; other ``final_*``/``best_*`` summary keys follow them."""


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep did: its directory, how many points ran, failed or were kept, the report.

    ``report_error`` says why ``report.md`` could not be written (``None`` when it was, or was
    not asked for); the results are complete either way.
    """

    sweep_dir: Path
    ran: int
    failed: int
    skipped: int
    report_error: str | None = None


# ---------------------------------------------------------------------------- points on disk


def point_state(point: SweepPoint, point_dir: Path) -> str:
    """``finished``, ``failed`` or ``todo``, from what ``point_dir`` holds (see module doc)."""
    summary = _read_json(point_dir / "summary.json")
    if summary is not None and (
        summary.get("rounds") == point.scenario.rounds or summary.get("stopped")
    ):
        return "finished"
    if (point_dir / "error.txt").is_file():
        return "failed"
    return "todo"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _check_same_setup(point: SweepPoint, point_dir: Path) -> None:
    """A finished point must have been run with this point's settings."""
    import yaml

    def comparable(data: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k not in ("runtime", "ray", "vectorized")}

    wanted = comparable(scenario_to_dict(point.scenario))
    try:
        text = (point_dir / "scenario.yaml").read_text(encoding="utf-8")
        found = comparable(scenario_to_dict(parse_scenario(yaml.safe_load(text))))
    except (OSError, ValueError, ScenarioError):
        found = None
    if found != wanted:
        where = _first_difference(wanted, found) if found is not None else "scenario.yaml"
        raise ScenarioError(
            "--out",
            str(point_dir.parent),
            f"a new or matching sweep directory; finished point {point.name} there was run "
            f"with other settings ({where}); use another --out or delete that point",
        )


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}".lstrip("."))
    return f"{path or 'value'}: {b!r} there, {a!r} now"


def _result_row(point: SweepPoint, point_dir: Path, state: str) -> dict[str, Any]:
    row: dict[str, Any] = {"point": point.name}
    row.update({k: format_value(v) for k, v in point.values.items() if k != "seed"})
    row["seed"] = point.scenario.seed
    row["runtime"] = point.scenario.runtime
    if state == "finished":
        summary = _read_json(point_dir / "summary.json") or {}
        row["runtime"] = summary.get("runtime", row["runtime"])  # what the run recorded
        row.update(
            {
                k: v if v is None or isinstance(v, int | float) else format_value(v)
                for k, v in summary.items()
                if is_summary_figure(k)
            }
        )
        row.update(wall_s=summary.get("wall_s"), status="ok")
    else:
        try:
            first = (point_dir / "error.txt").read_text(encoding="utf-8").splitlines()[0]
        except (OSError, IndexError):
            first = "unknown error"
        row["status"] = f"failed: {first}"[:300]
    return row


def _write_results(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """Write ``results.csv`` via a temporary file and an atomic rename."""
    extra = sorted({k for row in rows for k in row if is_summary_figure(k)} - set(FIRST_METRICS))
    extra.sort(key=lambda k: k != "final_loss")  # final_loss first, the rest alphabetical
    runtime = [] if "runtime" in keys else ["runtime"]
    columns = ["point", *keys, "seed", *runtime, *FIRST_METRICS, *extra, "wall_s", "status"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- running


def run_sweep(
    file: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    overrides: list[str] | None = None,
    *,
    parallel: int | None = None,
    ray_address: str | None = None,
    report: bool = True,
    show_progress: bool = True,
) -> SweepOutcome:
    """Validate every point of ``file``'s sweep, then run the unfinished ones.

    Parameters
    ----------
    file : path-like
        A scenario file (its ``sweep:`` block is optional: no block, one point).
    out : path-like, optional
        The sweep directory; ``runs/<name>-sweep-<timestamp>`` when omitted.
    overrides : list of str, optional
        ``key.path=value`` overrides applied before the sweep is expanded.
    parallel : int, optional
        Points run at once as Ray tasks, each on its own runtime (``ray``-runtime points run
        in this process after them; see the module docstring); 1 (in-process) by default, the
        cluster's CPUs with ``ray_address``.
    ray_address : str, optional
        Run the points as tasks on this Ray cluster (e.g. ``auto``).
    report : bool
        Write ``report.md`` and its figures at the end.
    show_progress : bool
        Show the progress bar (or, off a terminal, a line per finished point).

    Raises
    ------
    ScenarioError
        A bad point, argument or sweep directory, before anything runs.
    """
    if parallel is not None and parallel < 1:
        raise ScenarioError("--parallel", parallel, "a positive number of points run at once")
    raw = apply_overrides(read_raw(file), overrides or [])
    axes, points = plan_sweep(raw)
    _preflight_all(points)
    name = points[0].scenario.name
    sweep_dir = Path(out) if out is not None else default_run_dir(f"{name}-sweep")
    states = {p.name: point_state(p, sweep_dir / p.name) for p in points}
    for point in points:
        if states[point.name] == "finished":
            _check_same_setup(point, sweep_dir / point.name)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(
        sweep_dir / "sweep.json",
        {
            "name": name,
            "file": str(file),
            "overrides": list(overrides or []),
            "axes": [list(axis.keys) for axis in axes],
            "points": [p.name for p in points],
        },
    )
    results = _Results(sweep_dir, points)
    for point in points:
        if states[point.name] != "todo":
            results.update(point, states[point.name], write=False)
    results.write()
    todo = [p for p in points if states[p.name] != "finished"]
    ran = failed = 0
    with SweepProgress(name, len(todo), len(points) - len(todo), enabled=show_progress) as progress:

        def done(point: SweepPoint, error: BaseException | None, details: str = "") -> None:
            nonlocal ran, failed
            ran += 1
            if error is not None:
                failed += 1
                _record_failure(sweep_dir / point.name, error, details)
            row = results.update(point, "failed" if error is not None else "finished")
            progress.finished(point, row)

        if (parallel or 1) > 1 or ray_address:
            if driver := [p for p in todo if not runs_in_task(p)]:
                progress.note(
                    f"{len(driver)} point(s) on the ray runtime run here one after another, "
                    "after the Ray tasks (a Ray task cannot start a Ray of its own)"
                )
            run_on_ray(todo, sweep_dir, parallel, ray_address, progress.started, done)
        else:
            run_here(todo, sweep_dir, progress.started, done)
    report_error = None
    if report:
        try:
            write_report(sweep_dir)
        except Exception as e:  # noqa: BLE001  (the results are on disk; say what went wrong)
            report_error = f"{type(e).__name__}: {e}"
    return SweepOutcome(sweep_dir, ran, failed, len(points) - len(todo), report_error)


class _Results:
    """The rows of ``results.csv``, each read from its point directory, in sweep order."""

    def __init__(self, sweep_dir: Path, points: list[SweepPoint]) -> None:
        self.sweep_dir = sweep_dir
        self.points = points
        self.keys = [k for k in points[0].values if k != "seed"]
        self.rows: dict[str, dict[str, Any]] = {}

    def update(self, point: SweepPoint, state: str, write: bool = True) -> dict[str, Any]:
        """Re-read ``point``'s row from its directory (and rewrite the file)."""
        self.rows[point.name] = _result_row(point, self.sweep_dir / point.name, state)
        if write:
            self.write()
        return self.rows[point.name]

    def write(self) -> None:
        """Replace ``results.csv`` atomically."""
        rows = [self.rows[p.name] for p in self.points if p.name in self.rows]
        _write_results(self.sweep_dir / "results.csv", self.keys, rows)


def _preflight_all(points: list[SweepPoint]) -> None:
    for point in points:
        try:
            preflight(point.scenario)
        except ScenarioError as e:
            raise ScenarioError(
                e.path, e.value, f"{e.allowed} (sweep point {point.values})"
            ) from None


def _record_failure(point_dir: Path, error: BaseException, details: str) -> None:
    point_dir.mkdir(parents=True, exist_ok=True)
    message = f"{type(error).__name__}: {error}".splitlines()[0]
    text = f"{message}\n\n{details or ''.join(traceback.format_exception(error))}"
    (point_dir / "error.txt").write_text(text, encoding="utf-8")
