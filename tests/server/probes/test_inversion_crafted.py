"""A malicious server's crafted models in runs: imprint through SecAgg+, in the clear, refusals.

Digits on an MLP, 50 clients of about 18 training images (test_fraction 0.5: the server's
public pool is the 899 held-out images), batch 32: one local step, the setting where
imprint is exact. Under SecAgg+ the server sees one sum per round, of 4 clients' updates
(about 72 images), and reads them out of it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.inversion.imprint import ImprintAttack, bin_of, expected_recovered
from fedsim.run.runner import preflight
from server.strategy import CRAFTED
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory
from tests.server.test_secure_aggregation import SECAGG

BINS = 64
ROUNDS = 6
SETTINGS = {
    "data.num_clients": 50,
    "data.test_fraction": 0.5,
    "clients.per_round": 4,
    "clients.batch_size": 32,
    "clients.momentum": 0.0,
    "model": {"name": "mlp"},
    "privacy.inversion": {
        "attack": "imprint",
        "params": {"bins": BINS},
        "rounds": list(range(1, ROUNDS + 1)),
        "save_images": False,
    },
}


def scenario(secagg: dict[str, Any] | None, **changes: Any) -> Any:
    return make_scenario(
        rounds=ROUNDS, **{**SETTINGS, **changes, "defense.secure_aggregation": secagg}
    )


def plug_in_expectation(fed: Any, n: int) -> float:
    """Σ_j p_j (1 − p_j)^(n−1): the expected share alone, with the bins' real masses p_j
    under the clients' images (the public pool's quantiles make them only nearly 1/k)."""
    x_public = fed.data.dataset.x_test
    thresholds = ImprintAttack(bins=BINS).thresholds(x_public)
    bins = bin_of(fed.data.dataset.x_train, thresholds)
    p = torch.bincount(bins[bins >= 0], minlength=BINS).double() / len(bins)
    return float((p * (1 - p) ** (n - 1)).sum())


def test_imprint_reads_the_expected_share_out_of_the_secure_sum() -> None:
    secure = scenario(SECAGG)
    rows, summary = run_scenario_in_memory(secure)
    fed = federation_for(secure)
    recovered = sum(r["inversion"]["sum"]["recovered"] for r in rows)
    images = [r["inversion"]["sum"]["images"] for r in rows]
    measured = recovered / sum(images)
    plug_in = sum(n * plug_in_expectation(fed, n) for n in images) / sum(images)
    ideal = sum(n * expected_recovered(BINS, n) for n in images) / sum(images)
    # 20 seeds of one such round: share 0.29 ± 0.045 (sd) against the ideal 0.33 and the
    # plug-in 0.29; six rounds pooled: a standard error of about 0.02.
    assert abs(measured - plug_in) < 0.06
    assert abs(measured - ideal) < 0.1
    assert all(r["skipped"] == CRAFTED for r in rows)  # the model never moves
    assert len({r["accuracy"] for r in rows}) == 1
    assert all(set(r["inversion"]) == {"sum"} and r["secagg_error"] < 1e-3 for r in rows)
    assert summary["final_inversion_recovered"] == rows[-1]["inversion_recovered"]

    # In the clear the same server reads each client's update alone: ~18 images, not ~72.
    clear, _ = run_scenario_in_memory(scenario(None))
    assert clear[0]["sampled"] == rows[0]["sampled"]
    clear_share = sum(r["inversion_recovered"] for r in clear) / ROUNDS
    assert clear_share > measured + 0.3


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"model": {"name": "cnn"}}, "model.name"),
        (
            {
                "model": {"name": "lenet_sigmoid"},
                "privacy.inversion": {"attack": "idlg", "malicious_model": "inconsistent"},
            },
            "model.name",
        ),
        (
            {"privacy.inversion": {"attack": "imprint", "params": {"bins": 500}}},
            "privacy.inversion.params",
        ),
        (
            {"privacy.inversion": {"attack": "trap_weights", "threat_model": "client"}},
            "privacy.inversion.threat_model",
        ),
    ],
)
def test_crafted_attacks_refuse_what_they_cannot_craft(changes: dict, path: str) -> None:
    with pytest.raises(ScenarioError) as info:
        preflight(scenario(SECAGG, **changes))
    assert info.value.path == path


# 179 one-image clients (the DLG setting: one local step of batch 1), 4 per round, an MLP.
ONE_IMAGE = {
    "data.test_fraction": 0.9,
    "data.num_clients": 179,
    "clients.per_round": 4,
    "clients.batch_size": 1,
    "clients.momentum": 0.0,
    "clients.lr": 0.1,
    "model": {"name": "mlp"},
}


def idlg(iterations: int, secagg: dict[str, Any] | None, malicious: str) -> tuple[dict, str]:
    probe = {
        "attack": "idlg",
        "rounds": [1],
        "iterations": iterations,
        "max_clients": 1,
        "malicious_model": malicious,
        "save_images": False,
    }
    changes = {**ONE_IMAGE, "privacy.inversion": probe, "defense.secure_aggregation": secagg}
    rows, _ = run_scenario_in_memory(make_scenario(rounds=1, **changes))
    return rows[0], min(rows[0]["sampled"])


def test_model_inconsistency_makes_the_secure_sum_the_targets_update() -> None:
    # The curious server in the clear attacks the first sampled client's update; the
    # malicious one sends the others a dead model and attacks the secure sum. iDLG's L-BFGS
    # takes the same path on both: after 10 iterations the PSNRs agree to 0.2 dB (seeds 0-2:
    # 17.52/17.52, 12.17/12.17, 18.79/18.91), after 100 both are exact (≥ 60 dB; the
    # differences there are SecAgg's quantization, 2c/Q = 3.8e-6 per coordinate). Without
    # the inconsistency the same attack on the sum of 4 images gets below 12 dB.
    for iterations in (10, 100):
        clear, target = idlg(iterations, None, "none")
        secure, secure_target = idlg(iterations, SECAGG, "inconsistent")
        assert secure_target == target and set(secure["inversion"]) == {f"client{target}"}
        assert secure["skipped"] == CRAFTED
        if iterations == 10:
            assert abs(secure["psnr"] - clear["psnr"]) < 0.5
        else:
            assert clear["psnr"] > 60 and secure["psnr"] > 60
    honest, _ = idlg(100, SECAGG, "none")
    assert set(honest["inversion"]) == {"sum"} and honest["psnr"] < 15


def test_verify_model_detects_the_inconsistency_and_the_run_goes_on() -> None:
    probe = {"attack": "idlg", "rounds": [1], "iterations": 10, "save_images": False}
    changes = {
        **ONE_IMAGE,
        "defense.secure_aggregation": SECAGG,
        "clients.verify_model": True,
        "privacy.inversion": {**probe, "malicious_model": "inconsistent"},
    }
    rows, summary = run_scenario_in_memory(make_scenario(rounds=2, **changes))
    attacked, after = rows
    assert attacked["model_inconsistency_detected"] == 1
    assert attacked["skipped"].startswith("secure aggregation aborted: model inconsistency")
    assert "inversion" not in attacked and "secagg_error" not in attacked  # nothing revealed
    assert after["model_inconsistency_detected"] == 0 and after["skipped"] is None
    assert after["secagg_error"] < 1e-3 and summary["rounds"] == 2

    consistent, _ = run_scenario_in_memory(
        make_scenario(rounds=1, **{**changes, "privacy.inversion": probe})
    )
    assert consistent[0]["model_inconsistency_detected"] == 0
    assert set(consistent[0]["inversion"]) == {"sum"}


def test_verify_model_needs_secure_aggregation() -> None:
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(**{"clients.verify_model": True}))
    assert info.value.path == "clients.verify_model"
    assert "defense.secure_aggregation" in str(info.value)
