"""What a model thief holds: a seeded part of the held-out set, the rest kept for evaluation.

Extraction attackers and watermark removers both hold "public" images of the task: a part of
the server's held-out set (:class:`~server.server_data.ServerData`: the test split no client
trains on, FLTrust's root set taken out). The split is one seeded permutation of that set per
run, from the generator (seed, ``THEFT_DATA``)
(:func:`~fedsim.extraction.public_split`): the thief holds its first ⌊f·n⌉ entries, the
probes evaluate on the rest. Both probes use the same permutation, so with equal fractions
they see the same split, and with different ones the smaller public part is inside the larger.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from fedsim.errors import InvalidSettingError, ScenarioError
from fedsim.extraction import public_split
from fedsim.seeding import Stream, torch_generator
from server.server_data import ServerData

__all__ = ["HeldOut", "held_out_split"]


class HeldOut(NamedTuple):
    """The thief's labelled public images and the disjoint evaluation images."""

    public_x: torch.Tensor
    public_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor


def held_out_split(data: ServerData, seed: int, fraction: float, key: str) -> HeldOut:
    """Split the server's held-out set: the share ``fraction`` for the thief, the rest for tests.

    ``seed`` is the scenario's seed; ``key`` the scenario key of ``fraction`` (for errors).

    Raises
    ------
    ScenarioError
        At ``key`` when either part would be empty.
    """
    x, y = data.held_out
    size = round(fraction * len(y))
    generator = torch_generator(seed, Stream.THEFT_DATA)
    try:
        public, held = public_split(len(y), size, generator)
    except InvalidSettingError as e:
        raise ScenarioError(
            key, fraction, f"a share leaving both parts of the {len(y)} held-out images ({e})"
        ) from None
    return HeldOut(x[public], y[public], x[held], y[held])
