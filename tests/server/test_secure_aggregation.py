r"""SecAgg+ on fedsim's runs (``defense.secure_aggregation``), inline, on small digits scenarios.

**The bound the tests check.** Client ``i`` quantizes ``w_i Δ_i`` (``w_i = n_i / W``, ``W`` the
largest example count announced at setup) to integers in ``[0, Q]`` on a grid of step
``2c/Q``, rounding each coordinate stochastically to one of its two neighbours, so its
dequantized value is within one step of ``w_i Δ_i`` (nothing is clipped while
``|w_i Δ_i| ≤ c``). The sum's masks cancel exactly modulo ``m`` (``n·Q < m``: no wrap), so the
decoded sum is within ``|A|·2c/Q`` of ``Σ_{i∈A} w_i Δ_i`` per coordinate, and the server's
mean ``Ŝ·W/Σn_i`` within

.. math:: |A| \cdot \frac{2c}{Q} \cdot \frac{W}{\sum_{i \in A} n_i}

of FedAvg's weighted mean ``Σ n_i Δ_i / Σ n_i``: ``secagg_bound``, recomputed here from the
example counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from flwr.app import Context, Message, MetricRecord, RecordDict

from clients.app import make_client_app
from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.protocol import (
    METRICS,
    NUM_EXAMPLES,
    SECAGG_MASKED_KEY,
    SECAGG_PLAIN_KEY,
    TRAIN_LOSS,
    UPDATE_KEY,
    to_array_record,
)
from fedsim.results import read_metrics
from fedsim.run.runner import preflight, run_scenario
from fedsim.scenario import Scenario
from fedsim.secagg import SecAggSettings
from server.secure_aggregation import SecureAggregation, _masked_reply
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import numbers, run_scenario_in_memory

SECAGG = {
    "protocol": "secaggplus",
    "num_shares": 0.5,
    "reconstruction_threshold": 0.6,
    "clipping_range": 8.0,
    "quantization_range": 4194304,
    "modulus_range": 4294967296,
    "groups": 1,
}
TIMINGS = ("time_s", "secagg_s")


def secure(secagg: dict[str, Any] | None = SECAGG, **changes: Any) -> Scenario:
    base = {"rounds": 2, "data.num_clients": 8, "clients.per_round": 6}
    return make_scenario(**{**base, **changes, "defense.secure_aggregation": secagg})


def without_timings(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def bound(row: dict[str, Any], counts: dict[int, int]) -> float:
    """``|A| · 2c/Q · W / Σ n_i`` for the row's survivors (every replier here)."""
    survivors = row["replied"]
    scale = max(counts[c] for c in row["sampled"])
    step = 2 * SECAGG["clipping_range"] / SECAGG["quantization_range"]
    return len(survivors) * step * scale / sum(counts[c] for c in survivors)


def test_fedavg_under_secagg_matches_the_clear_run() -> None:
    clear, _ = run_scenario_in_memory(secure(None))
    masked, summary = run_scenario_in_memory(secure())
    scenario = secure()
    data = federation_for(scenario).data
    counts = {c: data.num_examples(c) for c in range(scenario.data.num_clients)}
    for plain, row in zip(clear, masked, strict=True):
        assert row["skipped"] is None
        assert abs(row["accuracy"] - plain["accuracy"]) <= 0.01
        for key in ("sampled", "replied", "dropped", "failed", "rejected", "counts"):
            assert row[key] == plain[key], key
        assert row["train_loss"] == pytest.approx(plain["train_loss"], abs=1e-3)
        assert row["secagg_bound"] == pytest.approx(bound(row, counts))
        assert 0 < row["secagg_error"] < row["secagg_bound"]
        assert row["secagg_messages"] == 3 * 2 * 6  # three extra exchanges, both ways, 6 nodes
        assert row["secagg_min_sum_size"] == len(row["replied"]) == 6  # one sum: the cohort's
        dim = federation_for(scenario).initial_weights().numel()
        assert row["secagg_bytes"] > 8 * dim and row["secagg_s"] > 0  # the masked vector
    assert summary["final_secagg_error"] == masked[-1]["secagg_error"]
    assert "final_secagg_bytes" in summary and "final_secagg_s" in summary


def test_same_seed_twice_gives_the_same_metrics() -> None:
    first, _ = run_scenario_in_memory(secure())
    second, _ = run_scenario_in_memory(secure())
    assert without_timings(first) == without_timings(second)


def test_twenty_percent_dropouts_still_finish() -> None:
    rows, summary = run_scenario_in_memory(secure(rounds=3, **{"faults.dropout": 0.2}))
    assert sum(len(row["dropped"]) for row in rows) > 0  # dropped after sharing their keys
    for row in rows:
        assert row["skipped"] is None, row["skipped"]
        assert row["secagg_error"] < row["secagg_bound"]
        assert not set(row["replied"]) & set(row["dropped"])
    assert summary["rounds"] == 3


