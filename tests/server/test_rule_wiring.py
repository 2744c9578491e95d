"""The new rules inside fedsim: defaults from the scenario/model, the applied-change hook."""

from __future__ import annotations

import torch

from fedsim.federation import federation_for
from server.aggregators.fldetector import FLDetector, lbfgs_hvp
from server.parts import ServerParts, build_aggregator, output_layer
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory


def test_deepsight_reads_its_output_layer_from_the_model() -> None:
    scenario = make_scenario(defense={"aggregator": "deepsight"})
    fed = federation_for(scenario)
    outputs, inputs = output_layer(fed.build_model())
    rule = ServerParts.build(fed).aggregator
    assert (rule.output_size, rule.penultimate_size) == (outputs, inputs) == (10, 64)


def test_nnm_and_arc_get_f_from_the_attack_block_like_rules() -> None:
    scenario = make_scenario(
        **{"data.num_clients": 10, "clients.per_round": 5},
        attack={"name": "sign_flip", "count": 3},
        defense={"aggregator": "median", "pre": ["nnm", {"name": "arc", "params": {"f": 1}}]},
    )
    nnm, arc = build_aggregator(scenario).pre
    assert nnm.f == 2 and arc.f == 1  # ⌈3 · 5 / 10⌉, and a given f is kept


def _quadratic_round(w: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Clients' deltas −0.1·(w − cᵢ): the local step of the loss ½‖w − cᵢ‖²."""
    return -0.1 * (w[None, :] - centres)


def _prediction_error(rule: FLDetector, w_change: torch.Tensor, now: torch.Tensor) -> float:
    state = rule.state_dict()
    hvp = lbfgs_hvp(torch.stack(state["s"]), torch.stack(state["y"]), w_change)
    past = torch.stack([state["updates"][c][1] for c in range(now.shape[0])])
    return float(torch.linalg.vector_norm(past + hvp - now))


def test_fldetector_predicts_exactly_once_told_the_applied_change() -> None:
    # Central DP adds noise to the applied change: without the hook FLDetector's L-BFGS pairs
    # use the noiseless aggregate as the step and mispredict honest quadratic clients.
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 4, generator=g, dtype=torch.float64)
    errors = {}
    for told in (True, False):
        rule, w = FLDetector(window=3, base="fedavg"), torch.zeros(4, dtype=torch.float64)
        change = None
        for t in range(6):
            updates = _quadratic_round(w, centres)
            if change is not None and t >= 3:
                errors[told] = _prediction_error(rule, change, updates)
            aggregate = rule(updates, torch.ones(5), list(range(5))).update
            change = aggregate + 0.05 * torch.randn(4, generator=g, dtype=torch.float64)
            if told:
                rule.applied(change)
            w = w + change
    assert errors[True] < 1e-9 < 1e-3 < errors[False]


def test_new_rules_run_in_real_rounds_with_their_defaults() -> None:
    for defense in (
        {"aggregator": "deepsight"},
        {"aggregator": "fldetector", "params": {"window": 1}, "server_lr": 0.5},
        {"aggregator": "krum", "pre": ["nnm"]},
        {"aggregator": "fedavg", "pre": ["arc"]},
    ):
        scenario = make_scenario(
            rounds=3,
            **{"data.num_clients": 7, "clients.per_round": 7},
            attack={"name": "sign_flip", "count": 1},
            defense=defense,
        )
        rows, _ = run_scenario_in_memory(scenario)
        assert [r["skipped"] for r in rows] == [None] * 3, defense
