"""The class-inference probe in a real (tiny) run: its figures, its files, passive and active."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.run.runner import preflight
from fedsim.run.runtimes.inline import InlineGrid
from server.app import run_server
from server.probes.base import RoundView
from server.probes.class_inference import ClassInferenceProbe
from server.server_data import ServerData
from tests.conftest import RecordingObserver, make_scenario

FIGURES = {"class_inference_confidence", "class_inference_fidelity", "class_inference_s"}


def _run(tmp_path: Path, mode: str) -> tuple[list[dict], dict]:
    scenario = make_scenario(
        rounds=3,
        **{
            "model.params": {"width": 16},
            "clients.local_epochs": 2,
            "privacy.class_inference": {
                "target_class": 3,
                "mode": mode,
                "rounds": [1, 3],
                "steps": 60,
                "images": 16,
                "fakes": 16,
            },
        },
    )
    observer = RecordingObserver()
    observer.run_dir = tmp_path  # type: ignore[attr-defined]
    grid = InlineGrid(make_client_app(scenario), scenario.data.num_clients, scenario.seed)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    summary = run_server(grid, scenario, observer)
    return observer.rounds, summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict], dict]]:
    out = {}
    for mode in ("passive", "active"):
        path = tmp_path_factory.mktemp(mode)
        out[mode] = (path, *_run(path, mode))
    return out


def test_probe_writes_its_figures_in_the_rounds_it_names_and_the_npz_contract(runs) -> None:  # noqa: ANN001
    path, rows, summary = runs["passive"]
    assert [bool(FIGURES <= row.keys()) for row in rows] == [True, False, True]
    for row in (rows[0], rows[2]):
        assert 0 <= row["class_inference_confidence"] <= 1
        assert 0 <= row["class_inference_fidelity"] <= 1
        assert row["class_inference_s"] > 0
    with np.load(path / "class_inference" / "round3.npz") as saved:
        assert set(saved.files) == {"images", "target"}
        images = saved["images"]
        assert images.shape == (16, 1, 8, 8) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1 and int(saved["target"]) == 3
    assert not (path / "class_inference" / "round2.npz").exists()
    assert summary["final_class_inference_confidence"] == rows[2]["class_inference_confidence"]
    assert summary["class_inference_mode"] == "passive" and summary["class_inference_attacker"] == 1
    assert summary["class_inference_judge_accuracy"] > 0.8


def test_the_model_grows_surer_as_it_learns(runs) -> None:  # noqa: ANN001
    _, rows, _ = runs["passive"]
    assert rows[2]["class_inference_confidence"] > rows[0]["class_inference_confidence"]


def test_active_mode_changes_training_and_draws_at_least_as_recognisable_fakes(runs) -> None:  # noqa: ANN001
    _, passive, _ = runs["passive"]
    _, active, summary = runs["active"]
    assert summary["class_inference_mode"] == "active"
    assert active[0]["accuracy"] != passive[0]["accuracy"]  # the attacker trained on its fakes
    assert active[2]["class_inference_fidelity"] >= passive[2]["class_inference_fidelity"]


def test_rounds_past_the_end_are_refused() -> None:
    scenario = make_scenario(**{"privacy.class_inference": {"rounds": [9]}})
    with pytest.raises(ScenarioError, match=r"privacy\.class_inference\.rounds"):
        preflight(scenario)


def test_a_non_finite_global_model_gives_no_figures_and_no_crash() -> None:
    scenario = make_scenario(**{"privacy.class_inference": {"steps": 2}})
    fed = federation_for(scenario)
    probe = ClassInferenceProbe(fed, ServerData((fed.data.dataset.x_test, fed.data.dataset.y_test)))
    weights = fed.initial_weights()
    weights[0] = float("nan")
    assert probe.observe(RoundView(round=2, before=weights, after=None, updates=[])) == {}
