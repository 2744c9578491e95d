r"""The adversary stage: where colluding attacks replace the malicious clients' updates.

In a simulator the omniscient adversary sits between the round's replies and the aggregator.
The malicious clients trained honestly; the stage takes what the adversary may know —
``knowledge: own`` (only the malicious clients' own honest updates) or ``full`` (every
update of the round, benign ones included) — crafts one update per malicious client with the
colluding attack and puts it in place of that client's honest update (with ``strength:
optimal``, a client's update attack such as sign flip runs here too, on the malicious clients'
own honest updates: :class:`~fedsim.attacks.colluding.ServerSideUpdate`). Outside the attack
window (``attack.start_round`` … ``attack.stop_round``) it changes nothing.

With ``strength: optimal`` (:mod:`fedsim.attacks.strength`) the stage also chooses the
attack's strength τ each round, maximising :math:`\lVert \mathrm{AGG}(H \cup m(\tau)) -
\bar H \rVert` through the server's actual pipeline (pre-stages included). Each evaluation
runs on a deep copy of the pipeline, so stateful rules (FoolsGold's history, FLDetector's
L-BFGS pairs, centered clipping's momentum) and seeded generators (FLAME's noise, bucketing's
shuffles) are left exactly as they were: the real aggregation afterwards sees the same state
and draws the same numbers as without the search. The benign set *H* the adversary assumes
follows ``knowledge``: under ``full`` the round's true benign updates; under ``own`` its own
honest updates, repeated in order to fill the n − f benign places (it knows n, not the others'
updates). Central DP's clipping and noise are not part of the simulated pipeline.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch

from fedsim.attacks.colluding.base import ColludingAttack
from fedsim.attacks.strength import StrengthSearch
from fedsim.errors import InvalidSettingError
from fedsim.seeding import Stream, torch_generator
from server.aggregators import Aggregator
from server.replies import ClientUpdate

__all__ = ["AdversaryStage", "StageResult", "damage"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageResult:
    """The round's updates after the stage, and what the attack reported."""

    updates: list[ClientUpdate]
    info: dict[str, Any]


def damage(
    aggregator: Aggregator,
    benign: torch.Tensor,
    malicious: torch.Tensor,
    bad_rows: list[int],
    weights: torch.Tensor,
    client_ids: list[int],
) -> float:
    r"""The distance the malicious rows move the aggregate from the benign mean.

    .. math:: D = \big\lVert \mathrm{AGG}(U) - \tfrac{1}{|H|}\textstyle\sum_{h \in H} h
              \big\rVert_2

    where *U* is the round's ``(n, d)`` matrix with the ``malicious`` rows at ``bad_rows``
    and the ``benign`` rows *H* (in order) elsewhere. AGG runs on a deep copy of
    ``aggregator``, whose state and generators are therefore untouched. A round the rule
    refuses (``InvalidSettingError``) counts as no damage, ``-inf``.

    Examples
    --------
    >>> from server.aggregators.median import Median
    >>> benign = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0]], dtype=torch.float64)
    >>> bad = torch.tensor([[-10.0], [-10.0]], dtype=torch.float64)
    >>> damage(Median(), benign, bad, [0, 1], torch.ones(7), list(range(7)))  # median 2 vs 3
    1.0
    """
    n = benign.shape[0] + malicious.shape[0]
    rows = torch.empty((n, benign.shape[1]), dtype=torch.float64)
    is_bad = torch.zeros(n, dtype=torch.bool)
    is_bad[bad_rows] = True
    rows[is_bad] = malicious.to(torch.float64)
    rows[~is_bad] = benign.to(torch.float64)
    try:
        result = copy.deepcopy(aggregator)(rows, weights, client_ids)
    except InvalidSettingError:  # the rule refuses this round
        return float("-inf")
    return float(torch.linalg.vector_norm(result.update - benign.mean(dim=0)))


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
    active : callable, optional
        ``active(round)``: whether the round is in the attack window (default: every round).
    aggregator : Aggregator, optional
        The server's pipeline, needed with ``search``.
    search : StrengthSearch, optional
        Choose the attack's strength each round (``strength: optimal``).
    """

    def __init__(
        self,
        attack: ColludingAttack,
        malicious: frozenset[int],
        knowledge: Literal["own", "full"],
        seed: int,
        *,
        active: Callable[[int], bool] | None = None,
        aggregator: Aggregator | None = None,
        search: StrengthSearch | None = None,
    ) -> None:
        if search is not None and aggregator is None:
            raise ValueError("the strength search needs the server's aggregator")
        self.attack = attack
        self.malicious = malicious
        self.knowledge = knowledge
        self.seed = seed
        self.window = active or (lambda server_round: True)
        self.aggregator = aggregator
        self.search = search

    def __call__(self, updates: list[ClientUpdate], server_round: int) -> StageResult:
        """Return ``updates`` (ordered by client id) with the malicious rows crafted."""
        bad = [i for i, u in enumerate(updates) if u.client_id in self.malicious]
        if not bad or not self.window(server_round):
            return StageResult(updates, {})
        own_only = self.knowledge == "own" or self.attack.own_rows_only
        seen = bad if own_only else list(range(len(updates)))
        observed = torch.stack([updates[i].update for i in seen])
        generator = torch_generator(self.seed, Stream.ATTACK, server_round)
        if self.search is not None:
            crafted_rows, info = self._optimal(updates, bad, observed, generator)
        else:
            crafted = self.attack(observed, n=len(updates), f=len(bad), generator=generator)
            crafted_rows, info = crafted.updates, dict(crafted.info)
        result = list(updates)
        for row, i in enumerate(bad):
            result[i] = replace(updates[i], update=crafted_rows[row])
        return StageResult(result, info)

    def _optimal(
        self,
        updates: list[ClientUpdate],
        bad: list[int],
        observed: torch.Tensor,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Line-search the strength against a copy of the pipeline; the crafted rows and info."""
        if self.search is None or self.aggregator is None:
            raise RuntimeError("the strength search needs a search and the aggregator")
        n, f = len(updates), len(bad)
        tunable = self.attack.prepare(observed, n=n, f=f, generator=generator)
        good = [i for i in range(n) if i not in bad]
        if self.knowledge == "full" and good:
            benign = torch.stack([updates[i].update for i in good]).to(torch.float64)
        else:  # own: the adversary's own honest updates stand in for the benign ones
            own = torch.stack([updates[i].update for i in bad]).to(torch.float64)
            benign = own[[j % f for j in range(n - f)]]
        weights = torch.tensor([float(u.num_examples) for u in updates], dtype=torch.float64)
        ids = [u.client_id for u in updates]
        aggregator = self.aggregator

        def objective(tau: float) -> float:
            return damage(aggregator, benign, tunable.craft(tau), bad, weights, ids)

        found = self.search.run(objective, tunable.default, self.attack.strength_bounds)
        info = {
            **tunable.info(found.strength),
            "strength": found.strength,
            "strength_key": tunable.key,
            "strength_default": tunable.default,
            "damage": found.value,
            "damage_default": found.default_value,
            "evaluations": found.evaluations,
        }
        log.debug(
            "%s: %s=%.4g (damage %.4g)", self.attack.name, tunable.key, found.strength, found.value
        )
        return tunable.craft(found.strength), info
