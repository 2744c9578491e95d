"""fedsim's batched Shamir sharing: round trips, thresholds, and a plain-Python reference.

The reference re-derives the mathematics with Python integers and ``fractions.Fraction``:
share bytes parsed with ``int.from_bytes``, polynomials evaluated term by term modulo ``p``,
Lagrange interpolation over the rationals and reduced modulo ``p`` only at the end.
"""

from __future__ import annotations

import itertools
import os
import random
from fractions import Fraction

import numpy as np
import pytest

from fedsim.secagg import shamir
from fedsim.secagg.shamir import PRIME, combine_shares, create_shares, lagrange_at_zero


def parse(share: bytes) -> tuple[int, list[int]]:
    """Index and values of a share, by hand: big-endian 4-byte words."""
    words = [int.from_bytes(share[i : i + 4], "big") for i in range(0, len(share), 4)]
    return words[0], words[1:]


def limbs(secret: bytes) -> list[int]:
    return [int.from_bytes(secret[i : i + 2], "big") for i in range(0, len(secret), 2)]


def reference_interpolate(points: list[tuple[int, int]], x: int) -> int:
    """f(x) mod p for the polynomial of least degree through ``points``, over the rationals."""
    total = Fraction(0)
    for i, (xi, yi) in enumerate(points):
        term = Fraction(yi)
        for j, (xj, _) in enumerate(points):
            if j != i:
                term *= Fraction(x - xj, xi - xj)
        total += term
    return total.numerator * pow(total.denominator, -1, PRIME) % PRIME


def reference_share(secret: bytes, coefficients: list[list[int]], index: int) -> bytes:
    """Share ``index`` of ``secret`` with ``coefficients[l][j - 1]`` = c_{l,j}, term by term."""
    values = [
        (a + sum(c * pow(index, j + 1, PRIME) for j, c in enumerate(cs))) % PRIME
        for a, cs in zip(limbs(secret), coefficients, strict=True)
    ]
    return b"".join(v.to_bytes(4, "big") for v in [index, *values])


@pytest.mark.parametrize("length", [32, 48])
@pytest.mark.parametrize(("t", "k"), [(1, 1), (2, 3), (3, 5), (5, 5), (31, 51)])
def test_round_trip(length: int, t: int, k: int) -> None:
    secret = os.urandom(length)
    (shares,) = create_shares([secret], t, k)
    assert len(shares) == k
    assert all(len(s) == 4 + 2 * length for s in shares)
    assert [parse(s)[0] for s in shares] == list(range(1, k + 1))
    assert combine_shares([shares[:t]]) == [secret]
    assert combine_shares([shares]) == [secret]  # more than t consistent shares: fine too


def test_any_t_subset_in_any_order_rebuilds_both_secrets() -> None:
    seed, key = os.urandom(32), os.urandom(48)
    t, k = 3, 5
    seed_shares, key_shares = create_shares([seed, key], t, k)
    rng = random.Random(0)
    for subset in itertools.combinations(range(k), t):
        order = rng.sample(subset, t)
        rebuilt = combine_shares([[seed_shares[i] for i in order], [key_shares[i] for i in order]])
        assert rebuilt == [seed, key]


@pytest.mark.parametrize("length", [32, 48])
def test_t_minus_one_shares_give_a_wrong_secret_not_an_error(length: int) -> None:
    secret = os.urandom(length)
    (shares,) = create_shares([secret], 4, 7)
    for subset in itertools.combinations(shares, 3):
        (wrong,) = combine_shares([list(subset)])
        assert len(wrong) == length and wrong != secret


def test_shares_lie_on_one_polynomial_of_degree_t_minus_1_whose_constant_is_the_secret() -> None:
    secret, t, k = os.urandom(48), 4, 9
    (shares,) = create_shares([secret], t, k)
    parsed = [parse(s) for s in shares]
    for limb, a in enumerate(limbs(secret)):
        points = [(x, values[limb]) for x, values in parsed]
        assert reference_interpolate(points[:t], 0) == a
        for x, y in points[t:]:  # the other k - t shares are on the same polynomial
            assert reference_interpolate(points[:t], x) == y


