"""``fedsim sweep``: grid and zipped axes, validation of every point, resume, failures, Ray.

With ``--parallel`` every point runs on its own runtime: inline and vectorized ones as Ray
tasks, ray ones in this process after them.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from fedsim.cli import main
from fedsim.errors import RunError, ScenarioError
from fedsim.run import runner, sweep_exec
from fedsim.run.sweep import expand_sweep
from fedsim.scenario import parse_scenario, scenario_to_dict

BASE: dict[str, Any] = {
    "name": "sw",
    "rounds": 1,
    "runtime": "inline",
    "device": "cpu",
    "data": {"num_clients": 4},
    "model": {"name": "mlp"},
}


def with_sweep(sweep: Any, **changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw.update(changes)
    raw["sweep"] = sweep
    return raw


def write_scenario(tmp_path: Path, sweep: Any, **changes: Any) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(with_sweep(sweep, **changes), sort_keys=False))
    return path


def read_rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------- expansion


def test_plain_grid_is_the_cartesian_product_last_key_fastest() -> None:
    points = expand_sweep(
        with_sweep({"defense.aggregator": ["fedavg", "median", "krum"], "seed": [0, 1]})
    )

    assert [(p.scenario.defense.aggregator, p.scenario.seed) for p in points] == list(
        itertools.product(["fedavg", "median", "krum"], [0, 1])
    )
    assert points[3].name == "defense.aggregator=median,seed=1"
    assert points[3].values == {"defense.aggregator": "median", "seed": 1}
    assert all(p.scenario.sweep is None for p in points)


def test_dotted_keys_reach_nested_settings_and_leave_the_rest() -> None:
    raw = with_sweep(
        {"clients.lr": [0.1, 0.2], "attack.params.scale": [2.0, 4.0]},
        attack={"name": "sign_flip", "fraction": 0.25, "params": {"scale": 1.0}},
    )
    points = expand_sweep(raw)

    assert len(points) == 4
    last = points[-1].scenario
    assert last.clients.lr == 0.2 and last.attack.params == {"scale": 4.0}
    assert last.attack.fraction == 0.25 and last.data.num_clients == 4
    assert raw["attack"]["params"] == {"scale": 1.0}  # the caller's data is not modified


def test_zipped_keys_vary_together_and_multiply_with_the_grid() -> None:
    attacks = ["none", "sign_flip", "gaussian"]
    params = [{}, {"scale": 3.0}, {"sigma": 0.5}]
    sweep = {
        "zip": [{"attack.name": attacks, "attack.params": params}],
        "grid": {"defense.aggregator": ["fedavg", "median"], "seed": [0, 1]},
    }
    attack = {"name": "none", "fraction": 0.25}  # the fraction is ignored for none
    points = expand_sweep(with_sweep(sweep, attack=attack))

    assert len(points) == 3 * 2 * 2
    pairs = [(p.scenario.attack.name, p.scenario.attack.params) for p in points]
    assert pairs == [pair for pair in zip(attacks, params, strict=True) for _ in range(4)]
    assert points[5].name == "attack.name=sign_flip,defense.aggregator=fedavg,seed=1"
    assert points[5].values == {
        "attack.name": "sign_flip",
        "attack.params": {"scale": 3.0},
        "defense.aggregator": "fedavg",
        "seed": 1,
    }
    # axes follow the order written: grid first here, so the zip group varies fastest
    flipped = expand_sweep(with_sweep({"grid": sweep["grid"], "zip": sweep["zip"]}, attack=attack))
    assert [p.scenario.attack.name for p in flipped[:3]] == attacks


def test_a_zip_group_whose_first_values_repeat_is_named_by_all_its_keys() -> None:
    sweep = {
        "zip": [
            {
                "attack.name": ["sign_flip", "sign_flip"],
                "attack.params": [{"scale": 2}, {"scale": 3}],
            }
        ]
    }
    points = expand_sweep(with_sweep(sweep, attack={"name": "none", "count": 1}))

    names = [p.name for p in points]
    assert len(set(names)) == 2
    assert names[0].startswith("attack.name=sign_flip,attack.params=") and "scale" in names[0]


@pytest.mark.parametrize(
    ("sweep", "path", "words"),
    [
        (
            {"zip": [{"attack.name": ["none", "sign_flip"], "attack.params": [{}]}]},
            "sweep.zip.0",
            "same length",
        ),
        ({"seed": []}, "sweep.seed", "non-empty list"),
        ({"seed": 3}, "sweep.seed", "non-empty list"),
        ({"seed": [0, 0]}, "sweep.seed", "distinct"),
        ({"grid": {"seed": [0]}, "rounds": [1]}, "sweep.rounds", "under sweep.grid"),
        ({"grid": {"seed": [0]}, "zip": [{"seed": [1]}]}, "sweep.seed", "overlaps"),
        (
            {"grid": {"attack": [{"name": "none"}]}, "zip": [{"attack.name": ["none"]}]},
            "sweep.attack.name",
            "overlaps",
        ),
        ({"sweep.seed": [0]}, "sweep.sweep.seed", "not sweep itself"),
        ({"zip": {"seed": [0]}}, "sweep.zip", "list of"),
        ({"grid": [0]}, "sweep.grid", "mapping"),
    ],
)
def test_a_bad_sweep_block_is_refused_naming_the_key(sweep: Any, path: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        expand_sweep(with_sweep(sweep))
    assert info.value.path == path
    assert words in info.value.allowed


def test_one_invalid_point_fails_the_expansion_naming_the_point() -> None:
    with pytest.raises(ScenarioError) as info:
        expand_sweep(with_sweep({"clients.per_round": [2, 9], "seed": [0]}))
    assert info.value.path == "clients.per_round" and info.value.value == 9
    assert "sweep point {'clients.per_round': 9, 'seed': 0}" in str(info.value)


def test_a_scenario_with_an_invalid_sweep_point_is_invalid_itself() -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(with_sweep({"grid": {"clients.lr": [0.1, -1.0]}}))
    assert info.value.path == "clients.lr" and "sweep point {'clients.lr': -1.0}" in str(info.value)


def test_no_sweep_block_is_one_point() -> None:
    raw = copy.deepcopy(BASE)
    assert [p.values for p in expand_sweep(raw)] == [{}]


# ---------------------------------------------------------------------------- running


class CountingRuns:
    """Wraps ``runner.run_scenario``: records each point run and can interrupt or fail one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = runner.run_scenario
        self.calls: list[str] = []
        self.interrupt_at: int | None = None
        self.fail: str | None = None
        self.extra: dict[str, dict[str, Any]] = {}
        monkeypatch.setattr(runner, "run_scenario", self)

    def __call__(self, scenario, out, **kwargs):  # noqa: ANN001, ANN204
        name = Path(out).name
        self.calls.append(name)
        if self.interrupt_at == len(self.calls):
            raise KeyboardInterrupt
        if name == self.fail:
            raise RuntimeError("disk on fire")
        run_dir, summary = self.real(scenario, out, **kwargs)
        if name in self.extra:  # as if the run had recorded more figures (e.g. ε)
            summary = {**summary, **self.extra[name]}
            (run_dir / "summary.json").write_text(json.dumps(summary))
        return run_dir, summary


