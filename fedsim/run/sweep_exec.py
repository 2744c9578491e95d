"""How sweep points run, and the sweep's progress display (see :mod:`fedsim.run.sweep`).

Every point runs on the runtime its scenario names; nothing is substituted.

:func:`run_here` runs points one after another in this process, each with its own runtime.
:func:`run_on_ray` runs each ``inline`` or ``vectorized`` point as a Ray task on that runtime
(with a GPU share when the cluster has GPUs and the point's device is not ``cpu``): the task
works in a scratch directory on its node and sends the run directory back as bytes, which
:func:`install` writes with ``summary.json`` last, so a point directory is either finished or
not, and a multi-node cluster needs no shared disk. A point on a Ray-based runtime
(:data:`IN_DRIVER`: ``ray``) starts or attaches to a Ray of its own, which a Ray task cannot
do, so :func:`run_on_ray` runs those points afterwards in this process with :func:`run_here`,
one at a time, each on the whole machine or cluster (``--ray-address`` is their
``ray.address`` unless they set one). Both call ``started(point)`` and
``done(point, error, details)`` as points start and end; :class:`SweepProgress` shows them.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsim.scenario import parse_scenario, scenario_to_dict
from fedsim.errors import RunError
from fedsim.run import runner
from fedsim.run.runtimes.ray import init_ray, ray_target

if TYPE_CHECKING:
    from fedsim.run.sweep import SweepPoint

__all__ = [
    "IN_DRIVER",
    "SweepProgress",
    "fresh_dir",
    "install",
    "run_here",
    "run_on_ray",
    "run_point_task",
    "runs_in_task",
]

IN_DRIVER = frozenset({"ray"})
"""Runtimes that start or attach to a Ray of their own: their points cannot run in a Ray task."""


def runs_in_task(point: SweepPoint) -> bool:
    """Whether ``point`` can run inside a Ray task (its runtime does not itself use Ray)."""
    return point.scenario.runtime not in IN_DRIVER


def fresh_dir(point_dir: Path) -> None:
    """Delete what an unfinished or failed earlier attempt left in ``point_dir``."""
    if point_dir.is_dir():
        shutil.rmtree(point_dir)


Started = Callable[["SweepPoint"], None]
Done = Callable[..., None]  # done(point, error or None, details="")


def run_here(
    todo: list[SweepPoint],
    sweep_dir: Path,
    started: Started,
    done: Done,
    ray_address: str | None = None,
) -> None:
    """Run the points one after another in this process, each with its own runtime.

    ``ray_address`` (a sweep's ``--ray-address``) is the ``ray.address`` of a point on the
    ``ray`` runtime that sets none.
    """
    for point in todo:
        point_dir = sweep_dir / point.name
        fresh_dir(point_dir)
        scenario = point.scenario
        if ray_address and scenario.runtime == "ray" and scenario.ray.address is None:
            ray_cfg = scenario.ray.model_copy(update={"address": ray_address})
            scenario = scenario.model_copy(update={"ray": ray_cfg})
        started(point)
        try:
            runner.run_scenario(scenario, point_dir, show_progress=False)
        except Exception as e:  # noqa: BLE001  (one failed point must not stop the others)
            done(point, e)
        else:
            done(point, None)


def run_point_task(scenario: dict[str, Any]) -> dict[str, bytes]:
    """A Ray task: run one point in a scratch directory; return its files (path → bytes).

    The point runs on its own runtime, which must not be one of :data:`IN_DRIVER`.
    """
    import torch

    from fedsim.run.logs import quiet_flower
    from fedsim.run.runner import run_scenario

    parsed = parse_scenario(scenario)
    if parsed.runtime in IN_DRIVER:
        raise RunError(
            f"runtime {parsed.runtime!r} starts a Ray of its own and cannot run inside a Ray "
            "task; run such a point in the driver (fedsim sweep does)"
        )
    quiet_flower(False)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="fedsim-point-") as tmp:
        run_dir = Path(tmp) / "run"
        run_scenario(parsed, run_dir, show_progress=False)
        files = {
            p.relative_to(run_dir).as_posix(): p.read_bytes()
            for p in sorted(run_dir.rglob("*"))
            if p.is_file()
        }
    return files


def install(point_dir: Path, files: dict[str, bytes]) -> None:
    """Write a run directory sent back by a task: into a hidden sibling, then renamed."""
    partial = point_dir.with_name(f".{point_dir.name}.partial")
    fresh_dir(partial)
    for name, data in files.items():
        target = partial / name
        if partial.resolve() not in target.resolve().parents:
            raise ValueError(f"unexpected file name {name!r} from a task")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    fresh_dir(point_dir)
    os.replace(partial, point_dir)


def run_on_ray(
    todo: list[SweepPoint],
    sweep_dir: Path,
    parallel: int | None,
    address: str | None,
    started: Started,
    done: Done,
) -> None:
    """Run the points as Ray tasks, at most ``parallel`` in flight (see the module doc).

    Points on a runtime of :data:`IN_DRIVER` run after the tasks, here, with :func:`run_here`.
    """
    tasks = [p for p in todo if runs_in_task(p)]
    _run_tasks(tasks, sweep_dir, parallel, address, started, done)
    run_here([p for p in todo if not runs_in_task(p)], sweep_dir, started, done, address)


def _run_tasks(
    todo: list[SweepPoint],
    sweep_dir: Path,
    parallel: int | None,
    address: str | None,
    started: Started,
    done: Done,
) -> None:
    """Run ``todo`` (no point of :data:`IN_DRIVER`) as Ray tasks on their own runtimes."""
    if not todo:
        return
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        init: dict[str, Any] = {
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
            "num_cpus": parallel or 1,  # dropped when attaching to a cluster
        }
        init_ray(init, ray_target(address, "--ray-address"))
    pending: dict[Any, SweepPoint] = {}
    try:
        resources = ray.cluster_resources()
        slots = parallel or max(1, int(resources.get("CPU", 1)))
        task = ray.remote(run_point_task)
        queue = deque(todo)

        def submit() -> None:
            while queue and len(pending) < slots:
                point = queue.popleft()
                gpus = resources.get("GPU", 0.0) if point.scenario.device != "cpu" else 0.0
                options = {"num_cpus": 1, "num_gpus": round(min(1.0, gpus / slots), 4)}
                fresh_dir(sweep_dir / point.name)
                scenario = scenario_to_dict(point.scenario)
                pending[task.options(**options).remote(scenario)] = point
                started(point)

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            finished = [(ref, pending.pop(ref)) for ref in ready]
            submit()  # keep the slots busy before writing results
            for ref, point in finished:
                try:
                    install(sweep_dir / point.name, ray.get(ref))
                except Exception as e:  # noqa: BLE001  (one failed point must not stop the others)
                    cause = getattr(e, "cause", None)
                    done(point, cause if isinstance(cause, BaseException) else e, str(e))
                else:
                    done(point, None)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


class SweepProgress:
    """Points done / running / failed and an ETA: a live bar on a terminal, else one line each."""

    def __init__(self, name: str, total: int, skipped: int, enabled: bool = True) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        self.console = Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.total, self.skipped = total, skipped
        self.running = self.done = self.failed = 0
        self.start = time.perf_counter()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            disable=not self.live,
        )
        self._task = self._progress.add_task(name, total=total, status=self._status())
        if skipped:
            self._say(f"{skipped} finished point(s) kept, {total} to run")

    def __enter__(self) -> SweepProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
        elapsed = time.perf_counter() - self.start
        self._say(
            f"sweep: {self.done - self.failed} ok, {self.failed} failed, {self.skipped} kept "
            f"from before, {_duration(elapsed)}"
        )

    def _status(self) -> str:
        left = self.total - self.done
        if self.done:
            eta = (time.perf_counter() - self.start) / self.done * left
            eta_text = _duration(eta)
        else:
            eta_text = "-"
        return f"running {self.running}  failed {self.failed}  ETA {eta_text}"

    def note(self, text: str) -> None:
        """Say ``text`` (a line above the bar, or on its own line off a terminal)."""
        self._say(text)

    def _say(self, text: str) -> None:
        if not self.enabled:
            return
        if self.live:
            self.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def started(self, point: SweepPoint) -> None:
        """A point started (or was handed to Ray)."""
        self.running += 1
        self._progress.update(self._task, status=self._status())

    def finished(self, point: SweepPoint, row: dict[str, Any]) -> None:
        """A point ended; ``row`` is its ``results.csv`` row."""
        self.running -= 1
        self.done += 1
        ok = row["status"] == "ok"
        self.failed += not ok
        acc = row.get("final_accuracy")
        result = f"acc {acc:.4f}" if ok and isinstance(acc, float) else row["status"]
        if ok and row.get("runtime"):
            result += f" on {row['runtime']}"
        self._progress.update(self._task, completed=self.done, status=self._status())
        self._say(f"[{self.done}/{self.total}] {point.name}: {result}  ({self._status()})")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
