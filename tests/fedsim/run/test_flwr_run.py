"""``flwr run .`` end to end on Flower's local SuperLink (simulation runtime), as the README says.

A SuperLink is started here exactly as ``flwr run`` starts its local one (same command), but
on a free port, in a temporary Flower home and working directory, with runtime dependency
installation disabled (no network, nothing installed), and in its own session: every process
it starts (SuperExec, the simulation process, Ray's daemons) carries the temporary
``FLWR_HOME`` in its environment, and all of them are stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.flower

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent

SCENARIO = """name: flwr-{clients}
seed: 0
rounds: 2
runtime: ray
device: cpu
data: {{dataset: digits, partition: iid, num_clients: {clients}}}
model: {{name: cnn}}
clients: {{batch_size: 32}}
"""


@dataclass
class SuperLink:
    """A running local SuperLink: its environment for ``flwr`` and its working directory."""

    env: dict[str, str]
    cwd: Path

    def flwr(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            [str(BIN / "flwr"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def run(self, scenario: Path, out: Path | None, supernodes: int) -> str:
        """``flwr run .`` (from the project root); the run id."""
        config = f"scenario='{scenario}'" + (f" out='{out}'" if out is not None else "")
        stdout = self.flwr(
            "run",
            ".",
            "--run-config",
            config,
            "--federation-config",
            f"num-supernodes={supernodes}",
            "--format",
            "json",
        )
        return json.loads(stdout)["run-id"]

    def wait(self, run_id: str, timeout: float = 240) -> dict[str, str]:
        """The run's ``flwr ls`` record once it has finished."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            (record,) = json.loads(self.flwr("ls", "--run-id", run_id, "--format", "json"))["runs"]
            if record["status"].startswith("finished"):
                return record
            time.sleep(1.0)
        pytest.fail(f"run {run_id} did not finish within {timeout} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_with(marker: str) -> list[int]:
    """Pids of this user's processes whose environment holds ``marker``."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _stop(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
            time.sleep(0.1)


@pytest.fixture(scope="module")
def superlink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuperLink]:
    if shutil.which("flower-superlink", path=str(BIN)) is None or not Path("/proc").is_dir():
        pytest.skip("needs flwr's executables next to this Python, and Linux /proc")
    home = tmp_path_factory.mktemp("flwr-home")
    cwd = tmp_path_factory.mktemp("superlink-cwd")
    port = str(_free_port())
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "FLWR_HOME": str(home),
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": port,
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        "OMP_NUM_THREADS": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    marker = f"FLWR_HOME={home}"
    # The command `flwr run` uses for its local SuperLink (flwr/cli/local_superlink.py).
    command = [
        str(BIN / "flower-superlink"),
        "--insecure",
        "--simulation",
        "--isolation",
        "subprocess",
        "--host",
        "127.0.0.1",
        "--port",
        port,
        "--database",
        str(home / "state.db"),
    ]
    log = open(home / "superlink.out", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail((home / "superlink.out").read_text()[-2000:])
                time.sleep(0.3)
        yield SuperLink(env, cwd)
    finally:
        _stop([process.pid, *_processes_with(marker)])
        log.close()
        left = _processes_with(marker)
        assert not left, f"processes left running: {left}"


def test_flwr_run_writes_a_finished_run_directory(superlink: SuperLink, tmp_path: Path) -> None:
    scenario = tmp_path / "two.yaml"
    scenario.write_text(SCENARIO.format(clients=2))
    out = tmp_path / "run"
    record = superlink.wait(superlink.run(scenario, out, supernodes=2))
    assert record["status"] == "finished:completed", record
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2 and summary["final_accuracy"] > 0.5
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2]
    # without `out` the run directory goes under the SuperLink's working directory
    record = superlink.wait(superlink.run(scenario, None, supernodes=2))
    assert record["status"] == "finished:completed", record
    (default,) = (superlink.cwd / "runs").glob("flwr-2-*")
    assert json.loads((default / "summary.json").read_text())["rounds"] == 2


def test_too_few_supernodes_fail_fast_with_the_fix(superlink: SuperLink, tmp_path: Path) -> None:
    scenario = tmp_path / "three.yaml"
    scenario.write_text(SCENARIO.format(clients=3))
    run_id = superlink.run(scenario, tmp_path / "run", supernodes=2)
    record = superlink.wait(run_id, timeout=180)
    assert record["status"] == "finished:failed", record
    details = record["status-details"]
    assert "data.num_clients = 3" in details and "2 SuperNodes" in details
    assert '--federation-config "num-supernodes=3"' in details
    # the ServerApp gave up seconds after it started, not after a timeout
    assert float(record["elapsed"]) < 60, record


def test_flwr_run_with_secure_aggregation(superlink: SuperLink, tmp_path: Path) -> None:
    """SecAgg+'s extra exchanges go through a real SuperLink (messages serialised)."""
    scenario = tmp_path / "secagg.yaml"
    scenario.write_text(
        SCENARIO.format(clients=3) + "defense: {secure_aggregation: {protocol: secaggplus}}\n"
    )
    out = tmp_path / "run"
    record = superlink.wait(superlink.run(scenario, out, supernodes=3), timeout=240)
    assert record["status"] == "finished:completed", record
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["round"] for row in rows] == [1, 2]
    for row in rows:
        assert row["skipped"] is None and row["secagg_error"] < row["secagg_bound"]
