"""A model's memorisation of a run's canaries: each canary's exposure and whether it is extracted.

:class:`MemorizationTest` puts :mod:`~fedsim.memorization.exposure` and
:mod:`~fedsim.memorization.extraction` together for the probe: exact exposure when the
randomness space :math:`|R| = 10^k` is at most ``exact_limit`` candidates, else the skew-normal
estimate from ``samples`` candidates drawn uniformly (with replacement) from :math:`R`; then a
beam search for each canary's secret. :func:`mean_by_repeats` turns per-canary exposures into
the ``canary_exposure`` figure (repeat count, as a string → mean exposure in bits).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedsim.memorization.canaries import DIGITS, TextCanaries
from fedsim.memorization.exposure import (
    Logits,
    all_candidates,
    exact_exposure,
    log_perplexities,
    skewnorm_exposure,
)
from fedsim.memorization.extraction import beam_search
from fedsim.validation import require_int

__all__ = ["MemorizationResult", "MemorizationTest", "mean_by_repeats"]


@dataclass(frozen=True)
class MemorizationResult:
    """Per canary: exposure in bits and whether beam search recovered its secret."""

    exposures: tuple[float, ...]
    extracted: tuple[bool, ...]
    method: str


class MemorizationTest:
    """Exposure and extraction of every canary of a run on one model.

    Parameters
    ----------
    digits : int
        Length of the secrets (:math:`|R| = 10^{digits}`).
    exact_limit : int
        Enumerate every candidate when :math:`|R|` is at most this.
    samples : int
        Candidates drawn for the skew-normal fit otherwise.
    beam : int
        Beam width of the extraction.

    Examples
    --------
    >>> import torch
    >>> flat = lambda w: torch.zeros(len(w), 80)  # every secret equally likely
    >>> canaries = TextCanaries("pin ", ("07",), (1,), (0,))
    >>> r = MemorizationTest(digits=2)(flat, canaries, np.random.default_rng(0))
    >>> round(r.exposures[0], 4), r.method  # 100 ties: mid-rank 50.5, log2(100 / 50.5)
    (0.9856, 'exact')
    """

    def __init__(
        self, digits: int, exact_limit: int = 10_000, samples: int = 1000, beam: int = 10
    ) -> None:
        self.digits = require_int("memorization", "digits", digits, minimum=1)
        self.exact_limit = require_int("memorization", "exact_limit", exact_limit, minimum=1)
        self.samples = require_int("memorization", "samples", samples, minimum=3)
        self.beam = require_int("memorization", "beam", beam, minimum=1)

    @property
    def space(self) -> int:
        """:math:`|R| = 10^{digits}`."""
        return len(DIGITS) ** self.digits

    def __call__(
        self, logits: Logits, canaries: TextCanaries, rng: np.random.Generator
    ) -> MemorizationResult:
        """Measure every canary of ``canaries`` on the model ``logits``; draws from ``rng``."""
        exact = self.space <= self.exact_limit
        if exact:
            every = log_perplexities(logits, canaries.prefix, all_candidates(self.digits))
        else:
            drawn = rng.integers(0, 10, (self.samples, self.digits))
            sampled = log_perplexities(logits, canaries.prefix, drawn)
        secrets = np.array([[int(c) for c in s] for s in canaries.secrets], dtype=np.int64)
        scores = log_perplexities(logits, canaries.prefix, secrets)
        exposures = tuple(
            exact_exposure(s, every) if exact else skewnorm_exposure(s, sampled, self.space)
            for s in scores.tolist()
        )
        extracted = tuple(
            beam_search(logits, canaries.prefix, self.digits, self.beam) == secret
            for secret in canaries.secrets
        )
        return MemorizationResult(exposures, extracted, "exact" if exact else "skewnorm")


def mean_by_repeats(exposures: Sequence[float], repeats: Sequence[int]) -> dict[str, float]:
    """Mean exposure per repeat count, keyed by the count as a string, in ascending order.

    Examples
    --------
    >>> mean_by_repeats([1.0, 3.0, 2.0], [10, 10, 1])
    {'1': 2.0, '10': 2.0}
    """
    out: dict[str, float] = {}
    for r in sorted(set(repeats)):
        values = [e for e, n in zip(exposures, repeats, strict=True) if n == r]
        out[str(r)] = float(np.mean(values)) if values else math.nan
    return out
