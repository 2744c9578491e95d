"""Node state: a client's DP ledger persists across rounds, and a resumed run hands it back."""

from __future__ import annotations

from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from clients.state import adopt_state
from fedsim.federation import federation_for
from fedsim.protocol import DP_EPSILON, DP_HISTORY, LAST_GLOBAL_KEY, LEDGER_KEY, METRICS
from tests.clients.messages import ask, grid_for, instruction
from tests.conftest import make_scenario

LOCAL_DP = {"privacy.local_dp": {"noise_multiplier": 1.0, "max_grad_norm": 1.0}}


def test_adopt_state_restores_only_what_the_node_lacks() -> None:
    own = ConfigRecord({"history": [1.0, 0.1, 5.0]})
    state = RecordDict({LEDGER_KEY: own})
    handed_back = RecordDict(
        {
            LEDGER_KEY: ConfigRecord({"history": [9.0, 9.0, 9.0]}),
            LAST_GLOBAL_KEY: ArrayRecord(),
            "arrays": ArrayRecord(),  # the message's own records are no node state
        }
    )
    adopt_state(handed_back, state)
    assert state[LEDGER_KEY] is own  # a node that holds its ledger keeps it
    assert state[LAST_GLOBAL_KEY] is handed_back[LAST_GLOBAL_KEY]  # a lost record comes back
    assert set(state) == {LEDGER_KEY, LAST_GLOBAL_KEY}


def test_the_dp_ledger_persists_across_rounds_in_the_node_state() -> None:
    scenario = make_scenario(**LOCAL_DP)
    weights = federation_for(scenario).initial_weights()
    grid = grid_for(scenario)
    first = ask(grid, 0, "train", instruction(weights, 1)).content[METRICS]
    second = ask(grid, 0, "train", instruction(weights, 2)).content[METRICS]
    sigma, q, steps = first[DP_HISTORY]  # the ledger: (σ, q, K) runs, equal (σ, q) merged
    assert steps > 0
    assert list(second[DP_HISTORY]) == [sigma, q, 2 * steps]  # both rounds' steps
    assert second[DP_EPSILON] > first[DP_EPSILON] > 0
    state = grid.context(grid.node_id(0)).state
    assert list(state[LEDGER_KEY]["history"]) == list(second[DP_HISTORY])
    # another node's ledger is its own
    other = ask(grid, 1, "train", instruction(weights, 2)).content[METRICS]
    assert other[DP_HISTORY][2] < 2 * steps


def test_a_restarted_node_handed_its_ledger_back_continues_it() -> None:
    scenario = make_scenario(**LOCAL_DP)
    weights = federation_for(scenario).initial_weights()
    grid = grid_for(scenario)
    ask(grid, 0, "train", instruction(weights, 1))
    continuous = ask(grid, 0, "train", instruction(weights, 2)).content[METRICS]
    ledger = ask(grid_for(scenario), 0, "train", instruction(weights, 1)).content[METRICS]
    # a fresh node (empty state), sent the round-1 ledger as a resumed run's server sends it
    handed = instruction(weights, 2, **{LEDGER_KEY: ConfigRecord({"history": ledger[DP_HISTORY]})})
    resumed = ask(grid_for(scenario), 0, "train", handed).content[METRICS]
    assert list(resumed[DP_HISTORY]) == list(continuous[DP_HISTORY])
    assert resumed[DP_EPSILON] == continuous[DP_EPSILON]
