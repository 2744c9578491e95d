"""The ClientApp: identify, train and evaluate replies equal the core's own computations."""

from __future__ import annotations

import torch
from flwr.app import RecordDict

from fedsim.federation import federation_for
from fedsim.params import flat_params, load_flat_params
from fedsim.protocol import (
    IDENTIFY,
    METRICS,
    NUM_EXAMPLES,
    PARTITION_ID,
    STEPS,
    TRAIN_LOSS,
    UPDATE_KEY,
    from_array_record,
)
from fedsim.seeding import Stream, torch_generator
from fedsim.training import TrainSettings, evaluate, single_thread, train_local
from tests.clients.messages import ask, grid_for, instruction
from tests.conftest import make_scenario

CPU = torch.device("cpu")


def test_identify_replies_with_the_node_s_partition_id() -> None:
    grid = grid_for(make_scenario())
    for client in (0, 3):
        reply = ask(grid, client, f"query.{IDENTIFY}", RecordDict())
        assert reply.content[METRICS][PARTITION_ID] == client


def test_a_train_reply_carries_exactly_local_training_s_update() -> None:
    scenario = make_scenario()
    fed = federation_for(scenario)
    weights = fed.initial_weights()
    reply = ask(grid_for(scenario), 2, "train", instruction(weights, 3))
    assert not reply.has_error()
    update = from_array_record(reply.content[UPDATE_KEY], UPDATE_KEY)

    model = fed.build_model()
    load_flat_params(model, weights)
    x, y = fed.data.client(2)
    with single_thread(CPU):  # as the grid trains its clients
        result = train_local(
            model,
            x,
            y,
            TrainSettings.from_clients(scenario.clients),
            torch_generator(scenario.seed, Stream.TRAIN, 3, 2),
            fed.data.dataset.augment,
        )
    assert update.dtype == torch.float64
    assert torch.equal(update, flat_params(model).double() - weights.double())
    assert update.abs().sum() > 0
    metrics = reply.content[METRICS]
    assert metrics[PARTITION_ID] == 2 and metrics[NUM_EXAMPLES] == len(y)
    assert metrics[TRAIN_LOSS] == result.loss and metrics[STEPS] == result.steps


def test_an_evaluate_reply_is_the_global_model_on_the_client_s_own_data() -> None:
    scenario = make_scenario()
    fed = federation_for(scenario)
    weights = fed.initial_weights()
    reply = ask(grid_for(scenario), 4, "evaluate", instruction(weights, 1))
    model = fed.build_model()
    load_flat_params(model, weights)
    x, y = fed.data.client(4)
    with single_thread(CPU):
        expected = evaluate(model, x, y)
    metrics = reply.content[METRICS]
    assert metrics[PARTITION_ID] == 4 and metrics[NUM_EXAMPLES] == len(y) == expected.num_examples
    assert metrics["accuracy"] == expected.accuracy and metrics["loss"] == expected.loss


def test_a_malformed_message_gets_an_error_reply_naming_the_problem_and_the_node_goes_on() -> None:
    scenario = make_scenario()
    weights = federation_for(scenario).initial_weights()
    grid = grid_for(scenario)
    cases = [
        ("train", instruction(None, 1), "train message without the global weights"),
        ("train", instruction(weights, None), "train message without its round"),
        ("train", instruction(weights[:7], 1), "vector has 7 values, model has"),
        ("evaluate", instruction(None, 1), "evaluate message without the global weights"),
    ]
    for kind, content, reason in cases:
        reply = ask(grid, 1, kind, content)
        assert reply.has_error(), kind
        assert reply.error.reason.startswith("ValueError: ") and reason in reply.error.reason
    # the node answers a well-formed message as if nothing had happened
    after = ask(grid, 1, "train", instruction(weights, 1))
    fresh = ask(grid_for(scenario), 1, "train", instruction(weights, 1))
    assert torch.equal(
        from_array_record(after.content[UPDATE_KEY], UPDATE_KEY),
        from_array_record(fresh.content[UPDATE_KEY], UPDATE_KEY),
    )
