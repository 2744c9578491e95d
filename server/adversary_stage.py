"""The adversary stage: where colluding attacks replace the malicious clients' updates.

In a simulator the omniscient adversary sits between the round's replies and the aggregator.
The malicious clients trained honestly; the stage takes what the adversary may know —
``knowledge: own`` (only the malicious clients' own honest updates) or ``full`` (every
update of the round, benign ones included) — crafts one update per malicious client with the
colluding attack and puts it in place of that client's honest update.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from fedsim.attacks.colluding.base import ColludingAttack
from fedsim.seeding import Stream, torch_generator
from server.replies import ClientUpdate

__all__ = ["AdversaryStage", "StageResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    """The round's updates after the stage, and what the attack reported."""

    updates: list[ClientUpdate]
    info: dict[str, Any]


class AdversaryStage:
    """Apply a colluding attack to a round's checked updates.

    Parameters
    ----------
    attack : ColludingAttack
        The attack crafting the malicious updates.
    malicious : frozenset[int]
        The run's malicious client ids.
    knowledge : {"own", "full"}
        What the adversary sees (see the module docstring).
    seed : int
        Scenario seed; the attack's generator is keyed by (seed, round).
    """

    def __init__(
        self,
        attack: ColludingAttack,
        malicious: frozenset[int],
        knowledge: Literal["own", "full"],
        seed: int,
    ) -> None:
        self.attack = attack
        self.malicious = malicious
        self.knowledge = knowledge
        self.seed = seed

    def __call__(self, updates: list[ClientUpdate], server_round: int) -> StageResult:
        """Return ``updates`` (ordered by client id) with the malicious rows crafted."""
        bad = [i for i, u in enumerate(updates) if u.client_id in self.malicious]
        if not bad:
            return StageResult(updates, {})
        seen = bad if self.knowledge == "own" else list(range(len(updates)))
        observed = torch.stack([updates[i].update for i in seen])
        generator = torch_generator(self.seed, Stream.ATTACK, server_round)
        crafted = self.attack(observed, n=len(updates), f=len(bad), generator=generator)
        result = list(updates)
        for row, i in enumerate(bad):
            result[i] = replace(updates[i], update=crafted.updates[row])
        return StageResult(result, dict(crafted.info))