def unmask_fails_for(scenario: Scenario, client: int):  # noqa: ANN201
    """The real ClientApp, except that ``client`` drops before unmasking (after masking)."""
    inner = make_client_app(scenario)

    def app(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if msg.metadata.message_type == "query.secagg_unmask" and partition == client:
            raise ConnectionError("gone after masking")
        return inner(msg, context)

    return app


def test_a_client_dropping_after_masking_is_recovered_through_the_shares() -> None:
    scenario = secure(rounds=1)
    rows, _ = run_scenario_in_memory(scenario)
    victim = rows[0]["sampled"][0]
    dropped, _ = run_scenario_in_memory(scenario, unmask_fails_for(scenario, victim))
    row = dropped[0]
    assert row["skipped"] is None
    assert victim in row["replied"]  # its masked vector is in the sum
    assert row["secagg_error"] < row["secagg_bound"]
    assert row["accuracy"] == pytest.approx(rows[0]["accuracy"], abs=0.01)


def test_a_round_whose_setup_fails_is_skipped_cleanly() -> None:
    scenario = secure(rounds=2)
    inner = make_client_app(scenario)

    def app(msg: Message, context: Context) -> Message:
        if msg.metadata.message_type == "query.secagg_setup":
            raise ConnectionError("no keys today")
        return inner(msg, context)

    rows, summary = run_scenario_in_memory(scenario, app)
    for row in rows:
        assert row["skipped"] == "secure aggregation aborted: SecAgg+ setup: no node answered"
        assert row["replied"] == [] and "secagg_error" not in row
    assert summary["rounds"] == 2


def test_below_the_threshold_the_round_fails_cleanly() -> None:
    # threshold 1 (Flower's "all shares") and 6 nodes: a dropped node's key cannot be rebuilt
    scenario = secure(
        {**SECAGG, "num_shares": 1, "reconstruction_threshold": 1},
        rounds=2,
        **{"faults.dropout": 0.3},
    )
    rows, summary = run_scenario_in_memory(scenario)
    failed = [row for row in rows if row["dropped"]]
    assert failed
    for row in failed:
        assert row["skipped"].startswith("secure aggregation aborted: SecAgg+")
        assert "threshold" in row["skipped"]
        assert "secagg_error" not in row
    assert summary["rounds"] == 2


@pytest.mark.parametrize(
    ("changes", "path", "words"),
    [
        ({"defense.aggregator": "median"}, "defense.aggregator", "use fedavg"),
        (
            {"defense.pre": [{"name": "bucketing", "params": {"bucket_size": 2}}]},
            "defense.pre",
            "single updates",
        ),
        ({"privacy.central_dp": {"noise_multiplier": 1.0}}, "privacy.central_dp", "local_dp"),
        (
            {"privacy.membership": {"attack": "update", "threat_model": "server"}},
            "privacy.membership.threat_model",
            "single updates",
        ),
        ({"runtime": "vectorized"}, "runtime", "not yet"),
        (
            {"defense.secure_aggregation.groups": 4},
            "defense.secure_aggregation.groups",
            "at most 3 groups",
        ),
        (
            {"defense.secure_aggregation.groups": 2, "defense.aggregator": "foolsgold"},
            "defense.aggregator",
            "follows each client across rounds",
        ),
        (
            {
                "defense.secure_aggregation.groups": 3,
                "defense.aggregator": "krum",
                "defense.params": {"f": 1},
            },
            "defense.secure_aggregation.groups",
            "the rule runs on the 3 group sums",
        ),
        (
            {"defense.secure_aggregation.clipping_range": 0.0},
            "defense.secure_aggregation.clipping_range",
            "must be a finite number > 0",
        ),
        (
            {"defense.secure_aggregation.quantization_range": 2**30},
            "defense.secure_aggregation.quantization_range",
            "wraps modulo",
        ),
    ],
)
def test_refused_settings_name_their_key(changes: dict[str, Any], path: str, words: str) -> None:
    raw = {"defense.secure_aggregation": dict(SECAGG)}
    for key, value in changes.items():
        if key.startswith("defense.secure_aggregation."):
            raw["defense.secure_aggregation"][key.rsplit(".", 1)[1]] = value
        else:
            raw[key] = value
    scenario = make_scenario(**{"data.num_clients": 8, "clients.per_round": 6, **raw})
    with pytest.raises(ScenarioError) as caught:
        preflight(scenario)
    assert caught.value.path == path
    assert words in str(caught.value)


def test_fedavg_on_group_sums_is_the_cohort_mean() -> None:
    clear, _ = run_scenario_in_memory(secure(None))
    grouped, _ = run_scenario_in_memory(secure({**SECAGG, "groups": 2}))
    for plain, row in zip(clear, grouped, strict=True):
        assert row["skipped"] is None and row["secagg_groups"] == 2
        assert row["secagg_min_sum_size"] == 3  # 6 per round in 2 groups: each hides among 3
        assert abs(row["accuracy"] - plain["accuracy"]) <= 0.01
        assert row["secagg_error"] < row["secagg_bound"]


def test_a_failed_group_is_left_out_and_the_others_go_on() -> None:
    scenario = secure({**SECAGG, "groups": 2}, rounds=1)
    sampled = run_scenario_in_memory(scenario)[0][0]["sampled"]
    first = SecureAggregation(SecAggSettings(), scenario.seed, groups=2).split(1, sampled)[0]
    inner = make_client_app(scenario)

    def app(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        if msg.metadata.message_type == "query.secagg_setup" and partition in first:
            raise ConnectionError("offline")
        return inner(msg, context)

    (row,), _ = run_scenario_in_memory(scenario, app)
    assert row["skipped"] is None and row["secagg_groups"] == 1
    assert sorted(int(c) for c in row["failed"]) == first
    assert not set(row["replied"]) & set(first)


def test_a_robust_rule_runs_on_group_sums() -> None:
    scenario = secure(
        {**SECAGG, "groups": 3},
        **{"defense.aggregator": "median", "attack": {"name": "sign_flip", "count": 2}},
    )
    rows, _ = run_scenario_in_memory(scenario)
    for row in rows:
        assert row["skipped"] is None and row["secagg_groups"] == 3
        assert row["secagg_min_sum_size"] == 2  # 6 per round in 3 groups of 2
        assert row["secagg_error"] < 1e-3  # sign flippers' weighted updates may be clipped


def test_local_dp_clients_report_their_epsilon_through_secagg() -> None:
    dp = {"noise_multiplier": 1.0, "max_grad_norm": 1.0}
    clear, _ = run_scenario_in_memory(secure(None, rounds=1, **{"privacy.local_dp": dp}))
    masked, _ = run_scenario_in_memory(secure(rounds=1, **{"privacy.local_dp": dp}))
    assert masked[0]["epsilon_clients"] == clear[0]["epsilon_clients"]
    assert masked[0]["skipped"] is None


def test_aggregate_probes_and_client_side_defences_are_allowed() -> None:
    preflight(
        secure(
            **{
                "privacy.inversion": {"attack": "idlg", "num_images": 1, "threat_model": "client"},
                "defense.crfl": {"rho": 100.0},
            }
        )
    )


def test_the_cli_refuses_a_rule_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\nrounds: 1\nruntime: inline\n"
        "defense: {aggregator: krum, secure_aggregation: {protocol: secaggplus}}\n"
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedsim: error: defense.aggregator:")
    assert "krum needs single updates" in err and "use fedavg" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
@pytest.mark.parametrize("engine", ["fedsim", "flower"])
def test_ray_gives_the_inline_metrics(tmp_path: Path, engine: str) -> None:
    """The same ClientApp and ServerApp on Ray: the node's SecAgg+ state travels with it."""
    scenario = secure(rounds=2)
    run_scenario(scenario, tmp_path / "inline", show_progress=False)
    on_ray = secure(rounds=2, runtime="ray")
    on_ray = on_ray.model_copy(update={"ray": on_ray.ray.model_copy(update={"engine": engine})})
    run_scenario(on_ray, tmp_path / "ray", show_progress=False)
    inline_rows, ray_rows = read_metrics(tmp_path / "inline"), read_metrics(tmp_path / "ray")
    assert numbers(inline_rows) == numbers(ray_rows)
    assert [r["secagg_error"] for r in ray_rows] == [r["secagg_error"] for r in inline_rows]


def _secure_reply(plain: torch.Tensor, num_examples: int = 5) -> RecordDict:
    masked = torch.tensor([1, 2, 3], dtype=torch.int64)
    return RecordDict(
        {
            SECAGG_MASKED_KEY: to_array_record(SECAGG_MASKED_KEY, masked),
            SECAGG_PLAIN_KEY: to_array_record(UPDATE_KEY, plain),
            METRICS: MetricRecord({NUM_EXAMPLES: num_examples, TRAIN_LOSS: 0.5}),
        }
    )


def test_a_secure_reply_passes_the_clear_replys_checks() -> None:
    settings = SecAggSettings()
    vector, (update, count, loss, privacy) = _masked_reply(
        _secure_reply(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)),
        3,
        settings.modulus_range,
    )
    assert vector.tolist() == [1, 2, 3] and update.tolist() == [0.1, -0.2, 0.3]
    assert (count, loss, privacy) == (5, 0.5, None)
    # A NaN in the clear part (what secagg_error is measured on) is rejected like a clear
    # update's, and so is an example count outside 1..10**9.
    nan = _secure_reply(torch.tensor([0.1, float("nan"), 0.3], dtype=torch.float64))
    assert _masked_reply(nan, 3, settings.modulus_range) == "update contains NaN/Inf"
    huge = _secure_reply(torch.zeros(3, dtype=torch.float64), num_examples=10**9 + 1)
    assert "outside 1..1000000000" in _masked_reply(huge, 3, settings.modulus_range)
