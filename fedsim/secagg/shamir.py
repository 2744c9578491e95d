r"""Shamir secret sharing over the prime field of :math:`p = 2^{31} - 1`, batched with NumPy.

A secret of ``2L`` bytes is read as ``L`` big-endian 16-bit limbs :math:`a_1, \dots, a_L`
(each in :math:`[0, 2^{16}) \subset \mathbb{F}_p`). Limb :math:`l` is shared on its own
polynomial of degree :math:`t - 1`,

.. math:: f_l(x) = a_l + \sum_{j=1}^{t-1} c_{l,j}\, x^j \pmod p,
          \qquad c_{l,j} \sim \mathcal{U}(\mathbb{F}_p) \text{ i.i.d.},

and share :math:`i \in \{1, \dots, k\}` is :math:`(i, f_1(i), \dots, f_L(i))`. Any :math:`t`
shares with distinct indices :math:`S` rebuild each limb by Lagrange interpolation at 0,

.. math:: a_l = f_l(0) = \sum_{i \in S} f_l(i)\, \lambda_i, \qquad
          \lambda_i = \prod_{j \in S,\, j \ne i} \frac{j}{j - i} \pmod p,

the weights :math:`\lambda` computed once per index set (Python integers,
``pow(·, -1, p)``) and applied to every limb of every secret with that index set at once.
All arithmetic is int64 NumPy: operands stay below :math:`p < 2^{31}`, so a product is below
:math:`2^{62}` and a sum of one product and one operand below :math:`2^{63}`.

**Security.** For any fixed limb :math:`a_l` and any :math:`t - 1` distinct non-zero points
:math:`x_1, \dots, x_{t-1}`, the map :math:`(c_{l,1}, \dots, c_{l,t-1}) \mapsto
(f_l(x_1) - a_l, \dots, f_l(x_{t-1}) - a_l)` is multiplication by the matrix
:math:`(x_i^{\,j})`, a Vandermonde matrix times :math:`\mathrm{diag}(x_i)`, invertible mod
:math:`p`. With the coefficients uniform, the :math:`t - 1` shares are therefore uniform on
:math:`\mathbb{F}_p^{t-1}` whatever :math:`a_l` is: they reveal nothing about it (Shamir's
perfect secrecy, information-theoretic, as over Flower's GF(2^128)). The limbs' coefficients
are drawn independently, so the argument holds jointly for all limbs and all secrets shared in
one call. The coefficients come from ``os.urandom`` (the operating system's CSPRNG, never a
seeded generator): 31-bit words, the single out-of-field value :math:`2^{31} - 1` redrawn, so
each is exactly uniform on :math:`\mathbb{F}_p`. As with pycryptodome's ``Shamir``, shares
carry no integrity check (fedsim's shares travel inside Fernet's authenticated encryption),
and fewer than :math:`t` shares rebuild a wrong secret without an error.

**Wire format** (fedsim's own, not Flower's): a share of a ``2L``-byte secret is
``4 + 4L`` bytes, the index then each :math:`f_l(i)`, all big-endian ``uint32``. Flower's
``create_shares`` pads a secret to whole 16-byte chunks and shares each chunk in
GF(2^128) with pycryptodome, in pure Python: fedsim's 32-byte seed and 48-byte ``sk1`` give
shares of 68 and 100 bytes here, 52 and 68 bytes there.

Reference: A. Shamir, "How to Share a Secret", Communications of the ACM 22(11), 1979.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["PRIME", "combine_shares", "create_shares", "lagrange_at_zero"]

PRIME = 2**31 - 1
"""The field's prime ``p`` (a Mersenne prime): below ``2**31``, so int64 products are exact."""

LIMB_BYTES = 2
"""Bytes of secret per limb: a limb is below ``2**16 < p``."""

WORD = np.dtype(">u4")
"""A share's index and values on the wire: big-endian uint32."""


def create_shares(secrets: Sequence[bytes], threshold: int, num_shares: int) -> list[list[bytes]]:
    """Split each secret into ``num_shares`` shares, any ``threshold`` of which rebuild it.

    All limbs of all ``secrets`` are shared in one batch: one draw of
    ``(t - 1) × L`` random coefficients and ``t`` vectorised Horner steps over the ``k``
    points ``1, …, k``.

    Parameters
    ----------
    secrets : sequence of bytes
        The secrets, each of a positive even length.
    threshold : int
        ``t``: shares needed to rebuild a secret, ``1 ≤ t ≤ k``.
    num_shares : int
        ``k``: shares made of each secret (indices ``1..k``), ``k < p``.

    Returns
    -------
    list of list of bytes
        ``shares[s][i]`` is share ``i + 1`` of ``secrets[s]`` (``4 + 2 · len(secret)`` bytes).

    Raises
    ------
    ValueError
        ``t`` or ``k`` out of range, no secret, or a secret empty or of odd length.

    Examples
    --------
    >>> seed, key = bytes(range(32)), bytes(range(48))
    >>> seed_shares, key_shares = create_shares([seed, key], threshold=3, num_shares=5)
    >>> len(seed_shares), len(seed_shares[0]), len(key_shares[0])
    (5, 68, 100)
    >>> combine_shares([seed_shares[1:4], key_shares[::2]]) == [seed, key]
    True
    """
    t, k = threshold, num_shares
    if not 1 <= t <= k < PRIME:
        raise ValueError(
            f"Shamir sharing needs 1 <= threshold <= num_shares < 2**31 - 1, got "
            f"threshold={t}, num_shares={k}"
        )
    if not secrets or any(not s or len(s) % LIMB_BYTES for s in secrets):
        lengths = [len(s) for s in secrets]
        raise ValueError(
            f"Shamir sharing needs secrets of a positive even number of bytes, got {lengths}"
        )
    limbs = np.frombuffer(b"".join(secrets), dtype=">u2").astype(np.int64)
    points = np.arange(1, k + 1, dtype=np.int64)[:, None]
    values = np.zeros((k, limbs.size), dtype=np.int64)
    for coefficient in _uniform(t - 1, limbs.size):  # c_{t-1} first (Horner)
        values = (values * points + coefficient) % PRIME
    values = (values * points + limbs) % PRIME
    shares, start = [], 0
    for secret in secrets:
        stop = start + len(secret) // LIMB_BYTES
        rows = np.hstack([points, values[:, start:stop]]).astype(WORD)
        shares.append([row.tobytes() for row in rows])
        start = stop
    return shares


