"""A whole SecAgg+ round: the plain sum of the clipped vectors, with and without drops."""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.errors import InvalidSettingError
from fedsim.secagg import (
    STAGES,
    SecAggAbortedError,
    SecAggClient,
    SecAggServer,
    SecAggSettings,
    secure_sum,
    sum_error_bound,
)

SETTINGS = SecAggSettings(clipping_range=2.0)


def vectors(n: int, d: int = 6, seed: int = 0) -> np.ndarray:
    """n vectors, some coordinates beyond c = 2 (clipped)."""
    return np.random.default_rng(seed).normal(scale=1.5, size=(n, d))


def clipped_sum(x: np.ndarray, rows) -> np.ndarray:  # noqa: ANN001
    return np.clip(x[list(rows)], -2.0, 2.0).sum(axis=0)


@pytest.mark.parametrize("n", [5, 8, 13, 20])
def test_the_secure_sum_is_the_sum_of_the_clipped_vectors(n: int) -> None:
    x = vectors(n)
    out = secure_sum(x, SETTINGS, seed=n)
    assert out.survivors == tuple(range(n))
    assert out.total.dtype == np.float64
    assert np.abs(out.total - clipped_sum(x, range(n))).max() < sum_error_bound(n, SETTINGS)
    assert np.abs(x).max() > 2.0  # clipping was exercised


def test_the_same_seed_gives_the_same_sum_bit_for_bit() -> None:
    x = vectors(7)
    a, b = secure_sum(x, SETTINGS, seed=3), secure_sum(x, SETTINGS, seed=3)
    assert np.array_equal(a.total, b.total)  # fresh keys and seeds, yet the masks cancel exactly


def test_a_fifth_dropping_after_masking_is_recovered_through_shares() -> None:
    n, x = 10, vectors(10, seed=1)
    out = secure_sum(x, SETTINGS, seed=1, drop_after_masking={2, 7})
    assert out.survivors == tuple(range(n))  # their vectors arrived: they are in the sum
    assert out.stages["unmask"].messages_up == n - 2
    assert np.abs(out.total - clipped_sum(x, range(n))).max() < sum_error_bound(n, SETTINGS)


def test_nodes_dropping_before_masking_leave_the_sum_and_their_pairwise_masks_are_removed() -> None:
    n, x = 10, vectors(10, seed=2)
    out = secure_sum(x, SETTINGS, seed=2, drop_before_masking={0, 5}, drop_before_sharing={9})
    kept = [i for i in range(n) if i not in {0, 5, 9}]
    assert out.survivors == tuple(kept)
    assert np.abs(out.total - clipped_sum(x, kept)).max() < sum_error_bound(len(kept), SETTINGS)


def test_all_kinds_of_drop_at_once() -> None:
    # n = 20: k = 11, t = 7; 4 drops leave every node at least 7 of its 11 neighbours
    n, x = 20, vectors(20, seed=4)
    out = secure_sum(
        x,
        SETTINGS,
        seed=4,
        drop_before_sharing={1},
        drop_before_masking={4},
        drop_after_masking={12, 15},
    )
    kept = [i for i in range(n) if i not in {1, 4}]
    assert out.survivors == tuple(kept)
    assert np.abs(out.total - clipped_sum(x, kept)).max() < sum_error_bound(len(kept), SETTINGS)


def test_too_few_shares_fail_the_round_cleanly() -> None:
    # n = 5: k = 3, t = 2. With only 2 nodes answering the unmask stage, 6 shares are
    # returned for 5 secrets needing 2 each: some node has fewer than t.
    x = vectors(5)
    with pytest.raises(SecAggAbortedError, match=r"node \d+ has [01] shares returned, threshold 2"):
        secure_sum(x, SecAggSettings(), seed=0, drop_after_masking={0, 1, 2})


def test_too_many_drops_before_masking_fail_before_unmasking() -> None:
    with pytest.raises(SecAggAbortedError, match=r"neighbours left to unmask, threshold 2"):
        secure_sum(vectors(5), SecAggSettings(), seed=0, drop_before_masking={0, 1, 2})


def test_costs_are_counted_per_stage() -> None:
    n, d = 6, 6
    out = secure_sum(vectors(n, d), SETTINGS, seed=0)
    assert list(out.stages) == list(STAGES)
    k = out.cohort.num_shares  # 0.5 * 6 = 3
    assert out.stages["setup"].messages_up == n
    assert out.stages["share_keys"].messages_up == n
    # each node sends one ciphertext per neighbour but itself
    shared = out.stages["share_keys"].bytes_up
    assert shared > n * (k - 1) * 100  # Fernet tokens of two Shamir shares each
    assert out.stages["masked_vector"].bytes_up == n * d * 8
    assert all(cost.seconds > 0 for cost in out.stages.values())


def test_the_unmask_stage_carries_fedsims_shamir_shares_at_their_length() -> None:
    # no drop: each of the n nodes returns a 32-byte seed's share (4 + 2 * 32 bytes) for each of
    # its k neighbours, itself included, each after an 8-byte owner id
    n = 6
    out = secure_sum(vectors(n), SETTINGS, seed=0)
    assert out.stages["unmask"].bytes_up == n * out.cohort.num_shares * (8 + 4 + 2 * 32)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(InvalidSettingError, match="one shape"):
        secure_sum([[1.0, 2.0], [1.0]], SETTINGS, seed=0)
    with pytest.raises(InvalidSettingError, match="must fit 3 vectors"):
        secure_sum(vectors(3), SETTINGS, seed=0, drop_after_masking={3})


def test_the_server_refuses_both_shares_of_one_node_and_replies_from_strangers() -> None:
    s = SecAggSettings(1, 2)
    cohort = s.for_cohort(3)
    node = SecAggClient(1, s, cohort)
    keys = {1: node.setup()}
    with pytest.raises(SecAggAbortedError, match="1 neighbours answered setup, threshold 2"):
        node.share_keys(keys)
    server = SecAggServer([1, 2, 3], s, cohort, np.random.default_rng(0))
    with pytest.raises(SecAggAbortedError, match=r"replies from nodes \[4\], not asked"):
        server.receive_public_keys({4: (b"a", b"b")})


def test_public_weights_are_applied_before_clipping() -> None:
    x, w = vectors(5, seed=6), [1.0, 2.0, 0.5, 3.0, 1.0]
    out = secure_sum(x, SETTINGS, seed=6, weights=w)
    expected = np.clip(x * np.array(w)[:, None], -2.0, 2.0).sum(axis=0)
    assert np.abs(out.total - expected).max() < sum_error_bound(5, SETTINGS)


def test_the_server_sees_masked_vectors_that_look_nothing_like_the_quantized_ones() -> None:
    s = SecAggSettings(1, 2)
    cohort = s.for_cohort(3)
    server = SecAggServer([1, 2, 3], s, cohort, np.random.default_rng(0))
    nodes = {i: SecAggClient(i, s, cohort) for i in (1, 2, 3)}
    server.receive_public_keys({i: n.setup() for i, n in nodes.items()})
    server.receive_ciphertexts(
        {i: n.share_keys(server.public_keys_for(i)) for i, n in nodes.items()}
    )
    q = np.full(1000, 7, dtype=np.int64)
    y = nodes[1].masked_vector(server.ciphertexts_for(1), q)
    assert 0 <= y.min() and y.max() < s.modulus_range
    assert np.mean(y == q) < 0.01 and y.std() > s.modulus_range / 4  # spread over [0, m)
