"""The inversion probe inside runs: ground truth, threat models, DP as a defence, preflight."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.run.runner import preflight
from fedsim.run.runtimes.inline import InlineGrid
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainSettings, train_local
from server.app import run_server
from server.probes.inversion_targets import first_batch, local_step_count
from tests.conftest import RecordingObserver, make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

# 179 training digits over 179 clients: one image each, so one local step of batch 1 — the
# DLG/iDLG setting, where the update is exactly -lr times the gradient of that image.
ONE_IMAGE_CLIENTS = {
    "data.test_fraction": 0.9,
    "data.num_clients": 179,
    "clients.per_round": 3,
    "clients.batch_size": 1,
    "clients.momentum": 0.0,
    "clients.lr": 0.1,
    "model": {"name": "lenet_sigmoid"},
}
PROBE = {"attack": "dlg", "rounds": [1], "iterations": 100, "max_clients": 1}


def test_first_batch_is_the_batch_the_client_trains_on_first() -> None:
    scenario = make_scenario(**{"clients.batch_size": 16})
    fed = federation_for(scenario)
    x, y = fed.data.client(2)
    seen: list[torch.Tensor] = []
    model = fed.build_model()
    handle = model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    generator = torch_generator(scenario.seed, Stream.TRAIN, 3, 2)
    train_local(model, x, y, TrainSettings.from_clients(scenario.clients), generator)
    handle.remove()
    assert torch.equal(seen[0], x[first_batch(fed, 2, 3)])
    assert len(seen) == local_step_count(fed, 2) == -(-len(y) // 16)


def test_server_probe_reconstructs_a_one_image_update_and_local_dp_defeats_it(
    tmp_path: Path,
) -> None:
    clean = make_scenario(rounds=1, **ONE_IMAGE_CLIENTS, **{"privacy.inversion": PROBE})
    observer = RecordingObserver()
    observer.run_dir = tmp_path  # type: ignore[attr-defined]
    grid = InlineGrid(make_client_app(clean), 179, clean.seed)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, 1
    summary = run_server(grid, clean, observer)
    row = observer.rounds[0]
    ((key, scores),) = row["inversion"].items()
    assert key == f"client{row['sampled'][0]}"
    assert scores["psnr"] >= 30 and scores["label_accuracy"] == 1.0
    assert row["psnr"] == scores["psnr"] and summary["psnr"] == scores["psnr"]
    assert (tmp_path / "inversion" / f"round001_{key}.png").stat().st_size > 0

    noisy = make_scenario(
        rounds=1,
        **ONE_IMAGE_CLIENTS,
        **{
            "privacy.inversion": PROBE,
            "privacy.local_dp": {
                "noise_multiplier": 1.0,
                "max_grad_norm": 1.0,
                "poisson_sampling": False,
            },
        },
    )
    rows, _ = run_scenario_in_memory(noisy)
    assert rows[0]["sampled"] == row["sampled"]  # same client attacked
    assert rows[0]["psnr"] <= scores["psnr"] - 10


def test_client_threat_model_attacks_the_global_change() -> None:
    scenario = make_scenario(
        rounds=1,
        **{**ONE_IMAGE_CLIENTS, "clients.per_round": 1},
        **{"privacy.inversion": {**PROBE, "threat_model": "client"}},
    )
    rows, summary = run_scenario_in_memory(scenario)
    assert set(rows[0]["inversion"]) == {"global"}
    # one client per round: the global change is that client's update, scaled by η_server = 1
    assert rows[0]["psnr"] >= 30
    assert summary["inversion_attacks"] == 1


def test_probe_skips_rounds_it_was_not_asked_for() -> None:
    scenario = make_scenario(
        rounds=2, **ONE_IMAGE_CLIENTS, **{"privacy.inversion": {**PROBE, "rounds": [2]}}
    )
    rows, summary = run_scenario_in_memory(scenario)
    assert "inversion" not in rows[0] and "inversion" in rows[1]
    assert summary["inversion_attacks"] == 1


@pytest.mark.parametrize(
    ("probe", "path"),
    [
        ({"attack": "nope"}, "privacy.inversion.attack"),
        ({"rounds": [5]}, "privacy.inversion.rounds"),
        ({"clients": [99]}, "privacy.inversion.clients"),
        ({"params": {"momentum": 1}}, "privacy.inversion.params"),
        ({"attack": "idlg", "num_images": 11}, "privacy.inversion.num_images"),
    ],
)
def test_bad_probe_settings_fail_preflight(probe: dict, path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(rounds=2, **{"privacy.inversion": probe}))
    assert info.value.path == path
