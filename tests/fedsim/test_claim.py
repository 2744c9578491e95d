"""One run owns its directory: a second run on it is refused, naming the owner, at any moment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fedsim.claim import LOCK_FILE, claim_run_dir
from fedsim.cli import main
from fedsim.errors import ScenarioError
from tests.fedsim.test_cli import _start

ROOT = Path(__file__).resolve().parents[2]

TINY = """name: {name}
seed: 0
rounds: {rounds}
runtime: inline
device: cpu
data: {{dataset: digits, partition: iid, num_clients: 2}}
model: {{name: mlp}}
clients: {{batch_size: 64}}
"""

# A real `fedsim run` whose inline runtime waits, once inside the run, until the test says go.
HOOKED_RUN = """
import sys, time
from pathlib import Path
import fedsim.cli as cli
import fedsim.run.runner as runner

inside, go = Path(sys.argv[1]), Path(sys.argv[2])
real = runner.run_inline

def waiting(*args, **kwargs):
    inside.touch()
    while not go.exists():
        time.sleep(0.05)
    return real(*args, **kwargs)

runner.run_inline = waiting
sys.exit(cli.main(sys.argv[3:]))
"""


def _scenario(tmp_path: Path, name: str, rounds: int) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY.format(name=name, rounds=rounds))
    return path


def _wait_for(path: Path, child: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if child.poll() is not None:
            pytest.fail(f"the first process ended early: {child.communicate()[1]}")
        if time.monotonic() > deadline:
            os.killpg(child.pid, signal.SIGKILL)
            pytest.fail(f"{path.name} never appeared")
        time.sleep(0.05)


def test_a_second_run_on_a_running_directory_is_refused_naming_the_owner(
    tmp_path: Path,
) -> None:
    out = tmp_path / "run"
    inside, go = tmp_path / "inside", tmp_path / "go"
    first_argv = ["run", str(_scenario(tmp_path, "first", 1)), "--out", str(out), "--no-progress"]
    first = _start(["-c", HOOKED_RUN, str(inside), str(go), *first_argv], tmp_path)
    try:
        _wait_for(inside, first)  # the first run owns the directory and is inside its rounds
        second_argv = [
            *("-m", "fedsim.cli", "run", str(_scenario(tmp_path, "second", 2))),
            *("--out", str(out), "--no-progress"),
        ]
        second = _start(second_argv, tmp_path)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        (line,) = err.strip().splitlines()
        assert line.startswith("fedsim: error: --out")
        assert f"pid {first.pid} on {socket.gethostname()}" in line
        assert f"{out} is owned by" in line
    finally:
        go.touch()
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # only the first run's files: its scenario, its one round, its summary (no lock left)
    assert sorted(p.name for p in out.iterdir()) == [
        "metrics.jsonl",
        "scenario.yaml",
        "summary.json",
    ]
    assert yaml.safe_load((out / "scenario.yaml").read_text())["name"] == "first"
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "summary.json").read_text())["rounds"] == 1


def test_overwrite_and_resume_never_take_a_directory_another_run_owns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    scenario = str(_scenario(tmp_path, "tiny", 1))
    assert main(["run", scenario, "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    with claim_run_dir(out):  # a live run owns it (another open file: flock refuses it too)
        for extra in (["--out", str(out), "--overwrite"], ["--resume", str(out)]):
            assert main(["run", scenario, *extra, "--no-progress"]) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and f"pid {os.getpid()}" in err, err
            assert err.startswith(f"fedsim: error: {extra[0]}")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # released: both work again
    assert main(["run", scenario, "--resume", str(out), "--no-progress"]) == 0
    assert main(["run", scenario, "--out", str(out), "--overwrite", "--no-progress"]) == 0


def test_a_crashed_owner_does_not_block_the_directory(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = _start(
        [
            "-c",
            "import sys, time\n"
            "from fedsim.claim import claim_run_dir\n"
            "with claim_run_dir(sys.argv[1]):\n"
            "    print('owned', flush=True)\n"
            "    time.sleep(600)\n",
            str(out),
        ],
        tmp_path,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "owned"
    with pytest.raises(ScenarioError, match=f"pid {holder.pid} on"):
        with claim_run_dir(out):
            pass
    os.killpg(holder.pid, signal.SIGKILL)  # a crash: no cleanup runs
    holder.communicate()
    assert (out / LOCK_FILE).is_file()  # left behind by the crash, but unlocked
    with claim_run_dir(out):  # the kernel released the lock with the process
        assert (out / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} on ")
    assert not (out / LOCK_FILE).exists()  # an owner that ends removes it


def test_a_lock_on_a_deleted_lock_file_is_taken_again_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Between our open and our flock, the owner ends (deletes the file, unlocks it) and a new
    # run creates and locks a new file: our flock succeeds on the deleted file, which must not
    # count as owning the directory.
    import fcntl

    import fedsim.claim

    out = tmp_path / "run"
    out.mkdir()
    held: list[int] = []
    real_flock = fcntl.flock

    def racing_flock(fd: int, operation: int) -> None:
        if not held:
            (out / LOCK_FILE).unlink()
            held.append(os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT))
            os.write(held[0], b"pid 4242 on elsewhere since then\n")
            real_flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        real_flock(fd, operation)

    fake = SimpleNamespace(**{**vars(fcntl), "flock": racing_flock})
    monkeypatch.setattr(fedsim.claim, "fcntl", fake)
    (out / LOCK_FILE).touch()
    with pytest.raises(ScenarioError, match="owned by the run of pid 4242 on elsewhere"):
        with claim_run_dir(out):
            pass
    os.close(held[0])


def test_two_default_directories_in_one_second_are_two(tmp_path: Path) -> None:
    from fedsim.results import default_run_dir

    first, second = default_run_dir("x", tmp_path), default_run_dir("x", tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
