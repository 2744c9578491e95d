"""The throughput benchmark's measurement harness: one execution per child process.

:func:`measure` runs one (execution, N) of ``throughput.py`` in a fresh Python process
(``throughput.py --child``), samples the peak resident memory of that process and all its
descendants (Ray's workers and daemons included) from ``/proc`` every 50 ms, and turns the
child's round seconds into client updates per second; :func:`measure_peak` runs the device's
matmul-throughput measurement the same way; :func:`ratios` compares the executions' speeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def measure(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    threads: int = 1,
    *,
    model: str | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Run one execution in a child process; its result plus the tree's peak RSS.

    With ``model`` (a :data:`large_workload.LARGE_MODELS` label) it runs the large workload,
    and the row also names the workload and model and has the mean training examples per
    client.
    """
    command = _child_command(execution, num_clients, rounds, device, threads, model, chunk_size)
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    result = _child_result(child.returncode, out, err, f"{execution} with N={num_clients}")
    timed = result["round_seconds"][1:] or result["round_seconds"]  # round 1 warms up
    updates = num_clients * len(timed)
    large = {}
    if model is not None:
        examples = result["train_examples"] / num_clients
        large = {"workload": "large", "model": model, "examples_per_client": examples}
    return {
        **large,
        "execution": execution,
        "clients": num_clients,
        "rounds": rounds,
        "updates": updates,
        "seconds": sum(timed),
        "updates_per_s": updates / sum(timed),
        "first_round_s": result["round_seconds"][0],
        "accuracy": result["accuracy"],
        "peak_rss_mib": peak[0] / 2**20 if peak[0] else None,
    }


def measure_peak(device: str) -> dict[str, Any]:
    """The device's float32 matmul throughput (:func:`flops.matmul_peak`), in a child process."""
    command = _child_command("matmul-peak", 1, 1, device, 1, None, None)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    return _child_result(done.returncode, done.stdout, done.stderr, "measuring the matmul peak")


def _child_result(returncode: int, out: str, err: str, what: str) -> dict[str, Any]:
    """The JSON line a child printed last; ``RuntimeError`` with its stderr's tail if it failed."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if returncode != 0 or not lines:
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed:\n{tail}")
    return json.loads(lines[-1])


def ratios(rows: list[dict[str, Any]], pairs: tuple[tuple[str, str], ...]) -> list[dict[str, Any]]:
    """Ratios of client-updates/s (``pairs``), per model and N, where both were measured.

    Rows without a ``model`` (the digits workload) are grouped by N alone, and their ratios
    name no model.
    """
    out = []
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
