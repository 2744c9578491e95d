"""Exposure by hand, the tree-batched scores against one-by-one scoring, skew-normal vs exact."""

from __future__ import annotations

import math

import numpy as np
import torch

from fedsim.data.text_corpus import encode
from fedsim.memorization import (
    MemorizationTest,
    TextCanaries,
    all_candidates,
    beam_search,
    context_windows,
    exact_exposure,
    log_perplexities,
    skewnorm_exposure,
)
from fedsim.models import build_model

DIGIT_CODES = torch.from_numpy(encode("0123456789").astype(np.int64))


def fixed_digits(w: torch.Tensor) -> torch.Tensor:
    """P(digit d) = (d + 1) / 55 at every step, whatever came before."""
    logits = torch.full((len(w), 80), -1e9)
    logits[:, DIGIT_CODES] = torch.log(torch.arange(1.0, 11.0) / 55)
    return logits


def markov(seed: int):  # noqa: ANN201
    """Next-digit logits that depend on the window's last character (a random table)."""
    table = torch.randn(80, 80, generator=torch.Generator().manual_seed(seed)) * 2
    return lambda w: table[w[:, -1].long()]


def test_exposure_by_hand_on_known_log_perplexities() -> None:
    # P(s) = -log2((a+1)/55) - log2((b+1)/55): a lower P for a larger product (a+1)(b+1)
    every = log_perplexities(fixed_digits, "pin ", all_candidates(2))
    assert np.allclose(every[99], 2 * math.log2(55 / 10)) and np.allclose(
        every[0], 2 * math.log2(55)
    )
    products = [(a + 1) * (b + 1) for a in range(10) for b in range(10)]
    assert exact_exposure(every[99], every) == math.log2(100)  # "99": rank 1
    assert exact_exposure(every[0], every) == 0.0  # "00": rank 100
    # "90": product 10; beaten by 100 - #{product <= 10}, tied with 3 more (1·10, 2·5, 5·2)
    less = sum(p > 10 for p in products)
    tied = sum(p == 10 for p in products)
    assert (less, tied) == (73, 4)
    expected = math.log2(100) - math.log2(1 + less + (tied - 1) / 2)
    assert math.isclose(exact_exposure(every[90], every), expected, abs_tol=1e-12)


def test_tree_batched_scores_equal_scoring_each_candidate_alone() -> None:
    torch.manual_seed(0)
    model = build_model("char_lstm", (80,), 80, hidden=8, layers=1).eval()
    candidates = np.array([[3, 1, 4], [3, 1, 5], [9, 2, 6]])
    batched = log_perplexities(model, "my pin is ", candidates)
    for row, score in zip(candidates, batched, strict=True):
        text = "my pin is " + "".join(str(d) for d in row)
        with torch.no_grad():
            logp = torch.log_softmax(model(context_windows(text)).double(), dim=1)
        targets = torch.from_numpy(encode(text).astype(np.int64))[-3:]
        alone = -logp[-3:].gather(1, targets[:, None]).sum().item() / math.log(2)
        assert math.isclose(score, alone, rel_tol=1e-9)


def test_skewnorm_estimate_agrees_with_enumeration_on_a_small_space() -> None:
    # 3 digits: 1000 candidates enumerated, against a fit on 300 of them drawn at random
    errors = []
    for seed in range(3):
        model = markov(seed)
        every = log_perplexities(model, "pin ", all_candidates(3))
        sample = every[np.random.default_rng(seed).integers(0, 1000, 300)]
        for index in np.argsort(every)[[30, 100, 300, 600]]:
            exact = exact_exposure(every[index], every)
            errors.append(abs(skewnorm_exposure(every[index], sample, 1000) - exact))
    # ranks 30..600 (exposures 0.7–5 bits): measured max error 0.67 bits. In the far tail the
    # fit is looser (rank 15: up to 1.8 bits, rank 5: 2.6 bits on seed 1's table).
    assert max(errors) < 1.0, errors


def test_beam_search_finds_the_likeliest_secret_and_measures_extraction() -> None:
    for seed in range(3):
        model = markov(seed)
        every = log_perplexities(model, "pin ", all_candidates(3))
        best = "".join(str(d) for d in all_candidates(3)[np.argmin(every)])
        assert beam_search(model, "pin ", 3, beam=100) == best  # a beam ≥ 10^(k-1) is exact
        canaries = TextCanaries("pin ", (best, "000" if best != "000" else "111"), (1, 1), (0, 0))
        result = MemorizationTest(digits=3, beam=100)(model, canaries, np.random.default_rng(0))
        assert result.extracted == (True, False) and result.exposures[0] == math.log2(1000)
