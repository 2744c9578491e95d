"""``clients.verify_model`` in SecAgg+'s client: neighbours' model hashes, and the bound channel.

Two nodes, threshold 2: every share must reach the other node, so one refusal stops both.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedsim.secagg import ModelInconsistencyError, SecAggClient, SecAggSettings, model_hash

SETTINGS = SecAggSettings(1, 2, clipping_range=1.0, quantization_range=4, modulus_range=16)
COHORT = SETTINGS.for_cohort(2)
A, B = model_hash(np.zeros(3, np.float32)), model_hash(np.ones(3, np.float32))


def pair(hash_1: bytes, hash_2: bytes) -> tuple[SecAggClient, SecAggClient, dict]:
    one, two = SecAggClient(1, SETTINGS, COHORT, hash_1), SecAggClient(2, SETTINGS, COHORT, hash_2)
    return one, two, {1: one.setup(), 2: two.setup()}


def test_same_model_runs_the_protocol() -> None:
    one, two, keys = pair(A, A)
    to_two, to_one = one.share_keys(keys, {1: A, 2: A}), two.share_keys(keys, {1: A, 2: A})
    y = one.masked_vector({2: to_one[1]}, np.array([1, 2, 3]))
    assert y.shape == (3,) and two.masked_vector({1: to_two[2]}, np.zeros(3, np.int64)).shape == (
        3,
    )


def test_a_neighbour_with_another_model_stops_key_sharing() -> None:
    one, two, keys = pair(A, B)
    honest_relay = {1: A, 2: B}
    with pytest.raises(ModelInconsistencyError, match=r"model inconsistency: neighbours \[2\]"):
        one.share_keys(keys, honest_relay)
    with pytest.raises(ModelInconsistencyError, match=r"neighbours \[1\]"):
        two.share_keys(keys, honest_relay)
    three, _, other_keys = pair(A, A)
    with pytest.raises(ModelInconsistencyError, match=r"neighbours \[1, 2\]"):
        three.share_keys(other_keys, None)  # no hashes relayed: nothing to trust


def test_a_forged_relay_fails_at_decryption() -> None:
    # The server tells each node that the other got its own model: key sharing passes, but
    # each channel key is bound to its node's hash, so the shares do not decrypt.
    one, two, keys = pair(A, B)
    to_two = one.share_keys(keys, {1: A, 2: A})
    to_one = two.share_keys(keys, {1: B, 2: B})
    with pytest.raises(ModelInconsistencyError, match="do not decrypt"):
        one.masked_vector({2: to_one[1]}, np.zeros(3, np.int64))
    with pytest.raises(ModelInconsistencyError, match="do not decrypt"):
        two.masked_vector({1: to_two[2]}, np.zeros(3, np.int64))
