"""The run directory: ``scenario.yaml``, ``metrics.jsonl`` (round by round) and ``summary.json``.

``metrics.jsonl`` gets one whole JSON line per finished round, flushed and fsynced as the
round ends, so an interrupted run keeps every finished round. ``summary.json`` is written to a
temporary file and renamed, so it is never half-written. Non-finite floats are written as
``null`` (strict JSON), never as ``NaN``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from fedsim.errors import ScenarioError

__all__ = [
    "RUN_FILES",
    "RunRecorder",
    "check_new_run_dir",
    "default_run_dir",
    "finished_rounds",
    "is_summary_figure",
    "read_metrics",
    "write_json_atomic",
]

LEAKAGE_FIGURES = ("psnr", "ssim")
"""Run-wide means of an inversion probe's scores (``summary.json``; ``results.csv`` columns)."""

ROBUSTNESS_FIGURES = (
    "detection_precision",
    "detection_recall",
    "false_rejection_rate",
    "attack_strength",
    "backdoor_lifespan",
)
"""Run-wide means of the per-round detection figures, the mean strength a defence-aware
attack chose, and the backdoor lifespan (``summary.json``; ``results.csv`` columns)."""


def is_summary_figure(key: str) -> bool:
    """Whether a ``summary.json`` key is a result a sweep tabulates.

    ``final_*`` and ``best_*`` figures, the inversion probe's mean ``psnr`` and ``ssim``, and
    the robustness figures (:data:`ROBUSTNESS_FIGURES`).
    """
    return key.startswith(("final_", "best_")) or key in LEAKAGE_FIGURES + ROBUSTNESS_FIGURES


def default_run_dir(name: str, root: str | os.PathLike[str] = "runs") -> Path:
    """``runs/<name>-<YYYYmmdd-HHMMSS>`` (with a numeric suffix if it already exists), created.

    The directory is created here, atomically (``mkdir`` fails on an existing one): two runs
    started in the same second get two directories, never one.
    """
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)
    base = Path(root) / f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}"
    base.parent.mkdir(parents=True, exist_ok=True)
    path, i = base, 1
    while True:
        try:
            path.mkdir()
        except FileExistsError:
            path, i = Path(f"{base}-{i}"), i + 1
        else:
            return path


RUN_FILES = (
    "scenario.yaml",
    "metrics.jsonl",
    "summary.json",
    "checkpoint.pt",
    "accuracy.png",
    "loss.png",
    "inversion",
)
"""What ``fedsim run`` (and ``fedsim plot``) write into a run directory; ``--overwrite`` removes
exactly these."""


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds results a new run would destroy.

    A finished or interrupted run: ``summary.json``, a checkpoint, or at least one round in
    ``metrics.jsonl`` (a run that failed before its first round has nothing to lose).
    """
    metrics = run_dir / "metrics.jsonl"
    return (
        (run_dir / "summary.json").exists()
        or (run_dir / "checkpoint.pt").exists()
        or (metrics.is_file() and metrics.stat().st_size > 0)
    )


def check_new_run_dir(run_dir: str | os.PathLike[str], overwrite: bool = False) -> None:
    """Refuse to write a run into a directory that already holds one, unless ``overwrite``.

    With ``overwrite`` the earlier run's files (:data:`RUN_FILES`) are deleted; anything
    else in the directory is left alone.

    Raises
    ------
    ScenarioError
        ``run_dir`` holds a run (see :func:`holds_run`) and ``overwrite`` is false; the
        message names ``--resume`` and ``--overwrite``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not holds_run(run_dir):
        return
    if not overwrite:
        raise ScenarioError(
            "--out",
            str(run_dir),
            "a new directory: this one holds a run; continue it with --resume "
            f"{run_dir}, replace it with --overwrite, or choose another --out",
        )
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _clean(value: Any) -> Any:
    """Replace non-finite floats by None, recursively, so the JSON is strict."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` via a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(data), f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-round records of a run directory (complete lines only)."""
    rows = []
    with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                rows.append(json.loads(line))
    return rows


def finished_rounds(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """:func:`read_metrics` of a run that has finished at least one round, or a clear error.

    Raises
    ------
    ScenarioError
        At ``RUN_DIR`` when ``run_dir`` holds no ``metrics.jsonl`` or no finished round.
    """
    if not (Path(run_dir) / "metrics.jsonl").is_file():
        raise ScenarioError("RUN_DIR", str(run_dir), "a run directory holding metrics.jsonl")
    rows = read_metrics(run_dir)
    if not rows:
        raise ScenarioError("RUN_DIR", str(run_dir), "a run with at least one finished round")
    return rows


class RunRecorder:
    """Writes one run directory.

    Parameters
    ----------
    run_dir : path-like
        Created if missing. An existing ``metrics.jsonl`` in it is replaced.
    scenario : dict
        The resolved scenario, written as ``scenario.yaml``.
    history : list of dict, optional
        Rounds already finished (a resumed run's checkpoint): ``metrics.jsonl`` is rewritten
        with exactly these lines, atomically, and the new rounds are appended after them.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        scenario: dict[str, Any],
        history: list[dict[str, Any]] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "scenario.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(scenario, f, sort_keys=False)
        self.rounds = [_clean(record) for record in history or []]
        path = self.run_dir / "metrics.jsonl"
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(record, allow_nan=False) + "\n" for record in self.rounds)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        self._metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write_round(self, record: dict[str, Any]) -> None:
        """Append one round's record as a whole line, flushed to disk."""
        record = _clean(record)
        self._metrics.write(json.dumps(record, allow_nan=False) + "\n")
        self._metrics.flush()
        os.fsync(self._metrics.fileno())
        self.rounds.append(record)

    def finish(self, summary: dict[str, Any]) -> None:
        """Close the metrics file and write ``summary.json`` atomically."""
        self.close()
        write_json_atomic(self.run_dir / "summary.json", summary)

    def close(self) -> None:
        """Close the metrics file (idempotent)."""
        if not self._metrics.closed:
            self._metrics.close()