GRID = {"defense.aggregator": ["fedavg", "median"], "seed": [0, 1]}
NAMES = [f"defense.aggregator={a},seed={s}" for a in ("fedavg", "median") for s in (0, 1)]


def test_an_interrupted_sweep_resumes_without_rerunning_finished_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, GRID)
    out = tmp_path / "sweep"
    runs = CountingRuns(monkeypatch)
    runs.interrupt_at = 3

    assert main(["sweep", str(path), "--out", str(out)]) == 130
    assert "run the same command to resume" in capsys.readouterr().err
    rows = read_rows(out)
    assert [r["point"] for r in rows] == NAMES[:2] and {r["status"] for r in rows} == {"ok"}
    stamps = {n: (out / n / "summary.json").stat().st_mtime_ns for n in NAMES[:2]}
    # what a killed run leaves behind: a partial directory without summary.json
    partial = out / NAMES[2]
    partial.mkdir()
    (partial / "metrics.jsonl").write_text('{"round": 1}\n')
    (partial / "leftover.txt").write_text("x")

    runs.calls.clear()
    runs.interrupt_at = None
    assert main(["sweep", str(path), "--out", str(out)]) == 0

    assert runs.calls == NAMES[2:]
    assert {n: (out / n / "summary.json").stat().st_mtime_ns for n in NAMES[:2]} == stamps
    assert not (partial / "leftover.txt").exists()
    rows = read_rows(out)
    assert [r["point"] for r in rows] == NAMES
    assert [(r["defense.aggregator"], r["seed"]) for r in rows] == [
        ("fedavg", "0"),
        ("fedavg", "1"),
        ("median", "0"),
        ("median", "1"),
    ]
    for row in rows:
        summary = json.loads((out / row["point"] / "summary.json").read_text())
        assert row["status"] == "ok"
        assert float(row["final_accuracy"]) == summary["final_accuracy"]
        assert float(row["wall_s"]) == summary["wall_s"]
    assert "| fedavg | 2 |" in (out / "report.md").read_text()

    # a summary with fewer rounds than the scenario is not finished: that point runs again
    (out / NAMES[0] / "summary.json").write_text(json.dumps({"rounds": 0}))
    runs.calls.clear()
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert runs.calls == NAMES[:1]

    # the same directory with other settings would mix two experiments: refused, nothing run
    runs.calls.clear()
    assert main(["sweep", str(path), "--out", str(out), "--set", "clients.lr=0.2"]) == 2
    assert "clients.lr: 0.05 there, 0.2 now" in capsys.readouterr().err
    assert runs.calls == []


