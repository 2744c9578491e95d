"""The throughput benchmark's measurement harness: one execution per child process.

:func:`measure` runs one (execution, N) of ``throughput.py`` in a fresh Python process
(``throughput.py --child``), samples the peak resident memory of that process and all its
descendants (Ray's workers and daemons included) from ``/proc`` every 50 ms, and turns the
child's round seconds into client updates per second; :func:`measure_peak` runs the device's
matmul-throughput measurement the same way; :func:`ratios` compares the executions' speeds.

A child that fails (or runs past ``timeout``) gives a row with ``status: "failed: ..."`` (its
error's last line) and no figures, and the benchmark goes on with the next execution. The
child runs in its own session with its output in files, not pipes: a crashed child's
grandchildren (Ray's daemons) can then neither keep the parent waiting for the end of a pipe
nor outlive the measurement (the whole session is killed once the child has ended).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().with_name("throughput.py")
"""The benchmark's entry point, which each child process runs with ``--child``."""


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux ``/proc``; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1]) * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def _child_command(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    threads: int,
    model: str | None,
    chunk_size: int | None,
) -> list[str]:
    """The command line of the child process that runs one measurement."""
    command = [
        sys.executable,
        str(SCRIPT),
        "--child",
        execution,
        "--clients",
        str(num_clients),
        "--rounds",
        str(rounds),
        "--device",
        device,
        "--threads",
        str(threads),
    ]
    if model is not None:
        command += ["--workload", "large", "--models", model]
    if chunk_size is not None:
        command += ["--chunk-size", str(chunk_size)]
    return command


CHILD_TIMEOUT_S = 3600.0
"""A measurement still running after this long is killed and reported as failed."""


def measure(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    threads: int = 1,
    *,
    model: str | None = None,
    chunk_size: int | None = None,
    timeout: float = CHILD_TIMEOUT_S,
) -> dict[str, Any]:
    """Run one execution in a child process; its result plus the tree's peak RSS.

    With ``model`` (a :data:`large_workload.LARGE_MODELS` label) it runs the large workload,
    and the row also names the workload and model and has the mean training examples per
    client. Every row has ``status``: ``"ok"``, or ``"failed: <reason>"`` for a child that
    failed or timed out (its figures are then ``None``).
    """
    command = _child_command(execution, num_clients, rounds, device, threads, model, chunk_size)
    returncode, out, err, peak = _run_child(command, timeout)
    large = {"workload": "large", "model": model} if model is not None else {}
    row: dict[str, Any] = {**large, "execution": execution, "clients": num_clients}
    row["rounds"] = rounds
    try:
        result = _child_result(returncode, out, err, f"{execution} with N={num_clients}")
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "no output"
        return {**row, **dict.fromkeys(FIGURES), "status": f"failed: {reason}"[:200]}
    timed = result["round_seconds"][1:] or result["round_seconds"]  # round 1 warms up
    updates = num_clients * len(timed)
    if model is not None:
        row["examples_per_client"] = result["train_examples"] / num_clients
    return {
        **row,
        "updates": updates,
        "seconds": sum(timed),
        "updates_per_s": updates / sum(timed),
        "first_round_s": result["round_seconds"][0],
        "accuracy": result["accuracy"],
        "peak_rss_mib": peak / 2**20 if peak else None,
        "status": "ok",
    }


FIGURES = ("updates", "seconds", "updates_per_s", "first_round_s", "accuracy", "peak_rss_mib")
"""A row's measured figures (``None`` in a failed row)."""


def ok(row: dict[str, Any]) -> bool:
    """Whether ``row`` was measured (rows from before ``status`` existed count as measured)."""
    return row.get("status", "ok") == "ok"


def _run_child(command: list[str], timeout: float) -> tuple[int, str, str, int]:
    """Run ``command`` in its own session; (return code, stdout, stderr, peak tree RSS)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen(command, stdout=out, stderr=err, text=True, start_new_session=True)
        peak, done = [0], threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                peak[0] = max(peak[0], _tree_rss(child.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            returncode = child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_session(child.pid)
            child.wait()
            err.write(f"\ntimed out after {timeout:.0f} s\n")
            returncode = -int(signal.SIGKILL)
        finally:
            done.set()
            sampler.join()
            _kill_session(child.pid)  # whatever the child left behind (Ray's daemons)
        out.seek(0)
        err.seek(0)
        return returncode, out.read(), err.read(), peak[0]


def _kill_session(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (a child started with a new session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def measure_peak(device: str) -> dict[str, Any]:
    """The device's float32 matmul throughput (:func:`flops.matmul_peak`), in a child process."""
    command = _child_command("matmul-peak", 1, 1, device, 1, None, None)
    returncode, out, err, _ = _run_child(command, CHILD_TIMEOUT_S)
    return _child_result(returncode, out, err, "measuring the matmul peak")


def _child_result(returncode: int, out: str, err: str, what: str) -> dict[str, Any]:
    """The JSON line a child printed last; ``RuntimeError`` with its stderr's tail if it failed."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        tail = "\n".join(err.strip().splitlines()[-15:]) or f"exit code {returncode}"
        raise RuntimeError(f"{what} failed:\n{tail}")
    return json.loads(lines[-1])


def ratios(rows: list[dict[str, Any]], pairs: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Ratios of client-updates/s (``pairs``), per model and N, where both were measured.

    Failed rows (see :func:`ok`) take part in no ratio.

    Rows without a ``model`` (the digits workload) are grouped by N alone, and their ratios
    name no model.
    """
    out = []
    rows = [r for r in rows if ok(r)]
    groups = {(r.get("model"), r["clients"]) for r in rows}
    for model, n in sorted(groups, key=lambda g: (g[0] or "", g[1])):
        speed = {
            r["execution"]: r["updates_per_s"]
            for r in rows
            if r["clients"] == n and r.get("model") == model
        }
        named = {} if model is None else {"model": model}
        for top, bottom in pairs:
            if top in speed and bottom in speed:
                value = speed[top] / speed[bottom]
                out.append({**named, "clients": n, "ratio": f"{top}/{bottom}", "value": value})
    return out
