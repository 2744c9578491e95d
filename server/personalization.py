"""The server's side of personalized FL: what it keeps of no head, what it reads of accuracy.

Under FedPer and FedRep (``clients.personalization``) the clients' heads never leave them:
their updates are zero on the head's coordinates, and the server also zeroes the round's
aggregate there (:func:`shared_only`), so whatever a malicious client sends on those
coordinates, the global model keeps its initial head and the server holds no trained head.

Each client measures on its own test split and reports with its update
(:mod:`clients.personalization`); :func:`personal_figures` averages those reports over the
honest clients of the round (a malicious client's own figure says nothing about the
federation and may be a lie; a value that is no number in [0, 1] is left out):
``personalized_accuracy`` (the personal models, first task), ``personalized_task_accuracy``
(task → mean, with ``data.tasks``) and ``global_local_accuracy`` (the received global model
on the same splits; Ditto only, whose global model is complete).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import torch
from flwr.app import Message, MetricRecord

from fedsim.federation import Federation
from fedsim.models.multitask import head_mask
from fedsim.personalization import build_personalization
from fedsim.protocol import GLOBAL_ACCURACY, METRICS, PERSONAL_ACCURACY, PERSONAL_TASK_ACCURACY

__all__ = ["local_head_mask", "personal_figures", "shared_only"]


def local_head_mask(fed: Federation) -> torch.Tensor | None:
    """The coordinates the server never updates (the head under FedPer/FedRep), or ``None``."""
    config = fed.scenario.clients.personalization
    if config is None or not build_personalization(config).local_head:
        return None
    return head_mask(fed.model("server"))


def shared_only(update: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``update`` with the clients' local coordinates set to zero (``mask``; ``None``: as is).

    Examples
    --------
    >>> shared_only(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([False, True, True])).tolist()
    [1.0, 0.0, 0.0]
    """
    return update if mask is None else update.masked_fill(mask.to(update.device), 0.0)


def personal_figures(
    replies: Iterable[Message],
    node_to_client: Mapping[int, int],
    malicious: Collection[int],
    tasks: Iterable[str] = (),
) -> dict[str, Any]:
    """The round's personalized figures: means of the honest replying clients' reports."""
    keys = {
        "personalized_accuracy": PERSONAL_ACCURACY,
        "global_local_accuracy": GLOBAL_ACCURACY,
        **{f"task:{t}": PERSONAL_TASK_ACCURACY + t for t in tasks},
    }
    values: dict[str, list[float]] = {name: [] for name in keys}
    for msg in replies:
        if msg.has_error() or node_to_client.get(msg.metadata.src_node_id, -1) in malicious:
            continue
        metrics = msg.content.get(METRICS)
        if not isinstance(metrics, MetricRecord):
            continue
        for name, key in keys.items():
            value = metrics.get(key)
            if isinstance(value, float) and math.isfinite(value) and 0.0 <= value <= 1.0:
                values[name].append(value)
    means = {name: sum(v) / len(v) for name, v in values.items() if v}
    per_task = {name[5:]: means.pop(name) for name in list(means) if name.startswith("task:")}
    if per_task:
        means["personalized_task_accuracy"] = per_task
    return means