def test_a_failing_point_is_recorded_and_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, GRID)
    out = tmp_path / "sweep"
    runs = CountingRuns(monkeypatch)
    runs.fail = NAMES[1]
    runs.extra[NAMES[3]] = {"final_epsilon": 1.5}

    assert main(["sweep", str(path), "--out", str(out)]) == 1

    assert runs.calls == NAMES
    assert "1 of 4 point(s) failed" in capsys.readouterr().err
    rows = {r["point"]: r for r in read_rows(out)}
    assert rows[NAMES[1]]["status"] == "failed: RuntimeError: disk on fire"
    assert rows[NAMES[1]]["final_accuracy"] == ""
    assert all(rows[n]["status"] == "ok" for n in (NAMES[0], NAMES[2], NAMES[3]))
    assert "Traceback" in (out / NAMES[1] / "error.txt").read_text()
    # a figure some summary has becomes a column, empty where a run lacks it
    assert rows[NAMES[3]]["final_epsilon"] == "1.5" and rows[NAMES[0]]["final_epsilon"] == ""
    report = (out / "report.md").read_text()
    assert "## Failed runs" in report and "disk on fire" in report

    runs.calls.clear()
    runs.fail = None
    assert main(["sweep", str(path), "--out", str(out)]) == 0
    assert runs.calls == [NAMES[1]]
    assert not (out / NAMES[1] / "error.txt").exists()
    assert {r["status"] for r in read_rows(out)} == {"ok"}


