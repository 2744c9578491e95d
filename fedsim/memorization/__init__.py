"""Training-data extraction from language models: the secret sharer's canaries and exposure.

Canaries (:mod:`~fedsim.memorization.canaries`), exposure exact or by the skew-normal fit
(:mod:`~fedsim.memorization.exposure`), extraction by beam search
(:mod:`~fedsim.memorization.extraction`), both together (:mod:`~fedsim.memorization.measure`).
Carlini, Liu, Erlingsson, Kos, Song, "The Secret Sharer", USENIX Security 2019.
"""

from __future__ import annotations

from fedsim.memorization.canaries import (
    DIGITS,
    TextCanaries,
    context_windows,
    draw_text_canaries,
    scenario_text_canaries,
)
from fedsim.memorization.exposure import (
    all_candidates,
    exact_exposure,
    log_perplexities,
    skewnorm_exposure,
)
from fedsim.memorization.extraction import beam_search
from fedsim.memorization.measure import MemorizationResult, MemorizationTest, mean_by_repeats

__all__ = [
    "DIGITS",
    "MemorizationResult",
    "MemorizationTest",
    "TextCanaries",
    "all_candidates",
    "beam_search",
    "context_windows",
    "draw_text_canaries",
    "exact_exposure",
    "log_perplexities",
    "mean_by_repeats",
    "scenario_text_canaries",
    "skewnorm_exposure",
]
