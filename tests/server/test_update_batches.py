"""Update batches: a round's updates published once as a matrix, checked at the server boundary.

The vectorized runtime answers a round's clients with one joint reply that refers to a
published :class:`~fedsim.protocol.UpdateBatch`; the server must check every row and its
metrics exactly as it checks a reply that carries them, and aggregate the matrix without
copying it when every row is accepted.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from flwr.app import ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from clients.app import make_client_app
from fedsim.params import all_finite, finite_rows
from fedsim.protocol import (
    METRICS,
    UPDATE_BATCH_KEY,
    UPDATE_KEY,
    UpdateBatch,
    publish_update_batch,
    to_array_record,
    withdraw_update_batch,
)
from fedsim.run.runtimes import vectorized as vectorized_runtime
from fedsim.run.runtimes.vectorized import VectorizedGrid
from fedsim.vectorized.buffers import ReusableMatrix
from server.app import run_server
from server.replies import ClientUpdate, parse_train_replies, stack_updates
from tests.conftest import RecordingObserver, make_scenario

DIM = 6
NODES = [101, 102, 103, 104]
CLIENT_OF = {node: i for i, node in enumerate(NODES)}


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    yield
    withdraw_update_batch()


def instruction(node: int) -> Message:
    return Message(RecordDict(), dst_node_id=node, message_type=MessageType.TRAIN)


def metrics(client: int, examples: int = 10) -> dict:
    return {"partition-id": client, "num-examples": examples, "train-loss": 0.5, "steps": 2}


def own_reply(node: int, update: torch.Tensor, examples: int = 10) -> Message:
    """A reply that carries its own update (the ClientApp's)."""
    content = RecordDict(
        {
            UPDATE_KEY: to_array_record(UPDATE_KEY, update),
            METRICS: MetricRecord(metrics(CLIENT_OF[node], examples)),
        }
    )
    reply = Message(content, reply_to=instruction(node))
    reply.metadata.__dict__["_src_node_id"] = node
    return reply


def batch_replies(updates: torch.Tensor, alone: tuple[int, ...] = ()) -> list[Message]:
    """The replies the vectorized runtime sends for a batch: one joint, one per node alone."""
    rows = {node: i for i, node in enumerate(NODES[: len(updates)])}
    together = [n for n in rows if n not in alone]
    batch = UpdateBatch(updates, rows, [metrics(CLIENT_OF[n]) for n in rows], together)
    joint, own = publish_update_batch(batch)
    replies = [Message(joint, reply_to=instruction(together[0]))] if together else []
    replies += [Message(own, reply_to=instruction(n)) for n in alone]
    for reply, node in zip(replies, [together[0], *alone] if together else alone, strict=True):
        reply.metadata.__dict__["_src_node_id"] = node
    return replies


def matrix(n: int = 4) -> torch.Tensor:
    return torch.arange(n * DIM, dtype=torch.float64).reshape(n, DIM) / 10


def test_a_joint_reply_gives_every_client_what_its_own_reply_would() -> None:
    updates = matrix()
    own = parse_train_replies(
        [own_reply(n, updates[i]) for i, n in enumerate(NODES)], CLIENT_OF, DIM
    )
    joint = parse_train_replies(batch_replies(updates.clone()), CLIENT_OF, DIM)
    assert [u.client_id for u in joint.updates] == [0, 1, 2, 3]
    for a, b in zip(own.updates, joint.updates, strict=True):
        assert torch.equal(a.update, b.update)
        assert (a.client_id, a.num_examples, a.train_loss) == (
            b.client_id,
            b.num_examples,
            b.train_loss,
        )
    assert joint.rejected == own.rejected == {}


def test_a_non_finite_row_is_rejected_like_a_non_finite_array() -> None:
    updates = matrix()
    updates[1, 2] = math.nan
    updates[3, 0] = -math.inf
    parsed = parse_train_replies(batch_replies(updates), CLIENT_OF, DIM)
    assert [u.client_id for u in parsed.updates] == [0, 2]
    assert parsed.rejected == {1: "update contains NaN/Inf", 3: "update contains NaN/Inf"}
    alone = parse_train_replies([own_reply(NODES[1], updates[1])], CLIENT_OF, DIM)
    assert alone.rejected == {1: "update contains NaN/Inf"}


def test_a_node_replying_alone_refers_to_its_row_only() -> None:
    updates = matrix()
    parsed = parse_train_replies(batch_replies(updates, alone=(NODES[2],)), CLIENT_OF, DIM)
    assert [u.client_id for u in parsed.updates] == [0, 1, 2, 3]
    assert torch.equal(parsed.updates[2].update, updates[2])
    replies = batch_replies(updates, alone=(NODES[2],))
    timed_out = parse_train_replies(replies[:1], CLIENT_OF, DIM)  # its own reply never came
    assert [u.client_id for u in timed_out.updates] == [0, 1, 3]


def test_a_withdrawn_or_wrong_sized_batch_is_rejected_not_raised() -> None:
    replies = batch_replies(matrix())
    withdraw_update_batch()
    parsed = parse_train_replies(replies, CLIENT_OF, DIM)
    assert parsed.updates == [] and "not published" in parsed.rejected[0]
    wrong = parse_train_replies(batch_replies(matrix()), CLIENT_OF, DIM + 1)
    assert wrong.updates == [] and "shape" in wrong.rejected[0]
    forged = Message(
        RecordDict({UPDATE_BATCH_KEY: ConfigRecord({"batch": 7, "together": False})}),
        reply_to=instruction(NODES[0]),
    )
    forged.metadata.__dict__["_src_node_id"] = NODES[0]
    assert "not a name" in parse_train_replies([forged], CLIENT_OF, DIM).rejected[0]


def test_bad_metrics_in_a_batch_are_rejected_as_in_a_reply() -> None:
    updates = matrix(2)
    rows = {NODES[0]: 0, NODES[1]: 1}
    bad = [metrics(0) | {"num-examples": 0}, metrics(1) | {"num-examples": 2.5}]
    joint, _ = publish_update_batch(UpdateBatch(updates, rows, bad, list(rows)))
    reply = Message(joint, reply_to=instruction(NODES[0]))
    reply.metadata.__dict__["_src_node_id"] = NODES[0]
    parsed = parse_train_replies([reply], CLIENT_OF, DIM)
    assert parsed.updates == []
    assert "outside" in parsed.rejected[0] and "expected an integer" in parsed.rejected[1]


def test_accepted_rows_are_aggregated_in_place_and_others_are_stacked() -> None:
    updates = matrix()
    parsed = parse_train_replies(batch_replies(updates), CLIENT_OF, DIM)
    stacked = stack_updates(parsed.updates)
    assert torch.equal(stacked, updates) and stacked.data_ptr() == updates.data_ptr()
    some = [parsed.updates[0], parsed.updates[2]]  # not consecutive rows: a copy
    copied = stack_updates(some)
    assert torch.equal(copied, updates[[0, 2]]) and copied.data_ptr() != updates.data_ptr()
    loose = [ClientUpdate(i, torch.ones(DIM, dtype=torch.float64) * i, 1, 0.0) for i in range(3)]
    assert torch.equal(stack_updates(loose), torch.stack([u.update for u in loose]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_rows_and_all_finite_agree_with_numpy(dtype: torch.dtype) -> None:
    big = torch.finfo(dtype).max
    rng = torch.Generator().manual_seed(0)
    values = torch.randn(40, 300, generator=rng).to(dtype)
    values[3, 7] = math.nan
    values[5, 0] = math.inf
    values[8, 1], values[8, 2] = math.inf, -math.inf  # sums to NaN
    values[11, :] = big  # finite entries whose sum overflows: still finite
    expected = np.isfinite(values.numpy()).all(axis=1)
    assert finite_rows(values).tolist() == expected.tolist()
    for row in range(len(values)):
        assert all_finite(values[row]) == bool(expected[row])
    assert not all_finite(values) and all_finite(values[[0, 1, 11]])


def test_the_update_matrix_is_reused_only_when_nobody_holds_it() -> None:
    buffers = ReusableMatrix()
    first = buffers.take(4, 3, torch.float64)
    address = first.data_ptr()
    row = first[2]
    del first
    held = buffers.take(4, 3, torch.float64)  # a row of the last one is still alive
    assert held.data_ptr() != address
    row[0] = 5.0  # and stays what its holder wrote
    assert row[0] == 5.0
    address = held.data_ptr()
    del held
    again = buffers.take(3, 3, torch.float64)
    assert again.data_ptr() == address and again.shape == (3, 3)
    del again
    wider = buffers.take(3, 4, torch.float64)
    assert wider.shape == (3, 4)


def test_a_vectorized_client_sending_nan_is_rejected_and_the_round_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scenario = make_scenario(
        rounds=2, runtime="vectorized", **{"data.num_clients": 5, "clients.per_round": 5}
    )
    real = vectorized_runtime.finish_train_in_batch

    def poisoned(context, job, row, result, privacy):  # noqa: ANN001, ANN202
        if job.client_id == 3:
            row[0] = math.nan
        return real(context, job, row, result, privacy)

    monkeypatch.setattr(vectorized_runtime, "finish_train_in_batch", poisoned)
    observer = RecordingObserver()
    grid = VectorizedGrid(make_client_app(scenario), scenario)
    run_server(grid, scenario, observer)
    for row in observer.rounds:
        assert list(row["rejected"]) == ["3"] and "NaN" in row["rejected"]["3"]
        assert row["skipped"] is None and math.isfinite(row["loss"])