def test_combine_rebuilds_shares_made_by_the_reference() -> None:
    rng = random.Random(1)
    secret, t = os.urandom(32), 5
    coefficients = [[rng.randrange(PRIME) for _ in range(t - 1)] for _ in limbs(secret)]
    indices = rng.sample(range(1, 40), t)
    shares = [reference_share(secret, coefficients, i) for i in indices]
    assert combine_shares([shares]) == [secret]
    ours = create_shares([secret], t, 6)[0]
    assert combine_shares([shares, ours]) == [secret, secret]


@pytest.mark.parametrize("size", [1, 2, 3, 8, 31])
def test_lagrange_weights_match_the_rational_reference(size: int) -> None:
    rng = random.Random(size)
    for _ in range(5):
        indices = tuple(rng.sample(range(1, 200), size))
        expected = []
        for i in indices:
            weight = Fraction(1)
            for j in indices:
                if j != i:
                    weight *= Fraction(j, j - i)
            expected.append(weight.numerator * pow(weight.denominator, -1, PRIME) % PRIME)
        assert lagrange_at_zero(indices).tolist() == expected


def test_groups_of_other_indices_and_lengths_combine_in_one_call() -> None:
    secrets = [os.urandom(32), os.urandom(48), os.urandom(2), os.urandom(32)]
    groups = []
    for n, secret in enumerate(secrets):
        (shares,) = create_shares([secret], 2 + n % 2, 4)
        groups.append(shares[n % 2 :])  # indices {1..4} or {2..4}
    assert combine_shares(groups) == secrets
    assert [combine_shares([g])[0] for g in groups] == secrets


def test_each_sharing_draws_fresh_coefficients() -> None:
    secret = bytes(32)
    a, b = create_shares([secret], 3, 5)[0], create_shares([secret], 3, 5)[0]
    assert a != b
    assert combine_shares([a[2:]]) == combine_shares([b[:3]]) == [secret]


def test_the_out_of_field_word_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    words = iter([[PRIME, 5, 2**32 - 1], [7, PRIME], [0x80000009]])  # 2**32 - 1 & p == p

    def urandom(size: int) -> bytes:
        batch = next(words)
        assert size == 4 * len(batch)
        return np.array(batch, dtype="<u4").tobytes()

    monkeypatch.setattr(shamir.os, "urandom", urandom)
    assert shamir._uniform(1, 3).tolist() == [[7, 5, 9]]


def test_bad_settings_and_shares_are_refused() -> None:
    with pytest.raises(ValueError, match=r"threshold <= num_shares .* threshold=4, num_shares=3"):
        create_shares([bytes(32)], 4, 3)
    with pytest.raises(ValueError, match=r"threshold=0"):
        create_shares([bytes(32)], 0, 3)
    with pytest.raises(ValueError, match=r"even number of bytes, got \[32, 3\]"):
        create_shares([bytes(32), bytes(3)], 2, 3)
    with pytest.raises(ValueError, match=r"even number of bytes, got \[\]"):
        create_shares([], 2, 3)
    (shares,) = create_shares([bytes(32)], 2, 3)
    with pytest.raises(ValueError, match=r"group 1: .* got lengths \[\]"):
        combine_shares([shares, []])
    with pytest.raises(ValueError, match=r"of one length"):
        combine_shares([[shares[0], shares[1][:-4]]])
    with pytest.raises(ValueError, match=r"distinct .* got \[1, 1\]"):
        combine_shares([[shares[0], shares[0]]])
    with pytest.raises(ValueError, match=r"got \[0, 2\]"):
        combine_shares([[bytes(4) + shares[0][4:], shares[1]]])
    with pytest.raises(ValueError, match=r"not below p"):
        combine_shares([[shares[0][:4] + b"\xff" * 64, shares[1]]])
