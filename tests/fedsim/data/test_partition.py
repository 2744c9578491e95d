"""Partitioners: sizes, coverage (nothing lost or duplicated), label skew."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.data import (
    FederatedData,
    Partitions,
    load_dataset,
    partition_dirichlet,
    partition_iid,
    partition_natural,
    partition_shards,
)
from fedsim.errors import InvalidSettingError

LABELS = np.repeat(np.arange(10), 100)  # 1,000 samples, 10 balanced classes


def assert_exact_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


def skew(parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between client label histograms and the global one."""
    global_hist = np.bincount(LABELS, minlength=10) / len(LABELS)
    dists = []
    for p in parts:
        hist = np.bincount(LABELS[p], minlength=10) / max(len(p), 1)
        dists.append(0.5 * np.abs(hist - global_hist).sum())
    return float(np.mean(dists))


def test_iid_sizes_differ_by_at_most_one_and_cover_exactly() -> None:
    parts = partition_iid(1003, 10, seed=1)
    assert {len(p) for p in parts} == {100, 101}
    assert_exact_cover(parts, 1003)


def test_iid_is_seeded() -> None:
    a, b, c = (partition_iid(100, 4, seed=s) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_dirichlet_covers_exactly_and_skew_grows_as_alpha_falls() -> None:
    skews = []
    for alpha in (100.0, 1.0, 0.1):
        parts = partition_dirichlet(LABELS, 10, alpha, seed=0)
        assert_exact_cover(parts, len(LABELS))
        assert min(len(p) for p in parts) >= 1
        skews.append(skew(parts))
    assert skews[0] < skews[1] < skews[2], skews
    assert skews[0] < 0.1 and skews[2] > 0.5


def test_shards_cover_exactly_and_give_few_classes() -> None:
    parts = partition_shards(LABELS, 10, shards_per_client=2, seed=0)
    assert_exact_cover(parts, len(LABELS))
    assert {len(p) for p in parts} == {100}
    # shards of 50 samples never straddle a class boundary here: exactly ≤ 2 classes each
    assert max(len(np.unique(LABELS[p])) for p in parts) <= 2


def test_too_many_clients_is_a_clear_error() -> None:
    with pytest.raises(InvalidSettingError, match="cannot split 5 training samples into 10"):
        partition_iid(5, 10, seed=0)
    with pytest.raises(InvalidSettingError, match="into 20 non-empty parts"):
        partition_shards(LABELS[:10], 10, 2, seed=0)


@pytest.mark.parametrize(
    ("num_samples", "num_clients", "seed"),
    [(7, 3, 0), (1003, 10, 1), (100, 100, 2), (5000, 37, 3), (100_000, 99_991, 4)],
)
def test_compact_iid_gives_exactly_the_array_split_parts(
    num_samples: int, num_clients: int, seed: int
) -> None:
    # The reference: the list-of-arrays partition fedsim used before the compact one.
    order = np.random.default_rng(seed).permutation(num_samples)
    expected = [np.sort(part) for part in np.array_split(order, num_clients)]

    parts = partition_iid(num_samples, num_clients, seed)

    assert isinstance(parts, Partitions) and len(parts) == num_clients
    for want, got in zip(expected, parts, strict=True):
        assert got.dtype == np.int64 and np.array_equal(got, want)
    assert np.array_equal(parts.sizes(), [len(p) for p in expected])
    assert np.array_equal(parts[-1], expected[-1]) and np.array_equal(parts[num_clients - 1], got)


def test_compact_natural_gives_the_sorted_groups() -> None:
    groups = np.random.default_rng(0).integers(0, 50, 3000)
    for num_clients in (1, 10, 50):
        parts = partition_natural(groups, num_clients)
        assert len(parts) == num_clients
        for client, part in enumerate(parts):
            assert np.array_equal(part, np.flatnonzero(groups == client))


def test_partitions_pack_arrays_and_refuse_bad_offsets() -> None:
    parts = Partitions.from_parts([np.array([3, 1]), np.array([], int), np.array([2])])
    assert [p.tolist() for p in parts] == [[3, 1], [], [2]]
    assert [p.tolist() for p in parts[1:]] == [[], [2]]
    with pytest.raises(IndexError, match="client 3 outside 0..2"):
        parts[3]
    with pytest.raises(ValueError, match="rise from 0 to len"):
        Partitions(np.arange(3), np.array([0, 2, 1, 3]))
    with pytest.raises(ValueError, match="rise from 0 to len"):
        Partitions(np.arange(3), np.array([0, 2]))


def test_federated_data_packs_a_tuple_of_partitions() -> None:
    dataset = load_dataset("synthetic", seed=0, test_fraction=0.2, num_samples=40)
    data = FederatedData(dataset, (np.array([0, 5]), np.array([1, 2, 3])))
    assert isinstance(data.partitions, Partitions)
    x, y = data.client(1)
    assert len(x) == 3 and torch.equal(y, dataset.y_train[[1, 2, 3]])
