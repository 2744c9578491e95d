r"""Extracting a canary's secret from a language model by beam search from its prefix.

The attacker knows the prefix (``"my secret number is "``) and the secret's format (``k``
digits) and searches the digit strings of length :math:`k` for the one the model finds likeliest:
a beam search keeps the ``beam`` lowest log-perplexity partial secrets at each of the
:math:`k` steps (the extraction of Carlini et al., "The Secret Sharer", USENIX Security 2019,
Section 8, which uses a shortest-path search over the same tree; with ``beam`` ≥
:math:`10^{k-1}` the two agree). A canary counts as extracted when the search's best string is
its secret, verbatim.
"""

from __future__ import annotations

import numpy as np
import torch

from fedsim.data.text_corpus import SEQ_LEN, encode
from fedsim.memorization.canaries import DIGITS
from fedsim.memorization.exposure import Logits
from fedsim.validation import require_int

__all__ = ["beam_search"]


def beam_search(logits: Logits, prefix: str, digits: int, beam: int = 10) -> str:
    """The likeliest ``digits``-digit secret after ``prefix`` found by a beam of width ``beam``.

    Examples
    --------
    A "model" whose next digit is always likeliest one above the previous character's digit
    (after a non-digit: 4):

    >>> def model(w):
    ...     last = w[:, -1].long() - 11  # digit value, or negative
    ...     nxt = torch.where((last >= 0) & (last < 10), (last + 1) % 10, torch.tensor(4))
    ...     return torch.nn.functional.one_hot(nxt + 11, 80).float() * 5
    >>> beam_search(model, "pin ", 3, beam=2)
    '456'
    """
    require_int("beam_search", "digits", digits, minimum=1)
    require_int("beam_search", "beam", beam, minimum=1)
    base = np.concatenate([encode(" " * SEQ_LEN), encode(prefix)])
    digit_codes = torch.from_numpy(encode(DIGITS).astype(np.int64))
    heads = np.zeros((1, 0), dtype=np.int64)
    costs = np.zeros(1, dtype=np.float64)
    for _ in range(digits):
        texts = np.concatenate(
            [np.broadcast_to(base, (len(heads), len(base))), encode(DIGITS)[heads]], axis=1
        )
        windows = torch.from_numpy(np.ascontiguousarray(texts[:, -SEQ_LEN:]))
        with torch.no_grad():
            logp = torch.log_softmax(logits(windows).double(), dim=1)[:, digit_codes].numpy()
        extended = (costs[:, None] - logp).reshape(-1)  # (heads · 10) in nats
        keep = np.argsort(extended, kind="stable")[:beam]
        heads = np.concatenate([heads[keep // 10], (keep % 10)[:, None]], axis=1)
        costs = extended[keep]
    return "".join(DIGITS[d] for d in heads[0])
