"""A client's train round: who attacks when, injected crashes, the float64 Δ, the node state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from flwr.app import Context, Message, RecordDict
from flwr.app.user_config import UserConfig

from clients.train_round import (
    TrainJob,
    client_update,
    finish_train,
    finish_train_in_batch,
    float64_delta,
    local_attack,
    start_train,
)
from fedsim.federation import federation_for
from fedsim.protocol import LAST_GLOBAL_KEY, METRICS, UPDATE_KEY, from_array_record
from fedsim.training import TrainResult
from tests.clients.messages import instruction
from tests.conftest import make_scenario


def _context(client: int) -> Context:
    return Context(
        run_id=1,
        node_id=10_000 + client,
        node_config=UserConfig({"partition-id": client, "num-partitions": 5}),
        state=RecordDict(),
        run_config=UserConfig(),
    )


def _train_message(weights: torch.Tensor, server_round: int) -> Message:
    return Message(instruction(weights, server_round), 10_000, "train")


def test_only_malicious_clients_attack_and_only_inside_the_window() -> None:
    fed = federation_for(
        make_scenario(
            rounds=4, attack={"name": "sign_flip", "count": 2, "start_round": 2, "stop_round": 3}
        )
    )
    bad, good = min(fed.malicious), min(set(range(5)) - fed.malicious)
    assert [local_attack(fed, bad, r) is fed.attack for r in (1, 2, 3, 4)] == [
        False,
        True,
        True,
        False,
    ]
    assert all(local_attack(fed, good, r) is None for r in (1, 2, 3, 4))


def test_start_train_reads_the_message_and_a_crash_fault_raises() -> None:
    fed = federation_for(make_scenario())
    weights = fed.initial_weights()
    job = start_train(fed, _train_message(weights, 2), _context(3))
    assert (job.client_id, job.server_round, job.attack, job.dp) == (3, 2, None, None)
    assert torch.equal(job.global_weights, weights)
    assert torch.equal(job.y, fed.data.client(3)[1])  # honest: its own data, unpoisoned
    crashing = federation_for(make_scenario(faults={"crash": 1.0}))
    with pytest.raises(RuntimeError, match="injected crash of client 3"):
        start_train(crashing, _train_message(weights, 1), _context(3))


def test_float64_delta_is_exact_where_float32_rounds() -> None:
    local, glob = torch.tensor([1.0, 3.0]), torch.tensor([0.1, 1e-8])
    out = torch.empty(2, dtype=torch.float64)
    delta = float64_delta(local, glob, out=out)
    assert delta is out and torch.equal(delta, local.double() - glob.double())
    assert float((local - glob)[1]) == 3.0 != delta[1]  # float32 loses the 1e-8


class _Recorder:
    """A stand-in update attack that reads the last global change (as Neurotoxin does)."""

    uses_reference = True

    def __init__(self) -> None:
        self.references: list[torch.Tensor | None] = []

    def transform_update(
        self, delta: torch.Tensor, reference: torch.Tensor | None, generator: Any
    ) -> torch.Tensor:
        self.references.append(reference)
        return -delta


def test_an_attack_reads_the_global_change_since_the_client_last_trained() -> None:
    fed = federation_for(make_scenario())
    context, attack = _context(1), _Recorder()
    first, second = torch.zeros(4), torch.tensor([1.0, 2.0, 3.0, 4.0])
    job = start_train(fed, _train_message(fed.initial_weights(), 1), context)
    delta = torch.ones(4, dtype=torch.float64)
    for weights in (first, second):
        job = dataclasses.replace(
            job, global_weights=weights, attack=attack, attack_rng=torch.Generator()
        )
        assert torch.equal(client_update(context, job, delta), -delta)
    assert attack.references[0] is None  # the first time: no earlier global model
    assert torch.equal(attack.references[1], (second - first).double())
    assert torch.equal(from_array_record(context.state[LAST_GLOBAL_KEY], LAST_GLOBAL_KEY), second)


def test_a_batched_client_s_row_gets_the_reply_s_update_and_metrics() -> None:
    fed = federation_for(make_scenario())
    weights = fed.initial_weights()
    msg = _train_message(weights, 1)
    job: TrainJob = dataclasses.replace(
        start_train(fed, msg, _context(2)), attack=_Recorder(), attack_rng=torch.Generator()
    )
    local = weights + 0.5
    result = TrainResult(loss=0.25, steps=3, num_examples=7)
    reply = finish_train(msg, _context(2), job, local, result, {})
    row = float64_delta(local, weights)
    metrics = finish_train_in_batch(_context(2), job, row, result, {})
    assert torch.equal(row, from_array_record(reply.content[UPDATE_KEY], UPDATE_KEY))
    assert torch.equal(row, -(local.double() - weights.double()))  # the attack rewrote it
    assert metrics == dict(reply.content[METRICS])
