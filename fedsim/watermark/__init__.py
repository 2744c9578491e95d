"""Watermarking the global model (ownership) and a thief's removal attempts (data → data).

WAFFLE (Tekgul et al., SRDS 2021): the server draws a secret :func:`trigger_set` and, after
each round's aggregation, retrains the global model on it (:func:`embed`) until its
:func:`watermark_accuracy` reaches a threshold. A thief holding a leaked copy tries to remove
the watermark by :func:`fine_tune` or :func:`prune` (:func:`removal_curve`).
"""

from __future__ import annotations

from fedsim.watermark.removal import RemovalPoint, fine_tune, prunable, prune, removal_curve
from fedsim.watermark.trigger import TriggerSet, trigger_set, watermark_accuracy
from fedsim.watermark.waffle import WaffleSettings, embed

__all__ = [
    "RemovalPoint",
    "TriggerSet",
    "WaffleSettings",
    "embed",
    "fine_tune",
    "prunable",
    "prune",
    "removal_curve",
    "trigger_set",
    "watermark_accuracy",
]
