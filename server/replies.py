"""The server boundary: turn train replies into checked client updates, or rejections.

Anything a client sends is untrusted. A reply is rejected (with a recorded reason, never an
exception) when it carries an error, lacks a key, has the wrong shape or dtype, contains
NaN/Inf, or reports an impossible example count. Only accepted updates reach the adversary
stage and the aggregator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedsim.errors import InvalidSettingError
from fedsim.params import all_finite, finite_rows
from fedsim.privacy.ledger import PrivacyLedger
from fedsim.protocol import (
    DP_EPSILON,
    DP_HISTORY,
    METRICS,
    NUM_EXAMPLES,
    TRAIN_LOSS,
    UPDATE_BATCH_KEY,
    UPDATE_KEY,
    UpdateBatch,
    array_to_numpy,
    published_update_batch,
)

__all__ = [
    "ClientUpdate",
    "MAX_EXAMPLES",
    "ParsedReplies",
    "array_update",
    "check_reply",
    "parse_train_replies",
    "privacy_report",
    "stack_updates",
]

MAX_EXAMPLES = 10**9
R = TypeVar("R", ArrayRecord, MetricRecord)


@dataclass(frozen=True)
class ClientUpdate:
    """One client's checked reply: its float64 delta and metadata."""

    client_id: int
    update: torch.Tensor
    num_examples: int
    train_loss: float
    privacy: tuple[list[float], float] | None = None
    """Local DP report: the client's cumulative ledger (flat σ, q, K triples) and its ε."""


@dataclass
class ParsedReplies:
    """A round's replies split into accepted updates, client failures and rejections."""

    updates: list[ClientUpdate]
    failed: dict[int, str]
    rejected: dict[int, str]

    def add(
        self,
        client_id: int,
        checked: tuple[torch.Tensor, int, float, tuple[list[float], float] | None] | str,
    ) -> None:
        """Record a client's checked reply: an accepted update, or the reason it is rejected."""
        if isinstance(checked, str):
            self.rejected[client_id] = checked
        else:
            self.updates.append(ClientUpdate(client_id, *checked))


def parse_train_replies(
    replies: Iterable[Message], node_to_client: Mapping[int, int], dim: int
) -> ParsedReplies:
    """Check every reply; updates come back ordered by client id.

    A reply carries its update and metrics, or refers to an update batch published in this
    process that holds them (:data:`fedsim.protocol.UPDATE_BATCH_KEY`, the vectorized
    runtime). Both are checked alike (float, length ``dim``, finite, the metrics); a batch's
    rows are checked for finiteness in one pass over the batch
    (:func:`fedsim.params.finite_rows`).
    """
    parsed = ParsedReplies(updates=[], failed={}, rejected={})
    batches = _Batches(dim)
    for msg in replies:
        sender = msg.metadata.src_node_id
        if msg.has_error():
            reason = f"client error: {msg.error.reason}"[:500]
            parsed.failed[node_to_client.get(sender, -1)] = reason
            continue
        reference = msg.content.get(UPDATE_BATCH_KEY)  # not ``config_records``: copies them all
        if isinstance(reference, ConfigRecord):
            token = reference.get("batch")
            together = reference.get("together") is True
            nodes = batches.nodes(token) if together else [sender]
            if isinstance(nodes, str):  # an unusable batch: its sender is rejected
                parsed.add(node_to_client.get(sender, -1), nodes)
                continue
            for node in nodes:
                parsed.add(node_to_client.get(node, -1), check_reply(batches.reply(token, node)))
        else:
            parsed.add(node_to_client.get(sender, -1), check_reply(_own_reply(msg.content, dim)))
    parsed.updates.sort(key=lambda u: u.client_id)
    return parsed


def stack_updates(updates: list[ClientUpdate]) -> torch.Tensor:
    """The ``(n, d)`` matrix of the updates, in order.

    When the updates are consecutive rows of one matrix (a published batch with every reply
    accepted) that part of the matrix is returned as it is, without a copy.
    """
    rows = [u.update for u in updates]
    first = rows[0]
    d = first.numel()
    if first.dim() == 1 and all(
        r.dtype == first.dtype
        and r.device == first.device
        and r.is_contiguous()
        and r.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
        and r.storage_offset() == first.storage_offset() + i * d
        for i, r in enumerate(rows)
    ):
        return first.new_empty(0).set_(
            first.untyped_storage(), first.storage_offset(), (len(rows), d)
        )
    return torch.stack(rows)


