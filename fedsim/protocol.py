"""The client–server protocol: every name both sides agree on, and the array codec.

This module is the only place where the ClientApp (``clients/``) and the ServerApp
(``server/``) agree on anything: message and record keys, the metric names of a train reply,
the node-state keys a client keeps between rounds, and how a flat parameter vector is stored
in a Flower ``ArrayRecord``, and :class:`PartitionDirectory`, how an in-process grid tells
the server its nodes' client ids without the ``query.identify`` handshake. Neither side
imports the other.

Arrays are stored as Flower stores an ``ndarray`` (``stype="numpy.ndarray"``, the ``.npy``
bytes ``np.save`` writes), so any Flower tool reads them with ``Array.numpy()``. fedsim writes
and reads those bytes itself (a cached header plus the raw buffer): ``np.save``/``np.load``
cost more than the arithmetic of a small client's round.
"""

from __future__ import annotations

import functools
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

__all__ = [
    "ARRAYS",
    "CONFIG",
    "DP_EPSILON",
    "DP_HISTORY",
    "DP_NOISE_MULTIPLIER",
    "GLOBAL_ACCURACY",
    "IDENTIFY",
    "LAST_GLOBAL_KEY",
    "LEDGER_KEY",
    "METRICS",
    "NUMPY_STYPE",
    "NUM_EXAMPLES",
    "PARTITION_ID",
    "PERSONAL_ACCURACY",
    "PERSONAL_KEY",
    "PERSONAL_TASK_ACCURACY",
    "PartitionDirectory",
    "SERVER_ROUND",
    "SECAGG_KEY",
    "SECAGG_MASKED_KEY",
    "SECAGG_MASK_SECONDS",
    "SECAGG_PLAIN_KEY",
    "SECAGG_SETUP",
    "SECAGG_SHARE_KEYS",
    "SECAGG_STATE_KEY",
    "SECAGG_UNMASK",
    "STATE_KEYS",
    "STEPS",
    "TRAIN_LOSS",
    "UPDATE_KEY",
    "UPDATE_BATCH_KEY",
    "UpdateBatch",
    "WEIGHTS_KEY",
    "array_to_numpy",
    "from_array_record",
    "from_shared_array_record",
    "publish_update_batch",
    "published_update_batch",
    "to_array_record",
    "withdraw_update_batch",
]

# Messages. The server sends ``query.identify`` once, then train messages with the global
# weights under ARRAYS/WEIGHTS_KEY and the round under CONFIG/SERVER_ROUND; a client answers a
# train message with its update under UPDATE_KEY/UPDATE_KEY and the metrics below.
IDENTIFY = "identify"
"""The query (``query.identify``) a node answers with its partition id."""
ARRAYS = "arrays"
"""Record of a train message that holds the global weights."""
CONFIG = "config"
"""Record of a train message that holds the round's configuration."""
METRICS = "metrics"
"""Record of a reply that holds its metrics."""
WEIGHTS_KEY = "weights"
"""The global model's flat float32 vector, inside :data:`ARRAYS`."""
UPDATE_KEY = "update"
"""A train reply's record, and the array in it: the float64 update Δ = w_local − w_global."""
SERVER_ROUND = "server-round"
"""The run's round number, in a train message's :data:`CONFIG`."""
UPDATE_BATCH_KEY = "fedsim.update-batch"
"""A train reply's ConfigRecord in place of :data:`UPDATE_KEY` and :data:`METRICS`: the
``batch`` published in this process that holds the update and metrics, and whether the reply
answers for the batch's nodes ``together`` or for its sender only (see
:func:`publish_update_batch`)."""

# Secure aggregation (``defense.secure_aggregation``): SecAgg+'s stages around a train message.
# The server sends ``query.secagg_setup`` (reply: public keys), ``query.secagg_share_keys``
# (reply: encrypted shares), the train message with the forwarded shares under SECAGG_KEY
# (reply: the masked quantized update under SECAGG_MASKED_KEY instead of UPDATE_KEY), then
# ``query.secagg_unmask`` (reply: shares). Every stage's payload is the ConfigRecord
# SECAGG_KEY.
SECAGG_SETUP = "secagg_setup"
"""The query (``query.secagg_setup``) a node answers with its SecAgg+ public keys."""
SECAGG_SHARE_KEYS = "secagg_share_keys"
"""The query a node answers with its encrypted shares for its neighbours."""
SECAGG_UNMASK = "secagg_unmask"
"""The query a node answers with its shares of its neighbours' secrets."""
SECAGG_KEY = "fedsim.secagg"
"""ConfigRecord of every SecAgg+ message and reply: the stage's payload."""
SECAGG_MASKED_KEY = "fedsim.secagg-masked"
"""A secure train reply's ArrayRecord, and the array in it: the masked int64 vector."""
SECAGG_PLAIN_KEY = "fedsim.secagg-plain"
"""Simulation only: a secure train reply's clear update, for the ``secagg_error`` figure. A
real client would never send it; the server reads it for that measurement alone."""
SECAGG_MASK_SECONDS = "secagg-mask-s"
"""Metric of a secure train reply: seconds the client spent quantizing and masking."""
SECAGG_STATE_KEY = "fedsim.secagg-state"
"""ConfigRecord in a node's state: its SecAgg+ client between the round's messages."""

