r"""SecAgg+'s masks: a node's private mask and its signed pairwise mask with a neighbour.

Node ``u`` sends ``y_u = x_u + PRG(b_u) + Σ_{v ∈ N(u), v ≠ u} s_{u,v} · PRG(k_{u,v})  (mod m)``
with ``b_u`` its private-mask seed, ``k_{u,v} = k_{v,u}`` the key agreed from ``u``'s first
secret key and ``v``'s first public key (ECDH on SECP384R1 + HKDF-SHA256, Flower's
``generate_shared_key``), and the sign ``s_{u,v} = +1`` if ``u > v`` else ``-1`` (Flower's
order of node ids), so that ``s_{u,v} + s_{v,u} = 0`` and pairwise masks cancel in the sum.
``PRG`` is Flower's ``pseudo_rand_gen``: a NumPy ``RandomState`` seeded with the XOR of the
seed's 32-bit words, drawing uniformly from ``[0, m - 2]`` (Flower's ``randint(0, m - 1)``).

The server removes a dropped node's pairwise masks by adding, for each surviving neighbour,
the very term the dropped node would have added (:func:`pairwise_mask` from its side). The
secret key ``sk1`` it rebuilds for that is Shamir-shared as its 48-byte scalar
(:func:`secret_key_to_bytes`), not Flower's 306-byte PEM: 24 limbs of
:mod:`fedsim.secagg.shamir` (Flower's GF(2^128) sharing would need 20 chunks of 16 bytes for
the PEM, 4 for the scalar).

Reference: Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving Machine
Learning", ACM CCS 2017 (double masking); Bell et al., ACM CCS 2020 (SecAgg+); Flower 1.42's
``secaggplus_mod._collect_masked_vectors``.
"""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec
from flwr.common.secure_aggregation.crypto.symmetric_encryption import generate_shared_key
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen
from flwr.supercore.primitives.asymmetric import bytes_to_public_key

__all__ = ["pairwise_mask", "private_mask", "secret_key_from_bytes", "secret_key_to_bytes"]

CURVE = ec.SECP384R1()
"""Flower's curve (``generate_key_pairs``)."""

SCALAR_BYTES = 48
"""A SECP384R1 private scalar's length."""


def secret_key_to_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    """The private scalar of ``key``, big-endian in 48 bytes (what is Shamir-shared).

    Examples
    --------
    >>> from flwr.supercore.primitives.asymmetric import generate_key_pairs
    >>> key, _ = generate_key_pairs()
    >>> raw = secret_key_to_bytes(key)
    >>> len(raw), secret_key_from_bytes(raw).private_numbers() == key.private_numbers()
    (48, True)
    """
    return key.private_numbers().private_value.to_bytes(SCALAR_BYTES, "big")


def secret_key_from_bytes(raw: bytes) -> ec.EllipticCurvePrivateKey:
    """The SECP384R1 private key of a 48-byte scalar (:func:`secret_key_to_bytes`)."""
    return ec.derive_private_key(int.from_bytes(raw, "big"), CURVE)


def private_mask(seed: bytes, shape: tuple[int, ...], modulus: int) -> np.ndarray:
    """``PRG(b_u)``: the private mask of the seed ``b_u`` (int64 in ``[0, m - 2]``).

    Parameters
    ----------
    seed : bytes
        ``b_u``, a multiple of 4 bytes (Flower's rule; 32 random bytes in SecAgg+).
    shape : tuple of int
        The vector's shape.
    modulus : int
        ``m``.

    Returns
    -------
    numpy.ndarray
        int64 array of ``shape``.

    Examples
    --------
    >>> a = private_mask(bytes(32), (4,), 16)
    >>> a.dtype.name, a.shape, bool(((0 <= a) & (a <= 14)).all())
    ('int64', (4,), True)
    >>> bool((a == private_mask(bytes(32), (4,), 16)).all())  # a function of the seed
    True
    """
    return pseudo_rand_gen(seed, modulus, [tuple(shape)])[0]


def pairwise_mask(
    own_id: int,
    own_secret_key: ec.EllipticCurvePrivateKey,
    other_id: int,
    other_public_key: bytes,
    shape: tuple[int, ...],
    modulus: int,
) -> np.ndarray:
    """``s_{u,v} · PRG(k_{u,v})``: node ``u``'s signed pairwise mask with neighbour ``v``.

    Parameters
    ----------
    own_id, other_id : int
        ``u`` and ``v``.
    own_secret_key : cryptography EllipticCurvePrivateKey
        ``u``'s first secret key (``sk1``).
    other_public_key : bytes
        ``v``'s first public key (``pk1``), PEM as Flower serialises it.
    shape : tuple of int
        The vector's shape.
    modulus : int
        ``m``.

    Returns
    -------
    numpy.ndarray
        int64 array of ``shape``, ``+PRG(k)`` if ``u > v`` else ``-PRG(k)``.

    Examples
    --------
    The two sides' masks cancel:

    >>> from flwr.supercore.primitives.asymmetric import generate_key_pairs, public_key_to_bytes
    >>> (sk_a, pk_a), (sk_b, pk_b) = generate_key_pairs(), generate_key_pairs()
    >>> ab = pairwise_mask(1, sk_a, 2, public_key_to_bytes(pk_b), (5,), 2**32)
    >>> ba = pairwise_mask(2, sk_b, 1, public_key_to_bytes(pk_a), (5,), 2**32)
    >>> (ab + ba).tolist(), bool((ab <= 0).all())
    ([0, 0, 0, 0, 0], True)
    """
    key = generate_shared_key(own_secret_key, bytes_to_public_key(other_public_key))
    mask = pseudo_rand_gen(key, modulus, [tuple(shape)])[0]
    return mask if own_id > other_id else -mask
