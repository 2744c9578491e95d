r"""Exposure of a canary (Carlini et al., USENIX Security 2019): how much a model memorised it.

The log-perplexity of a candidate secret :math:`s = s_1 \dots s_k` after the prefix :math:`p` is

.. math:: P_\theta(s) = -\sum_{j=1}^{k} \log_2 \Pr_\theta(s_j \mid p\, s_1 \dots s_{j-1}),

each factor the model's next-character probability given the 80 characters before
:math:`s_j`. The rank of the canary's secret :math:`s^*` among all candidates :math:`r \in R`
is :math:`\mathrm{rank}(s^*) = 1 + |\{r : P_\theta(r) < P_\theta(s^*)\}| + (t - 1)/2` with
:math:`t` the candidates tied with it (equal to a relative 10⁻⁶: float32 logits), itself
included (mid-rank: a model that cannot tell candidates apart gives rank :math:`(|R|+1)/2`,
not 1), and its exposure

.. math:: \mathrm{exposure}(s^*) = \log_2 |R| - \log_2 \mathrm{rank}(s^*),

from 0 (the secret is the least likely candidate) to :math:`\log_2|R|` (it
is the model's most likely candidate). Two ways to get it:

- **exact** (:func:`exact_exposure`): enumerate every candidate (:math:`|R| = 10^k`, for small
  :math:`k`);
- **skew-normal estimate** (:func:`skewnorm_exposure`, the paper's Section 4.3): fit a skew-
  normal distribution :math:`F` to the log-perplexities of candidates drawn uniformly from
  :math:`R`; then :math:`\mathrm{rank} \approx |R|\,F(P_\theta(s^*))` and
  :math:`\mathrm{exposure} \approx -\log_2 F(P_\theta(s^*))`, capped to :math:`[0, \log_2|R|]`.

:func:`log_perplexities` scores many candidates with few model calls: the windows of all
candidates that share a prefix are the same, so level :math:`j` needs one forward pass per
distinct :math:`s_1 \dots s_{j-1}` (at most :math:`10^{j-1}`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats

from fedsim.data.text_corpus import SEQ_LEN, encode
from fedsim.errors import InvalidSettingError
from fedsim.memorization.canaries import DIGITS

__all__ = ["Logits", "all_candidates", "exact_exposure", "log_perplexities", "skewnorm_exposure"]

Logits = Callable[[torch.Tensor], torch.Tensor]
"""``(B, 80) uint8 windows → (B, V)`` next-character logits (a model in eval mode)."""


def all_candidates(digits: int) -> np.ndarray:
    """``(10^digits, digits)`` every digit string, as digit values, in numeric order."""
    grid = np.indices((10,) * digits).reshape(digits, -1).T
    return grid.astype(np.int64)


def log_perplexities(
    logits: Logits, prefix: str, candidates: np.ndarray, batch_size: int = 1024
) -> np.ndarray:
    r"""Log-perplexity :math:`P_\theta` in bits of each candidate secret after ``prefix``.

    Parameters
    ----------
    logits : callable
        ``windows → logits`` of the model.
    prefix : str
        The text before the secret (its left context is spaces, as when it was inserted).
    candidates : ndarray
        ``(M, k)`` digit values 0–9.

    Examples
    --------
    A "model" that always gives digit ``d`` the probability ``(d + 1) / 55`` (and every other
    character none): "9" costs :math:`\log_2 5.5` bits, "09" :math:`\log_2 55 + \log_2 5.5`.

    >>> table = torch.full((80,), -1e9)
    >>> table[11:21] = torch.log(torch.arange(1.0, 11.0) / 55)
    >>> model = lambda w: table.expand(len(w), 80)
    >>> log_perplexities(model, "pin ", np.array([[9], [0]])).round(3).tolist()
    [2.459, 5.781]
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    m, k = candidates.shape
    digit_codes = torch.from_numpy(encode(DIGITS).astype(np.int64))
    base = np.concatenate([encode(" " * SEQ_LEN), encode(prefix)])
    total = np.zeros(m, dtype=np.float64)
    for j in range(k):
        heads, which = np.unique(candidates[:, :j], axis=0, return_inverse=True)
        texts = np.concatenate(
            [np.broadcast_to(base, (len(heads), len(base))), encode(DIGITS)[heads]], axis=1
        )
        windows = torch.from_numpy(np.ascontiguousarray(texts[:, -SEQ_LEN:]))
        with torch.no_grad():
            rows = [
                torch.log_softmax(logits(windows[s : s + batch_size]).double(), dim=1)
                for s in range(0, len(windows), batch_size)
            ]
        digit_logp = torch.cat(rows)[:, digit_codes].numpy()  # (heads, 10) natural log
        total -= digit_logp[which.reshape(-1), candidates[:, j]]
    return total / math.log(2.0)


def exact_exposure(canary: float, every: np.ndarray) -> float:
    r"""Exposure from the log-perplexities of every candidate (``every``, the canary's included).

    Examples
    --------
    Four candidates; the canary (2.0) is beaten by one (1.0): rank 2,
    :math:`\log_2 4 - \log_2 2 = 1`; tied with one other, rank 2.5.

    >>> exact_exposure(2.0, np.array([1.0, 2.0, 3.0, 4.0]))
    1.0
    >>> round(exact_exposure(2.0, np.array([1.0, 2.0, 2.0, 4.0])), 4)
    0.6781
    """
    every = np.asarray(every, dtype=np.float64)
    tied = np.isclose(every, canary, rtol=1e-6, atol=0.0)  # equal up to float32 rounding
    rank = 1 + int((~tied & (every < canary)).sum()) + (max(int(tied.sum()), 1) - 1) / 2
    return math.log2(len(every)) - math.log2(rank)


def skewnorm_exposure(canary: float, sample: np.ndarray, space: int) -> float:
    r"""Exposure estimated from a skew-normal fit to sampled candidates' log-perplexities.

    :math:`-\log_2 F(P_\theta(s^*))` with :math:`F` the fitted CDF (``scipy.stats.skewnorm``),
    capped to :math:`[0, \log_2 |R|]` (``space`` = :math:`|R|`).

    Examples
    --------
    Candidates N(20, 1) and a canary 3σ below: :math:`-\log_2 \Phi(-3) = 9.53` bits.

    >>> sample = np.random.default_rng(0).normal(20.0, 1.0, 5000)
    >>> round(skewnorm_exposure(17.0, sample, 10**6), 1)
    9.7
    """
    sample = np.asarray(sample, dtype=np.float64)
    if len(sample) < 3 or not np.isfinite(sample).all() or space < 2:
        raise InvalidSettingError(
            f"skew-normal exposure needs ≥ 3 finite sampled log-perplexities and |R| ≥ 2; got "
            f"{len(sample)} samples and |R| = {space}"
        )
    if np.ptp(sample) == 0:  # a model that tells no candidate apart: the mid-rank
        if canary != sample[0]:
            return math.log2(space) if canary < sample[0] else 0.0
        return math.log2(space) - math.log2((space + 1) / 2)
    a, loc, scale = stats.skewnorm.fit(sample)
    bits = -float(stats.skewnorm.logcdf(canary, a, loc, scale)) / math.log(2.0)
    return min(max(bits, 0.0), math.log2(space))
