"""Partitioners: sizes, coverage (nothing lost or duplicated), label skew."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.data import partition_dirichlet, partition_iid, partition_shards
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
