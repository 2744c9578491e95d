"""Which clients a round samples: a seeded draw keyed by (scenario seed, round).

Kept apart from the strategy so that the probes can ask who took part in a round (membership
inference's member clients) without importing the strategy, which imports them.
"""

from __future__ import annotations

from fedsim.scenario import Scenario
from fedsim.seeding import Stream, numpy_rng

__all__ = ["sample_clients", "sampled_by"]


def sample_clients(scenario: Scenario, server_round: int) -> list[int]:
    """The client ids sampled in ``server_round``, sorted.

    Uniform without replacement (``clients.per_round`` of them), except under central DP with
    ``amplification: poisson``: then each client is included independently with probability
    m/N, the sampling that the accountant's amplification assumes.
    """
    n, k = scenario.data.num_clients, scenario.clients_per_round
    central = scenario.privacy.central_dp
    rng = numpy_rng(scenario.seed, Stream.SAMPLE, server_round)
    if central is not None and central.amplification == "poisson":
        return [int(c) for c in (rng.random(n) < k / n).nonzero()[0]]
    if k >= n:
        return list(range(n))
    return sorted(int(c) for c in rng.choice(n, size=k, replace=False))


def sampled_by(scenario: Scenario, last_round: int) -> list[int]:
    """The client ids sampled at least once in rounds 1..``last_round``, sorted."""
    seen: set[int] = set()
    for server_round in range(1, last_round + 1):
        seen.update(sample_clients(scenario, server_round))
    return sorted(seen)
