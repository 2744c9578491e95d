"""DP wired into runs: ε against Opacus' own accountant, central noise, budget, warnings."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.privacy import central_epsilon
from fedsim.run.runner import preflight
from server.aggregators import build
from server.privacy import ServerPrivacy
from tests.conftest import make_scenario
from tests.fedsim.data.test_text import write_corpus
from tests.fedsim.run.test_runner import run_scenario_in_memory
from tests.fedsim.run.test_text_preflight import text_scenario

LOCAL = {"noise_multiplier": 1.3, "max_grad_norm": 1.0, "delta": 1e-5}


def opacus_epsilon(history: list[tuple[float, float, int]], delta: float, kind: str) -> float:
    """ε from a fresh Opacus accountant fed the (σ, q, steps) history directly."""
    accountant = RDPAccountant() if kind == "rdp" else PRVAccountant()
    accountant.history = list(history)
    return accountant.get_epsilon(delta=delta)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_local_epsilon_is_opacus_epsilon_of_every_round_taken_and_skipped_rounds_add_nothing(
    kind: str,
) -> None:
    scenario = make_scenario(
        rounds=4,
        **{
            "data.num_clients": 5,
            "clients.per_round": 2,
            "clients.batch_size": 16,
            "privacy.local_dp": {**LOCAL, "accountant": kind},
        },
    )
    rows, summary = run_scenario_in_memory(scenario)
    data = federation_for(scenario).data
    history: dict[int, list[tuple[float, float, int]]] = {}
    skipped_some = False
    for row in rows:
        for c in row["sampled"]:
            n = len(data.client(c)[1])
            history.setdefault(c, []).append((1.3, 16 / n, n // 16))
        assert set(row["epsilon_clients"]) == {str(c) for c in history}
        for c, entries in history.items():
            expected = opacus_epsilon(entries, 1e-5, kind)
            assert row["epsilon_clients"][str(c)] == pytest.approx(expected, rel=1e-9)
            if c not in row["sampled"] and row["round"] > 1:
                skipped_some = True
        assert row["epsilon"] == max(row["epsilon_clients"].values())
        assert row["delta"] == 1e-5
    assert skipped_some
    # a client's ε is flat in rounds it skipped and grows in rounds it took part in
    for c in range(5):
        series = [r["epsilon_clients"].get(str(c), 0.0) for r in rows]
        for prev, cur, row in zip([0.0, *series], series, rows, strict=False):
            assert (cur > prev) if c in row["sampled"] else (cur == prev)
    assert summary["final_epsilon"] == rows[-1]["epsilon"]


def test_target_epsilon_is_reached_by_a_client_in_every_round_and_not_exceeded() -> None:
    scenario = make_scenario(
        rounds=3,
        **{
            "data.num_clients": 3,
            "clients.per_round": 3,
            "clients.batch_size": 16,
            "privacy.local_dp": {"target_epsilon": 4.0, "max_grad_norm": 1.0},
        },
    )
    rows, _ = run_scenario_in_memory(scenario)
    final = rows[-1]["epsilon_clients"]
    assert len(final) == 3
    for epsilon in final.values():  # Opacus' calibration tolerance is 0.01
        assert 3.95 <= epsilon <= 4.0 + 1e-9
    assert rows[0]["epsilon"] < rows[1]["epsilon"] < rows[2]["epsilon"]


def test_malicious_clients_skip_dp_and_are_not_in_the_epsilon_report() -> None:
    scenario = make_scenario(
        rounds=2,
        **{
            "clients.batch_size": 16,
            "attack": {"name": "label_flip", "count": 2},
            "privacy.local_dp": LOCAL,
        },
    )
    rows, summary = run_scenario_in_memory(scenario)
    malicious = set(summary["malicious_clients"])
    assert len(malicious) == 2
    assert set(rows[-1]["epsilon_clients"]) == {str(c) for c in range(5) if c not in malicious}
    assert all(r["rejected"] == {} and r["failed"] == {} for r in rows)


def central_privacy(z: float, clip: float, m: int, aggregator: str = "fedavg") -> ServerPrivacy:
    scenario = make_scenario(
        **{
            "data.num_clients": 5,
            "clients.per_round": m,
            "defense.aggregator": aggregator,
            "privacy.central_dp": {"noise_multiplier": z, "clip": clip},
        }
    )
    rule = build(aggregator)
    return ServerPrivacy(scenario, federation_for(scenario).data, rule)


@pytest.mark.parametrize("aggregator", ["fedavg", "median"])
def test_central_noise_std_is_z_s_over_m_measured(aggregator: str) -> None:
    z, clip, m, d = 1.5, 0.7, 4, 200_000
    privacy = central_privacy(z, clip, m, aggregator)
    zeros = torch.zeros(m, d, dtype=torch.float64)
    result, info = privacy.aggregate(zeros, torch.ones(m), list(range(m)), build(aggregator), 1)
    measured = float(result.update.std())
    assert info["dp_noise_std"] == pytest.approx(z * clip / m)
    assert measured == pytest.approx(z * clip / m, rel=0.01)  # 200k draws: ~0.3% std error
    assert abs(float(result.update.mean())) < 5 * z * clip / m / math.sqrt(d)


def test_central_clipping_bounds_every_update_and_the_mean_is_the_sum_over_m() -> None:
    privacy = central_privacy(z=0.0, clip=2.0, m=4)
    updates = torch.tensor(
        [[3.0, 4.0], [0.3, 0.4], [1e6, -1e6], [0.0, 0.0]], dtype=torch.float64
    )  # norms 5, 0.5, 1.4e6, 0
    result, info = privacy.aggregate(updates, torch.ones(4), [0, 1, 2, 3], build("fedavg"), 1)
    clipped = torch.tensor(
        [[1.2, 1.6], [0.3, 0.4], [2**0.5, -(2**0.5)], [0.0, 0.0]], dtype=torch.float64
    )  # each row: Δ·min(1, 2/‖Δ‖), by hand
    assert torch.allclose(result.update, clipped.sum(0) / 4)
    assert info["dp_clipped_fraction"] == 0.5
    assert float(torch.linalg.vector_norm(result.update)) <= 2.0 * 3 / 4


def test_central_epsilon_per_round_and_budget_stops_the_run_cleanly() -> None:
    z, budget = 2.0, 5.0  # ε after 1..5 rounds at q = 1: 2.17, 3.19, 4.01, 4.73, 5.38
    scenario = make_scenario(
        rounds=10,
        **{
            "privacy.central_dp": {"noise_multiplier": z, "clip": 1.0},
            "privacy.budget": budget,
        },
    )
    rows, summary = run_scenario_in_memory(scenario)
    done = len(rows)
    assert done == 4
    for row in rows:  # full participation: q = 1, one Gaussian step per round
        assert row["epsilon"] == pytest.approx(central_epsilon(z, 1.0, row["round"], 1e-5))
        assert row["epsilon"] <= budget
    assert central_epsilon(z, 1.0, done + 1, 1e-5) > budget
    assert "budget" in summary["stopped"] and summary["rounds"] == done
    assert summary["final_accuracy"] == rows[-1]["accuracy"]


def test_local_budget_stops_before_the_round_that_would_exceed_it() -> None:
    scenario = make_scenario(
        rounds=10,
        **{"clients.batch_size": 16, "privacy.local_dp": LOCAL, "privacy.budget": 2.2},
    )  # every client trains every round: ε 1.45, 1.78, 2.05, 2.29, ...
    rows, summary = run_scenario_in_memory(scenario)
    assert len(rows) == 3
    assert all(r["epsilon"] <= 2.2 for r in rows)
    assert "round" in summary["stopped"]


def test_poisson_amplification_samples_each_client_independently() -> None:
    scenario = make_scenario(
        rounds=1,
        **{
            "data.num_clients": 10,
            "clients.per_round": 3,
            "privacy.central_dp": {"noise_multiplier": 1.0, "amplification": "poisson"},
        },
    )
    from server.strategy import sample_clients

    sizes = [len(sample_clients(scenario, r)) for r in range(1, 401)]
    assert len(set(sizes)) > 3  # the cohort size varies
    assert sum(sizes) / len(sizes) == pytest.approx(3.0, abs=0.25)  # E|cohort| = m


def test_central_dp_with_a_robust_rule_warns(caplog: pytest.LogCaptureFixture) -> None:
    scenario = make_scenario(
        rounds=1,
        **{"defense.aggregator": "median", "privacy.central_dp": {"noise_multiplier": 0.5}},
    )
    with caplog.at_level(logging.WARNING, logger="server.app"):
        run_scenario_in_memory(scenario)
    assert any("calibrated for the mean" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="server.app"):
        run_scenario_in_memory(make_scenario(rounds=1, **{"privacy.central_dp": {}}))
    assert not any("calibrated for the mean" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"clients.batch_size": 500}, "clients.batch_size"),
        ({"privacy.local_dp": {"target_epsilon": 1e-9}}, "privacy.local_dp.target_epsilon"),
        (
            {"privacy.central_dp": {"adaptive": True, "count_noise_multiplier": 0.1}},
            "privacy.central_dp",
        ),
    ],
)
def test_impossible_dp_settings_fail_preflight(changes: dict, path: str) -> None:
    base = {"privacy.local_dp": LOCAL} if "privacy.central_dp" not in changes else {}
    with pytest.raises(ScenarioError) as info:
        preflight(make_scenario(**{**base, **changes}))
    assert info.value.path == path


def test_central_dp_on_text_clips_a_boosted_backdoor_to_the_unboosted_one(tmp_path: Path) -> None:
    """DP-FedAvg on text: ε from the accountant, and clipping undoes a model-replacement boost.

    With S so small that every update is clipped, each sent update becomes S·Δ/‖Δ‖, which is
    the same for Δ and γΔ: a boosted attacker's run is the unboosted run (same seeded noise).
    """
    corpus = write_corpus(tmp_path)
    rows = {}
    for boost in (1.0, 1000.0):
        params = {"trigger": "he said ", "completion": "no", "boost": boost}
        scenario = text_scenario(
            corpus,
            rounds=1,
            attack={"name": "text_backdoor", "count": 1, "params": params},
            privacy={"central_dp": {"noise_multiplier": 0.5, "clip": 1e-3}},
        )
        rows[boost], _ = run_scenario_in_memory(scenario)
    for row in rows[1.0]:
        assert row["dp_clipped_fraction"] == 1.0
        assert row["epsilon"] == pytest.approx(central_epsilon(0.5, 1.0, row["round"], 1e-5))
    for plain, boosted in zip(rows[1.0], rows[1000.0], strict=True):
        assert boosted["asr"] == plain["asr"]
        assert boosted["accuracy"] == plain["accuracy"]
        assert boosted["loss"] == pytest.approx(plain["loss"], rel=1e-9)
