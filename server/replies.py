"""The server boundary: turn train replies into checked client updates, or rejections.

Anything a client sends is untrusted. A reply is rejected (with a recorded reason, never an
exception) when it carries an error, lacks a key, has the wrong shape or dtype, contains
NaN/Inf, or reports an impossible example count. Only accepted updates reach the adversary
stage and the aggregator.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from flwr.app import Message

__all__ = ["ClientUpdate", "MAX_EXAMPLES", "ParsedReplies", "parse_train_replies"]

MAX_EXAMPLES = 10**9


@dataclass(frozen=True)
class ClientUpdate:
    """One client's checked reply: its float64 delta and metadata."""

    client_id: int
    update: torch.Tensor
    num_examples: int
    train_loss: float


@dataclass
class ParsedReplies:
    """A round's replies split into accepted updates, client failures and rejections."""

    updates: list[ClientUpdate]
    failed: dict[int, str]
    rejected: dict[int, str]


def parse_train_replies(
    replies: Iterable[Message], node_to_client: dict[int, int], dim: int
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
            update, num_examples, loss = result
            parsed.updates.append(ClientUpdate(client_id, update, num_examples, loss))
    parsed.updates.sort(key=lambda u: u.client_id)
    return parsed


def _check(msg: Message, dim: int) -> tuple[torch.Tensor, int, float] | str:
    content = msg.content
    try:
        record = content.array_records["update"]
        array = record["update"].numpy()
        metrics = content.metric_records["metrics"]
        num_examples = metrics["num-examples"]
        loss = float(metrics.get("train-loss", math.nan))
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
    return torch.from_numpy(array.astype(np.float64)), num_examples, loss
