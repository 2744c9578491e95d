"""The client's side of SecAgg+ (``defense.secure_aggregation``): one handler per stage.

The server runs Flower's SecAgg+ (Bell et al., CCS 2020) around the round's train message;
a node answers each stage with :class:`fedsim.secagg.SecAggClient`, which it keeps in its
node state (:data:`~fedsim.protocol.SECAGG_STATE_KEY`, pickled: the state never leaves the
node, and travels with the node's context on the ``ray`` runtime) between the messages:

1. ``query.secagg_setup`` (:func:`setup_reply`): a fresh client for the round, its public keys
   and its example count (public, as in Flower: ``num_examples`` travels in the clear);
2. ``query.secagg_share_keys`` (:func:`share_keys_reply`): encrypted shares of its secrets;
3. the train message (:func:`masked_train_reply`): the client trains as always, then sends,
   instead of its clear Δ, the masked quantization of ``(n_i / W) · Δ`` where ``n_i`` is its
   example count and ``W`` the largest count announced at setup (the public ``scale`` the
   server sends), so that the server's decoded sum times ``W / Σ n_i`` is FedAvg's weighted
   mean. The quantization's rounding draws come from the client's seeded ``SECAGG`` stream;
4. ``query.secagg_unmask`` (:func:`unmask_reply`): its shares of its neighbours' secrets; the
   state is then dropped.

A node's SecAgg+ id is its partition id + 1 (public, unique in the run).

With ``clients.verify_model`` the setup message also carries the hash of the model the server
will send this node: the node keeps it (and answers it), refuses at key sharing neighbours
that announced another hash, keys its channels with it, and, at the train message, checks the
weights it received against it (:class:`~fedsim.secagg.ModelInconsistencyError` otherwise).
"""

from __future__ import annotations

import pickle
import time

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from clients.train_round import global_weights_of
from fedsim.federation import Federation
from fedsim.protocol import (
    METRICS,
    NUM_EXAMPLES,
    SECAGG_KEY,
    SECAGG_MASK_SECONDS,
    SECAGG_MASKED_KEY,
    SECAGG_PLAIN_KEY,
    SECAGG_STATE_KEY,
    SERVER_ROUND,
    UPDATE_KEY,
    array_to_numpy,
    to_array_record,
)
from fedsim.secagg import (
    Cohort,
    ModelInconsistencyError,
    SecAggAbortedError,
    SecAggClient,
    SecAggSettings,
    model_hash,
    quantize,
)
from fedsim.seeding import Stream, numpy_rng

__all__ = [
    "masked_train_reply",
    "secagg_id",
    "setup_reply",
    "share_keys_reply",
    "unmask_reply",
]


def secagg_id(context: Context) -> int:
    """The SecAgg+ id of the node: its partition id + 1."""
    return int(context.node_config["partition-id"]) + 1


def setup_reply(fed: Federation, msg: Message, context: Context) -> Message:
    """Stage 0: make the round's SecAgg+ client; reply with its public keys and example count."""
    config = msg.content[SECAGG_KEY]
    settings = SecAggSettings(
        num_shares=config["num_shares"],
        reconstruction_threshold=config["reconstruction_threshold"],
        clipping_range=float(config["clipping_range"]),
        quantization_range=int(config["quantization_range"]),
        modulus_range=int(config["modulus_range"]),
    )
    cohort = Cohort(
        num_nodes=int(config["num_nodes"]),
        num_shares=int(config["num_shares_resolved"]),
        threshold=int(config["threshold"]),
    )
    announced = config.get("model_hash", b"")
    client = SecAggClient(secagg_id(context), settings, cohort, model_hash=announced)
    pk1, pk2 = client.setup()
    _save(context, client, int(config[SERVER_ROUND]))
    client_id = int(context.node_config["partition-id"])
    reply = ConfigRecord({"pk1": pk1, "pk2": pk2, NUM_EXAMPLES: fed.data.num_examples(client_id)})
    if announced:
        reply["model_hash"] = announced
    return Message(RecordDict({SECAGG_KEY: reply}), reply_to=msg)


