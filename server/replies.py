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
from typing import Any

import numpy as np
import torch
from flwr.app import Message

from fedsim.errors import InvalidSettingError
from fedsim.privacy.ledger import PrivacyLedger
from fedsim.protocol import (
    DP_EPSILON,
    DP_HISTORY,
    METRICS,
    NUM_EXAMPLES,
    TRAIN_LOSS,
    UPDATE_KEY,
    array_to_numpy,
)

__all__ = ["ClientUpdate", "MAX_EXAMPLES", "ParsedReplies", "parse_train_replies"]

MAX_EXAMPLES = 10**9


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


def parse_train_replies(
    replies: Iterable[Message], node_to_client: Mapping[int, int], dim: int
) -> ParsedReplies:
    """Check every reply; updates come back ordered by client id."""
    parsed = ParsedReplies(updates=[], failed={}, rejected={})
    for msg in replies:
        client_id = node_to_client.get(msg.metadata.src_node_id, -1)
        if msg.has_error():
            parsed.failed[client_id] = f"client error: {msg.error.reason}"[:500]
            continue
        result = _check(msg, dim)
        if isinstance(result, str):
            parsed.rejected[client_id] = result
        else:
            parsed.updates.append(ClientUpdate(client_id, *result))
    parsed.updates.sort(key=lambda u: u.client_id)
    return parsed


def _check(
    msg: Message, dim: int
) -> tuple[torch.Tensor, int, float, tuple[list[float], float] | None] | str:
    content = msg.content
    try:
        record = content.array_records[UPDATE_KEY]
        array = array_to_numpy(record[UPDATE_KEY])
        metrics = content.metric_records[METRICS]
        num_examples = metrics[NUM_EXAMPLES]
        loss = float(metrics.get(TRAIN_LOSS, math.nan))
    except (KeyError, ValueError, TypeError) as e:
        return f"malformed reply: missing or unreadable {e}"
    if array.dtype.kind != "f":
        return f"update has dtype {array.dtype}, expected a float array"
    if array.shape != (dim,):
        return f"update has shape {array.shape}, expected ({dim},)"
    if not np.isfinite(array).all():
        return "update contains NaN/Inf"
    if not isinstance(num_examples, int) or isinstance(num_examples, bool):
        return f"num-examples is {num_examples!r}, expected an integer"
    if not 0 < num_examples <= MAX_EXAMPLES:
        return f"num-examples {num_examples} outside 1..{MAX_EXAMPLES}"
    privacy = _privacy_report(metrics)
    if isinstance(privacy, str):
        return privacy
    return torch.from_numpy(array.astype(np.float64)), num_examples, loss, privacy


def _privacy_report(metrics: Any) -> tuple[list[float], float] | None | str:
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
