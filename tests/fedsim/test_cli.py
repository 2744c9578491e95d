"""No run lost by a typo, no traceback after Ctrl-C, and Ray failures that say what to do."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.errors import RunError
from fedsim.run.runtimes import ray as ray_runtime

ROOT = Path(__file__).resolve().parents[2]

TINY = """name: tiny
seed: 0
rounds: {rounds}
runtime: inline
device: cpu
data: {{dataset: digits, partition: iid, num_clients: 2}}
model: {{name: mlp}}
clients: {{batch_size: 64}}
"""


def _scenario(tmp_path: Path, rounds: int, extra: str = "") -> Path:
    path = tmp_path / f"tiny{rounds}.yaml"
    path.write_text(TINY.format(rounds=rounds) + extra)
    return path


def _rounds(run_dir: Path) -> int:
    return len((run_dir / "metrics.jsonl").read_text().splitlines())


# ------------------------------------------------------------------ --out onto an existing run


def test_out_onto_a_finished_run_is_refused_and_keeps_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_scenario(tmp_path, 2)), "--out", str(out), "--no-progress"]) == 0
    before = (out / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    code = main(["run", str(_scenario(tmp_path, 1)), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("fedsim: error: --out")
    assert "--resume" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_bytes() == before
    assert json.loads((out / "summary.json").read_text())["rounds"] == 2


def test_overwrite_replaces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", str(_scenario(tmp_path, 2)), "--out", str(out), "--no-progress"]) == 0
    (out / "notes.txt").write_text("mine")
    argv = ["run", str(_scenario(tmp_path, 1)), "--out", str(out), "--no-progress"]
    assert main([*argv, "--overwrite"]) == 0
    assert _rounds(out) == 1
    assert json.loads((out / "summary.json").read_text())["rounds"] == 1
    assert (out / "notes.txt").read_text() == "mine"  # only fedsim's own files are replaced


def test_a_run_that_failed_before_its_first_round_can_be_rerun(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "scenario.yaml").write_text("name: tiny\n")
    (out / "metrics.jsonl").write_text("")
    argv = ["run", str(_scenario(tmp_path, 1)), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert _rounds(out) == 1


def test_overwrite_with_resume_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    scenario = _scenario(tmp_path, 1)
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    code = main(["run", str(scenario), "--resume", str(out), "--overwrite", "--no-progress"])
    assert code == 2
    assert "--overwrite" in capsys.readouterr().err


# ------------------------------------------------------------------ sweep --no-progress


def test_sweep_no_progress_prints_no_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = _scenario(tmp_path, 1, "sweep: {seed: [0, 1]}\n")
    out = tmp_path / "sweep"
    assert main(["sweep", str(scenario), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines() == [str(out / "results.csv"), str(out / "report.md")]


# ------------------------------------------------------------------ Ctrl-C


def _start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a terminal's Ctrl-C: SIGINT at its default even if this process ignores it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _finish(child: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str]:
    try:
        _, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        pytest.fail("the interrupted command did not end")
    return child.returncode, err


def test_ctrl_c_on_a_sweep_gives_the_clean_message_and_no_traceback(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, 40, "sweep: {seed: [0, 1, 2, 3]}\n")
    child = _start(["-m", "fedsim.cli", "sweep", str(scenario), "--out", "sweep"], tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "sweep" / "seed=0").is_dir():
        time.sleep(0.2)
    time.sleep(1.0)  # inside a point's rounds
    os.killpg(child.pid, signal.SIGINT)
    code, err = _finish(child)
    assert code == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1].startswith("fedsim: interrupted; finished points are kept")


def test_an_interrupt_never_waits_for_a_stuck_thread(tmp_path: Path) -> None:
    # A non-daemon thread that never ends (as a Flower or Ray helper waiting for a reply that
    # will not come) must neither keep the process alive nor give a shutdown traceback.
    script = (
        "import sys, threading, time\n"
        "import fedsim.cli as cli\n"
        "threading.Thread(target=time.sleep, args=(600,)).start()\n"
        "def interrupted(args):\n"
        "    raise KeyboardInterrupt\n"
        "cli._sweep = interrupted\n"
        "sys.argv = ['fedsim', 'sweep', 'x.yaml']\n"
        "sys.exit(cli.main())\n"
    )
    started = time.monotonic()
    code, err = _finish(_start(["-c", script], tmp_path))
    assert code == 130
    assert time.monotonic() - started < 60
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("fedsim: interrupted; ")


# ------------------------------------------------------------------ Ray addresses


def _dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"  # closed again: nothing answers there


def test_ray_target_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray._private.utils as ray_utils

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda temp_dir=None: None)
    assert ray_runtime.ray_target(None) == ray_runtime.RayTarget(None, "default")
    assert ray_runtime.ray_target("10.0.0.1:6379").source == "ray.address"
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda temp_dir=None: "10.0.0.2:6379")
    found = ray_runtime.ray_target(None)
    assert found.address == "10.0.0.2:6379" and found.source.startswith("Ray's address file")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.3:6379")
    assert ray_runtime.ray_target(None) == ray_runtime.RayTarget("10.0.0.3:6379", "RAY_ADDRESS")
    assert ray_runtime.ray_target("local").address is None  # local wins over everything


def test_unreachable_ray_address_says_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    address = _dead_address()
    started = time.monotonic()
    with pytest.raises(RunError) as caught:
        ray_runtime.init_ray({"num_cpus": 1}, ray_runtime.RayTarget(address, "RAY_ADDRESS"))
    message = str(caught.value)
    assert time.monotonic() - started < 10
    assert address in message and "(from RAY_ADDRESS)" in message
    assert "unset RAY_ADDRESS" in message and "ray.address: local" in message


def test_stale_ray_address_file_fails_fast_with_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray._private.utils as ray_utils

    address = _dead_address()
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda temp_dir=None: address)
    scenario = _scenario(tmp_path, 1)
    argv = ["run", str(scenario), "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*argv, "--set", "runtime=ray"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"could not connect to the Ray cluster at {address}" in err
    assert "Ray's address file" in err and "ray stop" in err and "ray.address: local" in err


# ------------------------------------------------------------------ federation size


class _Nodes:
    """A Grid stand-in whose nodes appear after ``delay`` seconds, ``count`` of them."""

    def __init__(self, count: int, delay: float = 0.0) -> None:
        self.count, self.ready = count, time.monotonic() + delay

    def get_node_ids(self) -> list[int]:
        return list(range(100, 100 + self.count)) if time.monotonic() >= self.ready else []

    def send_and_receive(self, messages, timeout):  # noqa: ANN001, ANN201
        raise AssertionError("no message may be sent to a federation of the wrong size")


@pytest.mark.parametrize("nodes", [2, 4])
def test_a_federation_of_the_wrong_size_fails_fast_with_the_fix(nodes: int) -> None:
    from server.app import identify_clients

    started = time.monotonic()
    with pytest.raises(RunError) as caught:
        identify_clients(_Nodes(nodes, delay=0.3), 3, timeout=600, settle=0.5)  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "data.num_clients = 3" in message and f"has {nodes} SuperNodes" in message
    assert 'flwr run . --federation-config "num-supernodes=3"' in message


def test_flwr_run_directory_comes_from_the_run_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.app import flwr_run_dir

    monkeypatch.chdir(tmp_path)  # the default directory is created (atomically) under runs/

    assert flwr_run_dir({"out": str(tmp_path / "x")}, "demo") == tmp_path / "x"
    default = flwr_run_dir({"out": ""}, "demo")
    assert default.parent == Path("runs") and default.name.startswith("demo-")
    assert flwr_run_dir({}, "demo").parent == Path("runs")  # a run config without the key