def test_bad_arguments_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_scenario(tmp_path, {"seed": [0, 1]})
    assert main(["sweep", str(path), "--out", str(tmp_path / "a"), "--parallel", "0"]) == 2
    bad = write_scenario(tmp_path, {"zip": [{"seed": [0, 1], "clients.lr": [0.1]}]})
    assert main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "sweep.zip.0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_with_parallel_a_ray_runtime_point_runs_here_on_ray_after_the_tasks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Ray task cannot start a Ray: a ``ray`` point runs in this process, never inline."""
    path = write_scenario(tmp_path, {"runtime": ["ray", "inline"]})
    out = tmp_path / "sweep"
    calls: list[tuple[str, str, str | None]] = []
    where = ["here"]
    real = runner.run_scenario

    def fake_tasks(todo, sweep_dir, parallel, address, started, done):  # noqa: ANN001, ANN202
        where[0] = "task"  # stands in for Ray: the same points, run in this process
        sweep_exec.run_here(todo, sweep_dir, started, done)
        where[0] = "here"

    def fake_run(scenario, out, **kwargs):  # noqa: ANN001, ANN202
        calls.append((where[0], scenario.runtime, scenario.ray.address))
        if scenario.runtime == "ray":
            raise RuntimeError("no Ray in this test")
        return real(scenario, out, **kwargs)

    monkeypatch.setattr(sweep_exec, "_run_tasks", fake_tasks)
    monkeypatch.setattr(runner, "run_scenario", fake_run)

    code = main(["sweep", str(path), "--out", str(out), "--ray-address", "10.0.0.1:6379"])

    assert code == 1  # the ray point "failed" by design of this test
    # the inline point as a task, then the ray point here, on ray, sent to --ray-address
    assert calls == [("task", "inline", None), ("here", "ray", "10.0.0.1:6379")]
    assert "1 point(s) on the ray runtime run here one after another" in capsys.readouterr().err
    rows = {r["point"]: r for r in read_rows(out)}
    assert rows["runtime=inline"]["runtime"] == "inline"
    assert rows["runtime=inline"]["status"] == "ok"
    assert rows["runtime=ray"]["status"] == "failed: RuntimeError: no Ray in this test"
    # and a task refuses a ray point outright rather than running it on something else
    point = expand_sweep(yaml.safe_load(path.read_text()))[0]
    with pytest.raises(RunError, match="cannot run inside a Ray task"):
        sweep_exec.run_point_task(scenario_to_dict(point.scenario))


@pytest.mark.ray
def test_parallel_points_run_as_ray_tasks_on_their_own_runtimes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A ``vectorized`` and an ``inline`` point at once on a local Ray: same as --parallel 1."""
    path = write_scenario(tmp_path, {"runtime": ["vectorized", "inline"]}, rounds=2)
    path.write_text(path.read_text().replace("num_clients: 4", "num_clients: 2"))
    parallel, one = tmp_path / "parallel", tmp_path / "one"

    assert main(["sweep", str(path), "--out", str(parallel), "--parallel", "2"]) == 0
    err = capsys.readouterr().err
    assert main(["sweep", str(path), "--out", str(one), "--no-progress"]) == 0

    rows, rows_one = read_rows(parallel), read_rows(one)
    assert [r["point"] for r in rows] == ["runtime=vectorized", "runtime=inline"]
    assert {r["status"] for r in rows} == {"ok"}
    for row, row_one in zip(rows, rows_one, strict=True):
        runtime = row["point"].removeprefix("runtime=")
        summary = json.loads((parallel / row["point"] / "summary.json").read_text())
        assert row["runtime"] == summary["runtime"] == runtime
        assert (
            yaml.safe_load((parallel / row["point"] / "scenario.yaml").read_text())["runtime"]
            == runtime
        )
        assert f"{row['point']}: acc {float(row['final_accuracy']):.4f} on {runtime}" in err
        assert {k: v for k, v in row.items() if k != "wall_s"} == {
            k: v for k, v in row_one.items() if k != "wall_s"
        }
        metrics = [
            (parallel / row["point"] / "metrics.jsonl"),
            (one / row["point"] / "metrics.jsonl"),
        ]
        accuracies = [
            [json.loads(line)["accuracy"] for line in m.read_text().splitlines()] for m in metrics
        ]
        assert len(accuracies[0]) == 2 and accuracies[0] == accuracies[1]