# Metric names of a reply.
PARTITION_ID = "partition-id"
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
STEPS = "steps"
DP_HISTORY = "dp-history"
"""An honest DP-SGD client's cumulative ledger: flat (σ, q, K) triples."""
DP_EPSILON = "dp-epsilon"
"""That client's ε over every DP-SGD step it has taken."""
DP_NOISE_MULTIPLIER = "dp-noise-multiplier"
PERSONAL_ACCURACY = "personal-accuracy"
"""Personalized FL: the client's personal model's accuracy on its own test split."""
PERSONAL_TASK_ACCURACY = "personal-accuracy."
"""Prefix: ``personal-accuracy.<task>`` is that task's (``data.tasks``)."""
GLOBAL_ACCURACY = "global-local-accuracy"
"""Personalized FL without a local head (Ditto): the received global model on that split."""

# Node state a client keeps between rounds (a resumed run's first train message carries them
# back under the same keys).
LEDGER_KEY = "fedsim.dp-ledger"
"""ConfigRecord with ``history``: an honest client's DP-SGD ledger under local DP."""
LAST_GLOBAL_KEY = "fedsim.last-global"
"""ArrayRecord: the global weights a client last trained on (Neurotoxin reads the change)."""
STATE_KEYS = (LEDGER_KEY, LAST_GLOBAL_KEY)
PERSONAL_KEY = "fedsim.personal"
"""ArrayRecord: a personalized-FL client's personal head or model. Never sent to the server,
so not among the handed-back ``STATE_KEYS``: a resumed run restarts it from the global model."""


@runtime_checkable
class PartitionDirectory(Protocol):
    """A grid that already knows which partition (client id) each of its nodes serves.

    The in-process runtimes assign the partitions themselves, so the server can map client
    ids to node ids by asking the grid instead of sending every node ``query.identify`` (a
    million messages, and a million node contexts, for a cross-device population). A real
    Flower deployment's grid is no directory: there the handshake stays.
    """

    @property
    def num_partitions(self) -> int:
        """Number of nodes; they serve partitions ``0..num_partitions-1``, one each."""
        ...

    def node_id(self, partition_id: int) -> int:
        """The node serving ``partition_id`` (``KeyError`` outside ``0..num_partitions-1``)."""
        ...

    def partition_id(self, node_id: int) -> int | None:
        """The partition ``node_id`` serves, or ``None`` for an unknown node."""
        ...


NUMPY_STYPE = "numpy.ndarray"
"""Flower's serialization type of an ``Array`` that holds ``.npy`` bytes."""


def to_array_record(key: str, vector: torch.Tensor) -> ArrayRecord:
    """Wrap a flat vector as a one-array ``ArrayRecord`` (the bytes ``Array(ndarray)`` holds).

    Examples
    --------
    >>> record = to_array_record("w", torch.tensor([1.0, 2.0]))
    >>> record["w"].data == Array(np.array([1.0, 2.0], dtype=np.float32)).data
    True
    """
    array = np.ascontiguousarray(vector.detach().cpu().numpy())
    dtype_name, header = _npy_encoding(array.dtype, array.shape)
    data = b"".join((header, memoryview(array).cast("B")))
    record = ArrayRecord()  # filled in place: ArrayRecord({key: array}) builds the Array twice
    record[key] = Array(dtype=dtype_name, shape=array.shape, stype=NUMPY_STYPE, data=data)
    return record


def from_array_record(record: ArrayRecord, key: str) -> torch.Tensor:
    """The flat vector stored under ``key``, as a fresh tensor (raises ``KeyError`` if absent)."""
    return torch.from_numpy(array_to_numpy(record[key]).copy())