def combine_shares(groups: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Rebuild one secret from each group of shares, all groups in few NumPy operations.

    Groups with the same indices and share length are interpolated together (one
    :func:`lagrange_at_zero` each). Every share in a group is used: ``t`` or more
    consistent shares give the secret; fewer give a wrong secret of the right length (a limb
    is kept modulo ``2**16``), not an error.

    Parameters
    ----------
    groups : sequence of sequence of bytes
        Shares of one secret per group (from :func:`create_shares`), in any order.

    Returns
    -------
    list of bytes
        The secret of each group, in order.

    Raises
    ------
    ValueError
        An empty group, shares of different or impossible lengths within a group, an index
        repeated or outside ``[1, p)``, or a value outside ``[0, p)``.

    Examples
    --------
    >>> (shares,) = create_shares([b"fedsim!!"], threshold=2, num_shares=3)
    >>> combine_shares([shares[:2], shares[1:], [shares[2], shares[0]]])
    [b'fedsim!!', b'fedsim!!', b'fedsim!!']
    >>> combine_shares([shares[:1]]) == [b"fedsim!!"]  # below the threshold: a wrong secret
    False
    """
    batches: dict[tuple[tuple[int, ...], int], list[int]] = {}
    parsed = [_parse(g, n) for n, g in enumerate(groups)]
    for n, (indices, values) in enumerate(parsed):
        batches.setdefault((indices, values.shape[1]), []).append(n)
    secrets: list[bytes] = [b""] * len(parsed)
    for (indices, _), members in batches.items():
        values = np.stack([parsed[n][1] for n in members])  # (groups, shares, limbs)
        weights = lagrange_at_zero(indices)[None, :, None]
        limbs = ((values * weights) % PRIME).sum(axis=1) % PRIME  # below k · p: no overflow
        for n, row in zip(members, limbs.astype(">u2"), strict=True):  # mod 2**16
            secrets[n] = row.tobytes()
    return secrets


@lru_cache(maxsize=256)
def lagrange_at_zero(indices: tuple[int, ...]) -> np.ndarray:
    r"""The Lagrange weights at 0 of distinct points ``indices``, modulo ``p``.

    .. math:: \lambda_i = \prod_{j \ne i} j \cdot (j - i)^{-1} \pmod p,
              \qquad f(0) = \sum_i \lambda_i f(i)

    for any polynomial ``f`` of degree below ``len(indices)``.

    Parameters
    ----------
    indices : tuple of int
        Distinct evaluation points in ``[1, p)``.

    Returns
    -------
    numpy.ndarray
        int64 weights in ``[0, p)``, one per index (read-only: the result is cached).

    Examples
    --------
    Two points ``1, 2``: :math:`\lambda_1 = 2/(2-1) = 2`, :math:`\lambda_2 = 1/(1-2) = -1`:

    >>> lagrange_at_zero((1, 2)).tolist() == [2, PRIME - 1]
    True
    """
    weights = []
    for i in indices:
        numerator, denominator = 1, 1
        for j in indices:
            if j != i:
                numerator = numerator * j % PRIME
                denominator = denominator * (j - i) % PRIME
        weights.append(numerator * pow(denominator, -1, PRIME) % PRIME)
    array = np.array(weights, dtype=np.int64)
    array.flags.writeable = False
    return array


def _uniform(rows: int, columns: int) -> np.ndarray:
    """``(rows, columns)`` int64 values uniform on ``[0, p)`` from ``os.urandom``."""
    size = rows * columns
    values = np.frombuffer(os.urandom(4 * size), dtype="<u4").astype(np.int64) & PRIME
    redraw = np.flatnonzero(values == PRIME)  # 2**31 - 1 is not in the field: draw again
    while redraw.size:
        fresh = np.frombuffer(os.urandom(4 * redraw.size), dtype="<u4").astype(np.int64)
        values[redraw] = fresh & PRIME
        redraw = redraw[values[redraw] == PRIME]
    return values.reshape(rows, columns)


def _parse(group: Sequence[bytes], position: int) -> tuple[tuple[int, ...], np.ndarray]:
    """The indices and the ``(shares, limbs)`` int64 values of one group of shares."""
    lengths = {len(share) for share in group}
    if len(lengths) != 1 or (width := lengths.pop()) < 8 or width % 4:
        raise ValueError(
            f"Shamir group {position}: shares must be non-empty, of one length 4 + 4L "
            f"(L >= 1), got lengths {sorted(len(share) for share in group)}"
        )
    words = np.frombuffer(b"".join(group), dtype=WORD).reshape(len(group), -1).astype(np.int64)
    indices = tuple(int(i) for i in words[:, 0])
    if len(set(indices)) != len(indices) or not all(0 < i < PRIME for i in indices):
        raise ValueError(
            f"Shamir group {position}: share indices must be distinct and in [1, 2**31 - 1), "
            f"got {list(indices)}"
        )
    values = words[:, 1:]
    if (values >= PRIME).any():
        raise ValueError(f"Shamir group {position}: a share value is not below p = 2**31 - 1")
    return indices, values