class _Batches:
    """The published update batches a round's replies refer to, each loaded and checked once."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._seen: dict[str, tuple[UpdateBatch, list[bool]] | str] = {}

    def nodes(self, token: object) -> list[int] | str:
        """The nodes batch ``token``'s joint reply answers for, or why it cannot be used."""
        loaded = self._get(token)
        return loaded if isinstance(loaded, str) else list(loaded[0].together)

    def reply(self, token: object, node_id: int) -> tuple[torch.Tensor, Mapping[str, Any]] | str:
        """The update and metrics batch ``token`` holds for ``node_id``, or why there are none."""
        loaded = self._get(token)
        if isinstance(loaded, str):
            return loaded
        batch, finite = loaded
        row = batch.rows.get(node_id)
        if row is None or not 0 <= row < len(finite):
            return f"malformed reply: update batch {token!r} has no row of node {node_id}"
        if not finite[row]:
            return "update contains NaN/Inf"
        return batch.updates[row], batch.metrics[row]

    def _get(self, token: object) -> tuple[UpdateBatch, list[bool]] | str:
        if not isinstance(token, str):
            return f"malformed reply: update batch {token!r} is not a name"
        if token not in self._seen:
            self._seen[token] = self._load(token)
        return self._seen[token]

    def _load(self, token: str) -> tuple[UpdateBatch, list[bool]] | str:
        batch = published_update_batch(token)
        if batch is None:
            return f"update batch {token!r} is not published in this process"
        matrix = batch.updates
        if matrix.dtype != torch.float64 or matrix.dim() != 2 or len(batch.metrics) != len(matrix):
            return f"update batch {token!r} is not a float64 matrix with a row per reply"
        if matrix.shape[1] != self.dim:
            return f"update has shape ({matrix.shape[1]},), expected ({self.dim},)"
        return batch, finite_rows(matrix).tolist()


def _own_reply(content: RecordDict, dim: int) -> tuple[torch.Tensor, Mapping[str, Any]] | str:
    """The update and metrics a reply carries itself, or why they are unreadable."""
    try:
        metrics = _record(content, METRICS, MetricRecord)
        return array_update(_record(content, UPDATE_KEY, ArrayRecord)[UPDATE_KEY], dim), metrics
    except (KeyError, ValueError, TypeError) as e:
        return f"malformed reply: missing or unreadable {e}"


def check_reply(
    reply: tuple[torch.Tensor | str, Mapping[str, Any]] | str,
) -> tuple[torch.Tensor, int, float, tuple[list[float], float] | None] | str:
    """A client's checked update, example count, loss and privacy report; or the rejection.

    ``reply`` is (the update or why it was rejected, the metrics), or why it is unreadable.
    """
    if isinstance(reply, str):
        return reply
    update, metrics = reply
    if isinstance(update, str):
        return update
    try:
        num_examples = metrics[NUM_EXAMPLES]
        loss = float(metrics.get(TRAIN_LOSS, math.nan))
    except (KeyError, ValueError, TypeError) as e:
        return f"malformed reply: missing or unreadable {e}"
    if not isinstance(num_examples, int) or isinstance(num_examples, bool):
        return f"num-examples is {num_examples!r}, expected an integer"
    if not 0 < num_examples <= MAX_EXAMPLES:
        return f"num-examples {num_examples} outside 1..{MAX_EXAMPLES}"
    privacy = privacy_report(metrics)
    if isinstance(privacy, str):
        return privacy
    return update, num_examples, loss, privacy


def _record(content: RecordDict, key: str, kind: type[R]) -> R:
    """The record of type ``kind`` under ``key`` (``KeyError`` when there is none)."""
    record = content.get(key)
    if not isinstance(record, kind):
        raise KeyError(key)
    return record


def array_update(array: Array, dim: int) -> torch.Tensor | str:
    """The float64 update an ``Array`` carries, or why it is rejected."""
    values = array_to_numpy(array)
    if values.dtype.kind != "f":
        return f"update has dtype {values.dtype}, expected a float array"
    if values.shape != (dim,):
        return f"update has shape {values.shape}, expected ({dim},)"
    update = torch.from_numpy(values.astype(np.float64))  # a writable copy
    if not all_finite(update):
        return "update contains NaN/Inf"
    return update


def privacy_report(metrics: Any) -> tuple[list[float], float] | None | str:
    """The optional local-DP report (``dp-history``, ``dp-epsilon``), or why it is malformed."""
    if DP_HISTORY not in metrics and DP_EPSILON not in metrics:
        return None
    history, epsilon = metrics.get(DP_HISTORY), metrics.get(DP_EPSILON)
    if not isinstance(history, list) or len(history) % 3:
        return "malformed privacy report: dp-history is not a list of (sigma, q, steps) triples"
    try:
        PrivacyLedger.from_list(history)
    except (InvalidSettingError, TypeError, ValueError) as e:
        return f"malformed privacy report: {e}"
    if not isinstance(epsilon, int | float) or math.isnan(epsilon) or epsilon < 0:
        return f"malformed privacy report: dp-epsilon is {epsilon!r}"
    return [float(v) for v in history], float(epsilon)
