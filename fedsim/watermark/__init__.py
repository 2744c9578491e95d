"""Watermarking the global model (ownership) and a thief's removal attempts (data → data).

WAFFLE (Tekgul et al., SRDS 2021): the server draws a secret :func:`trigger_set` and, after
each round's aggregation, retrains the global model on it (:func:`embed`) until its
:func:`watermark_accuracy` reaches a threshold; :class:`WaffleEmbedding` does that to each
round's aggregate in a run (the run's :func:`run_trigger_set`, a generator per round). A thief
holding a leaked copy tries to remove the watermark by :func:`fine_tune` or :func:`prune`
(:func:`removal_curve`). Measuring all this in a run is the watermark probe's job
(:mod:`server.probes.watermark`).
"""

from __future__ import annotations

from fedsim.watermark.embedding import WaffleEmbedding, data_range, run_trigger_set
from fedsim.watermark.removal import RemovalPoint, fine_tune, prunable, prune, removal_curve
from fedsim.watermark.trigger import TriggerSet, trigger_set, watermark_accuracy
from fedsim.watermark.waffle import WaffleSettings, embed

__all__ = [
    "RemovalPoint",
    "TriggerSet",
    "WaffleEmbedding",
    "WaffleSettings",
    "data_range",
    "embed",
    "fine_tune",
    "prunable",
    "prune",
    "removal_curve",
    "run_trigger_set",
    "trigger_set",
    "watermark_accuracy",
]
