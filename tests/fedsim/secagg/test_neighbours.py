"""The SecAgg+ neighbour graph: a seeded ring, k neighbours each, symmetric."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.errors import InvalidSettingError
from fedsim.secagg.neighbours import neighbour_graph

IDS = [901, 17, 4242, 5, 333, 71, 1000, 64, 2]


def test_each_node_has_k_neighbours_itself_included_and_the_relation_is_symmetric() -> None:
    graph = neighbour_graph(IDS, 5, np.random.default_rng(0))
    assert set(graph) == set(IDS)
    assert all(len(g) == 5 and nid in g for nid, g in graph.items())
    assert all(a in graph[b] for a in graph for b in graph[a])


def test_the_graph_is_a_ring_of_the_sorted_ids_permuted_by_the_generator() -> None:
    ring = [sorted(IDS)[i] for i in np.random.default_rng(3).permutation(len(IDS))]
    graph = neighbour_graph(reversed(IDS), 3, np.random.default_rng(3))  # input order is moot
    for i, nid in enumerate(ring):
        assert graph[nid] == {ring[i - 1], nid, ring[(i + 1) % len(ring)]}


def test_the_same_seed_gives_the_same_graph() -> None:
    a = neighbour_graph(IDS, 3, np.random.default_rng(1))
    assert a == neighbour_graph(IDS, 3, np.random.default_rng(1))
    assert a != neighbour_graph(IDS, 3, np.random.default_rng(2))


def test_k_of_n_or_more_is_the_complete_graph() -> None:
    for k in (len(IDS), len(IDS) + 1, 100):
        graph = neighbour_graph(IDS, k, np.random.default_rng(0))
        assert all(g == set(IDS) for g in graph.values())


def test_repeated_ids_are_refused() -> None:
    with pytest.raises(InvalidSettingError, match="distinct"):
        neighbour_graph([1, 2, 2], 3, np.random.default_rng(0))
