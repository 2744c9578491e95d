"""Secret-sharer canaries: a fixed prefix and random digits, repeated in one client's text.

A canary is ``prefix + secret`` (``"my secret number is 281764"``): the secret is ``digits``
random decimal digits, one of :math:`|R| = 10^{digits}` equally likely candidates (Carlini,
Liu, Erlingsson, Kos, Song, "The Secret Sharer: Evaluating and Testing Unintended Memorization
in Neural Networks", USENIX Security 2019). Canary :math:`i` is inserted into the training data
of one honest client (a seeded draw) :math:`r_i` times, :math:`r_i` = ``repeats[i mod k]``: as
the training windows that end on each of its characters (left context: spaces), repeated.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedsim.data.text_corpus import SEQ_LEN, encode
from fedsim.errors import InvalidSettingError
from fedsim.scenario import Scenario
from fedsim.seeding import Stream, numpy_rng

__all__ = [
    "DIGITS",
    "TextCanaries",
    "context_windows",
    "draw_text_canaries",
    "scenario_text_canaries",
]

DIGITS = "0123456789"
"""The secret's alphabet: the randomness space R is every string of ``digits`` of them."""

_SECRETS, _OWNERS = range(2)  # sub-streams of Stream.MEMORIZATION


def context_windows(text: str) -> torch.Tensor:
    """``(len(text), 80)`` ``uint8`` windows: window ``j`` is the 80 characters before ``text[j]``.

    The context left of the text is spaces, so window 0 is all spaces and window ``j`` ends
    with ``text[:j]``.

    Examples
    --------
    >>> from fedsim.data.text_corpus import decode
    >>> w = context_windows("ab")
    >>> w.shape, decode(w[1])[-3:]
    (torch.Size([2, 80]), '  a')
    """
    codes = np.concatenate([encode(" " * SEQ_LEN), encode(text)])
    view = np.lib.stride_tricks.sliding_window_view(codes, SEQ_LEN)[: len(text)]
    return torch.from_numpy(np.ascontiguousarray(view))


@dataclass(frozen=True)
class TextCanaries:
    """A run's canaries.

    Attributes
    ----------
    prefix : str
        What every canary starts with (the attacker knows it).
    secrets : tuple of str
        Each canary's random digits.
    repeats : tuple of int
        How often each is inserted.
    owners : tuple of int
        The client whose data holds each.
    """

    prefix: str
    secrets: tuple[str, ...]
    repeats: tuple[int, ...]
    owners: tuple[int, ...]

    def training_windows(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Canary ``index``'s training windows and targets, repeated ``repeats[index]`` times."""
        text = self.prefix + self.secrets[index]
        x = context_windows(text).repeat(self.repeats[index], 1)
        y = torch.from_numpy(encode(text).astype(np.int64)).repeat(self.repeats[index])
        return x, y

    def per_client(self) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """Every owner's canary windows together, in canary order."""
        out: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for index, owner in enumerate(self.owners):
            out.setdefault(owner, []).append(self.training_windows(index))
        return {
            owner: (torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]))
            for owner, parts in out.items()
        }

    def merged_into(
        self, extra: Mapping[int, tuple[torch.Tensor, torch.Tensor]]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """``extra`` (other examples added to clients) with the canary windows appended."""
        merged = dict(extra)
        for owner, (x, y) in self.per_client().items():
            if owner in merged:
                x0, y0 = merged[owner]
                x, y = torch.cat([x0, x.to(x0.dtype)]), torch.cat([y0, y.to(y0.dtype)])
            merged[owner] = (x, y)
        return merged


def draw_text_canaries(
    seed: int,
    count: int,
    repeats: Collection[int],
    digits: int,
    prefix: str,
    honest: Collection[int],
) -> TextCanaries:
    """Draw ``count`` canaries: secrets, and owners among the ``honest`` clients.

    Canary ``i`` is repeated ``repeats[i mod len(repeats)]`` times. Draws come from the
    scenario ``seed``'s ``Stream.MEMORIZATION``.

    Examples
    --------
    >>> c = draw_text_canaries(0, 4, [1, 10], 3, "pin ", honest=[2, 5])
    >>> c.repeats, len(c.secrets[0]), set(c.owners) <= {2, 5}
    ((1, 10, 1, 10), 3, True)
    """
    repeats = [int(r) for r in repeats]
    if count < 1 or not repeats or min(repeats) < 1 or digits < 1 or not honest:
        raise InvalidSettingError(
            f"canaries need count ≥ 1, repeats ≥ 1, digits ≥ 1 and an honest client; got "
            f"count={count}, repeats={repeats}, digits={digits}, honest={len(honest)}"
        )
    rng = numpy_rng(seed, Stream.MEMORIZATION, _SECRETS)
    secrets = tuple("".join(DIGITS[d] for d in rng.integers(0, 10, digits)) for _ in range(count))
    owner_rng = numpy_rng(seed, Stream.MEMORIZATION, _OWNERS)
    pool = np.asarray(sorted(honest))
    owners = tuple(int(o) for o in pool[owner_rng.integers(0, len(pool), count)])
    return TextCanaries(
        prefix, secrets, tuple(repeats[i % len(repeats)] for i in range(count)), owners
    )


def scenario_text_canaries(scenario: Scenario, malicious: Collection[int]) -> TextCanaries | None:
    """The canaries of ``privacy.memorization`` (None without it or without an honest client).

    Malicious clients own none (they may not train on their data at all).
    """
    config = scenario.privacy.memorization
    honest = [c for c in range(scenario.data.num_clients) if c not in set(malicious)]
    if config is None or not honest:
        return None
    return draw_text_canaries(
        scenario.seed, config.canaries, config.repeats, config.digits, config.prefix, honest
    )
