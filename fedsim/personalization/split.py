r"""Each client's own test split, and the method a ``clients.personalization`` block names.

Personalized models are judged on data of their own client's distribution: with
``clients.personalization`` each client's partition is cut once, by a seeded permutation per
client (generator (seed, ``PERSONAL``, client)), into a training part and a test part of
:math:`\lfloor f n \rceil` examples (``test_fraction`` :math:`f`, at least one of each when
the client has two or more examples). The client never trains on its test part.
"""

from __future__ import annotations

import numpy as np

from fedsim.data.partition import Partitions
from fedsim.personalization.base import PERSONALIZATION, Personalization
from fedsim.scenario import PersonalizationConfig
from fedsim.seeding import Stream, numpy_rng

__all__ = ["build_personalization", "local_test_split"]


def local_test_split(
    partitions: Partitions, fraction: float, seed: int
) -> tuple[Partitions, Partitions]:
    """Every client's (training part, test part) of its partition.

    Examples
    --------
    >>> parts = Partitions.from_parts([np.arange(10), np.arange(10, 12), np.array([12])])
    >>> train, test = local_test_split(parts, 0.2, seed=0)
    >>> train.sizes().tolist(), test.sizes().tolist()
    ([8, 1, 1], [2, 1, 0])
    >>> sorted(np.concatenate([train[0], test[0]]).tolist()) == list(range(10))
    True
    """
    if not 0 < fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {fraction!r}")
    train, test = [], []
    for client in range(len(partitions)):
        part = partitions[client]
        n = len(part)
        size = min(max(round(fraction * n), 1), n - 1) if n >= 2 else 0
        order = numpy_rng(seed, Stream.PERSONAL, client).permutation(n)
        test.append(part[np.sort(order[:size])])
        train.append(part[np.sort(order[size:])])
    return Partitions.from_parts(train), Partitions.from_parts(test)


def build_personalization(config: PersonalizationConfig) -> Personalization:
    """The method of a ``clients.personalization`` block, with its settings."""
    if config.method == "fedrep":
        return PERSONALIZATION.build("fedrep", head_epochs=config.head_epochs)
    if config.method == "ditto":
        return PERSONALIZATION.build(
            "ditto", lam=config.lam, personal_epochs=config.personal_epochs
        )
    return PERSONALIZATION.build(config.method)
