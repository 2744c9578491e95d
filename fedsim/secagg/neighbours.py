r"""The SecAgg+ neighbour graph: a seeded ring of the cohort, each node with its k nearest.

SecAgg+ replaces SecAgg's complete graph by a sparse one: a node shares its secrets with, and
masks against, only its ``k`` neighbours (``num_shares``, itself included). As in Flower 1.42's
``SecAggPlusWorkflow.setup_stage``, the node ids are shuffled into a ring ``π`` and node
``π_i``'s neighbourhood is

.. math:: N(\pi_i) = \{\pi_{(i + o) \bmod n} : o = -\lfloor k/2 \rfloor, \dots,
          \lfloor k/2 \rfloor\},

``n`` the cohort size. The relation is symmetric. Flower shuffles with Python's unseeded
``random.shuffle`` of the ids in arrival order; fedsim permutes the *sorted* ids with the
generator it is given, so the same seed gives the same graph on every runtime.

Reference: Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", ACM CCS 2020 (a random k-regular graph; Flower's is a shuffled
ring, as here).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedsim.errors import InvalidSettingError

__all__ = ["neighbour_graph"]


def neighbour_graph(
    node_ids: Iterable[int], num_shares: int, rng: np.random.Generator
) -> dict[int, frozenset[int]]:
    """Each node's ``num_shares`` neighbours (itself included) on a seeded ring.

    Parameters
    ----------
    node_ids : iterable of int
        The cohort's distinct node ids (their order does not matter).
    num_shares : int
        ``k``, the neighbourhood size (odd, or ``n``: as :meth:`SecAggSettings.for_cohort`
        resolves it); ``k ≥ n`` makes every node a neighbour of every other.
    rng : numpy.random.Generator
        Draws the ring order.

    Returns
    -------
    dict[int, frozenset[int]]
        Node id → its neighbourhood.

    Raises
    ------
    InvalidSettingError
        Repeated node ids, or ``num_shares < 1``.

    Examples
    --------
    >>> graph = neighbour_graph([10, 20, 30, 40, 50], 3, np.random.default_rng(0))
    >>> sorted(len(g) for g in graph.values())
    [3, 3, 3, 3, 3]
    >>> all(a in graph[b] for a in graph for b in graph[a])  # symmetric
    True
    """
    ids = sorted(int(i) for i in node_ids)
    if len(set(ids)) != len(ids):
        raise InvalidSettingError("secure aggregation: node ids must be distinct")
    if num_shares < 1:
        raise InvalidSettingError(f"secure aggregation: num_shares must be >= 1, got {num_shares}")
    n = len(ids)
    ring = [ids[i] for i in rng.permutation(n)]
    half = num_shares // 2
    return {
        nid: frozenset(ring[(i + offset) % n] for offset in range(-half, half + 1))
        for i, nid in enumerate(ring)
    }