def share_keys_reply(msg: Message, context: Context) -> Message:
    """Stage 1: the encrypted shares for each neighbour whose public keys the server sent."""
    config = msg.content[SECAGG_KEY]
    client = _load(context, int(config[SERVER_ROUND]))
    keys = {
        int(i): (pk1, pk2)
        for i, pk1, pk2 in zip(config["ids"], config["pk1"], config["pk2"], strict=True)
    }
    hashes = None
    if "hashes" in config:
        hashes = dict(zip((int(i) for i in config["ids"]), config["hashes"], strict=True))
    ciphertexts = client.share_keys(keys, hashes)
    _save(context, client, int(config[SERVER_ROUND]))
    reply = ConfigRecord({"ids": list(ciphertexts), "ciphertexts": list(ciphertexts.values())})
    return Message(RecordDict({SECAGG_KEY: reply}), reply_to=msg)


def masked_train_reply(fed: Federation, msg: Message, context: Context, reply: Message) -> Message:
    """Stage 2: replace the clear Δ of a train ``reply`` by its masked quantization.

    The reply keeps its metrics (example count, loss: public, as in Flower) and gets the masked
    int64 vector under :data:`~fedsim.protocol.SECAGG_MASKED_KEY`. It also carries the clear Δ
    under :data:`~fedsim.protocol.SECAGG_PLAIN_KEY`, for the simulation's ``secagg_error``
    figure only: a real client would not send it.
    """
    if reply.has_error():
        return reply
    config = msg.content[SECAGG_KEY]
    server_round = int(config[SERVER_ROUND])
    client = _load(context, server_round)
    if client.model_hash:
        received = model_hash(global_weights_of(msg).numpy())
        if received != client.model_hash:
            raise ModelInconsistencyError(
                f"SecAgg+ node {client.node_id}: {ModelInconsistencyError.MARK}: the model it "
                "received is not the one announced at setup"
            )
    started = time.perf_counter()
    delta = array_to_numpy(reply.content[UPDATE_KEY][UPDATE_KEY]).astype(np.float64)
    metrics = dict(reply.content[METRICS])
    weight = int(metrics[NUM_EXAMPLES]) / float(config["scale"])
    client_id = int(context.node_config["partition-id"])
    rng = numpy_rng(fed.scenario.seed, Stream.SECAGG, server_round, client_id)
    quantized = quantize(delta, client.settings, rng, weight=weight)
    forwarded = {int(i): c for i, c in zip(config["ids"], config["ciphertexts"], strict=True)}
    masked = client.masked_vector(forwarded, quantized)
    _save(context, client, server_round)
    metrics[SECAGG_MASK_SECONDS] = time.perf_counter() - started
    content = RecordDict(
        {
            SECAGG_MASKED_KEY: to_array_record(SECAGG_MASKED_KEY, torch.from_numpy(masked)),
            SECAGG_PLAIN_KEY: reply.content[UPDATE_KEY],
            METRICS: MetricRecord(metrics),
        }
    )
    return Message(content, reply_to=msg)


def unmask_reply(msg: Message, context: Context) -> Message:
    """Stage 3: shares of the active neighbours' seeds and the dropped ones' keys."""
    config = msg.content[SECAGG_KEY]
    client = _load(context, int(config[SERVER_ROUND]))
    shares = client.unmask(config["active"], config["dead"])
    del context.state[SECAGG_STATE_KEY]
    reply = ConfigRecord({"ids": list(shares), "shares": list(shares.values())})
    return Message(RecordDict({SECAGG_KEY: reply}), reply_to=msg)


def _save(context: Context, client: SecAggClient, server_round: int) -> None:
    context.state[SECAGG_STATE_KEY] = ConfigRecord(
        {SERVER_ROUND: server_round, "client": pickle.dumps(client)}
    )


def _load(context: Context, server_round: int) -> SecAggClient:
    """The node's SecAgg+ client of ``server_round`` (its own pickled state)."""
    stored = context.state.config_records.get(SECAGG_STATE_KEY)
    if stored is None or int(stored[SERVER_ROUND]) != server_round:
        raise SecAggAbortedError(
            f"SecAgg+ node {secagg_id(context)}: no SecAgg+ setup for round {server_round}"
        )
    client = pickle.loads(stored["client"])  # noqa: S301 - the node's own state
    if not isinstance(client, SecAggClient):
        raise SecAggAbortedError(f"SecAgg+ node {secagg_id(context)}: corrupt node state")
    return client