def from_shared_array_record(record: ArrayRecord, key: str) -> torch.Tensor:
    """:func:`from_array_record` for an array many messages share: a round's global weights.

    The tensor decoded last is kept with the (immutable) bytes it came from; a message holding
    those same bytes gets that tensor back, so a process that answers a round's clients
    decodes the round's weights once, not once per client. The tensor is shared: callers
    must not modify it in place.
    """
    array = record[key]
    cached = _last_shared.get(key)
    if cached is not None and cached[0] is array.data and cached[1] == (array.dtype, array.shape):
        return cached[2]
    tensor = from_array_record(record, key)
    _last_shared[key] = (array.data, (array.dtype, array.shape), tensor)
    return tensor


_last_shared: dict[str, tuple[bytes, tuple[str, tuple[int, ...]], torch.Tensor]] = {}


def array_to_numpy(array: Array) -> np.ndarray:
    """The ndarray an ``Array`` holds, as ``Array.numpy()`` returns it.

    A plain float array (the ``.npy`` bytes of its stated dtype and shape, as
    :func:`to_array_record` writes them) is read in place, without a copy (the result is
    read-only); anything else goes through Flower's ``Array.numpy()`` (``np.load``, pickles
    refused), which raises ``TypeError``/``ValueError`` on bytes that are not an array.
    """
    data = array.data
    if array.stype != NUMPY_STYPE or not isinstance(data, bytes):
        return array.numpy()
    try:
        dtype = np.dtype(array.dtype)
        shape = tuple(int(s) for s in array.shape)
    except (TypeError, ValueError):
        return array.numpy()
    if dtype.kind != "f" or any(s < 0 for s in shape):
        return array.numpy()
    _, header = _npy_encoding(dtype, shape)
    if len(data) != len(header) + dtype.itemsize * math.prod(shape) or not data.startswith(header):
        return array.numpy()
    return np.frombuffer(data, dtype=dtype, offset=len(header)).reshape(shape)


@functools.lru_cache(maxsize=64)
def _npy_encoding(dtype: np.dtype, shape: tuple[int, ...]) -> tuple[str, bytes]:
    """``Array.dtype``'s text and the ``.npy`` header ``np.save`` writes for a C-ordered array."""
    buffer = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return str(dtype), buffer.getvalue()


# Update batches: an in-process runtime that computes a round's updates as one matrix (the
# vectorized runtime) publishes them once, with every row's metrics, and answers the round's
# clients with one reply that stands for all of them (:data:`UPDATE_BATCH_KEY` with
# ``together``); a client whose reply must stay its own (a straggler, which may time out)
# gets a reply of its own that refers to its row. The server checks every row and its
# metrics as it checks a reply that carries them. One batch is published at a time: a
# runtime publishes a round's batch after withdrawing the previous one.


@dataclass(frozen=True)
class UpdateBatch:
    """A round's updates as one matrix, and what each client's reply would have carried.

    Attributes
    ----------
    updates : torch.Tensor
        ``(n, d)`` float64: row *i* is a client's update Δ.
    rows : Mapping[int, int]
        Node id → its row.
    metrics : Sequence[Mapping[str, Any]]
        Row *i*'s reply metrics (the keys of a train reply's :data:`METRICS`).
    together : Sequence[int]
        The nodes the batch's joint reply answers for (the others reply on their own).
    """

    updates: torch.Tensor
    rows: Mapping[int, int]
    metrics: Sequence[Mapping[str, Any]]
    together: Sequence[int]


_published: dict[str, UpdateBatch] = {}
_tokens = itertools.count(1)


def publish_update_batch(batch: UpdateBatch) -> tuple[RecordDict, RecordDict]:
    """Publish ``batch`` in this process; return the contents of the replies that refer to it.

    The first is the joint reply's, which answers for every node of ``batch.together``; the
    second is for a reply of one node's own (it may be shared by all such replies).
    """
    _published.clear()
    token = f"batch-{next(_tokens)}"
    _published[token] = batch
    joint = RecordDict({UPDATE_BATCH_KEY: ConfigRecord({"batch": token, "together": True})})
    own = RecordDict({UPDATE_BATCH_KEY: ConfigRecord({"batch": token, "together": False})})
    return joint, own


def published_update_batch(token: str) -> UpdateBatch | None:
    """The batch published under ``token``, or ``None`` (withdrawn, or another process')."""
    return _published.get(token)


def withdraw_update_batch() -> None:
    """Withdraw the published batch (rows already handed out stay valid)."""
    _published.clear()
