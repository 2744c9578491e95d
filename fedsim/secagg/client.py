"""One node's side of SecAgg+: its keys, shares and masked vector, stage by stage.

:class:`SecAggClient` runs the four client stages of Flower 1.42's ``secaggplus_mod`` on plain
bytes, ints and NumPy arrays (no Flower ``Message``), so a ClientApp can wrap it and a test can
drive it in memory:

1. :meth:`~SecAggClient.setup`: two ECDH key pairs on SECP384R1, ``(sk1, pk1)`` for pairwise
   masks and ``(sk2, pk2)`` for the channel to each neighbour; returns ``(pk1, pk2)``.
2. :meth:`~SecAggClient.share_keys`: draws the private-mask seed ``b`` (32 bytes of
   ``os.urandom``: the masks cancel exactly, so results stay deterministic), splits ``b`` and
   ``sk1`` (its 48-byte scalar; Flower shares the PEM) into ``k`` Shamir shares with threshold
   ``t`` in one batch (:mod:`fedsim.secagg.shamir`, over a prime field; Flower's
   ``create_shares`` works in GF(2^128), chunk by chunk), keeps its own, and encrypts each
   neighbour's pair (Fernet under the ECDH key of ``sk2`` and the neighbour's ``pk2``).
3. :meth:`~SecAggClient.masked_vector`: decrypts the shares its neighbours sent, checks their
   sender and recipient, and masks its quantized vector
   (:mod:`fedsim.secagg.masks`: private mask plus signed pairwise masks with every neighbour
   that sent it shares), modulo ``m``.
4. :meth:`~SecAggClient.unmask`: for each neighbour the server names, the share of its seed
   ``b`` if it is active, or of its ``sk1`` if it dropped; never both for one node.

**Model verification** (``clients.verify_model``, against Pasquini et al.'s model
inconsistency, ACM CCS 2022): a client built with ``model_hash`` (:func:`model_hash` of the
weights the server announced for it) refuses, at stage 1, neighbours whose announced hash
differs (:class:`~fedsim.secagg.errors.ModelInconsistencyError`), and binds the hash into
each channel key (:func:`bind`), so that a server relaying forged hashes still cannot make
two nodes with different models exchange shares: stage 2 fails to decrypt them.

Flower's primitives are used by import: ``generate_key_pairs``, ``generate_shared_key``,
``encrypt``/``decrypt``, ``share_keys_plaintext_concat``/``separate``; Shamir sharing is
fedsim's own (:func:`fedsim.secagg.shamir.create_shares`).

Reference: Bell, Bonawitz, Gascón, Lepoint, Raykova, ACM CCS 2020 (SecAgg+); Bonawitz et al.,
ACM CCS 2017 (SecAgg's four rounds).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.fernet import InvalidToken
from flwr.common.secure_aggregation.crypto.symmetric_encryption import (
    decrypt,
    encrypt,
    generate_shared_key,
)
from flwr.common.secure_aggregation.secaggplus_utils import (
    share_keys_plaintext_concat,
    share_keys_plaintext_separate,
)
from flwr.supercore.primitives.asymmetric import (
    bytes_to_public_key,
    generate_key_pairs,
    public_key_to_bytes,
)

from fedsim.secagg.errors import ModelInconsistencyError, SecAggAbortedError
from fedsim.secagg.masks import (
    pairwise_mask,
    private_mask,
    secret_key_from_bytes,
    secret_key_to_bytes,
)
from fedsim.secagg.settings import Cohort, SecAggSettings
from fedsim.secagg.shamir import create_shares

__all__ = ["SecAggClient", "bind", "model_hash"]

SEED_BYTES = 32
"""Length of the private-mask seed ``b`` (Flower's)."""


def model_hash(weights: np.ndarray) -> bytes:
    """SHA-256 of a model's flat weights: their dtype, then their bytes (C order).

    Examples
    --------
    >>> model_hash(np.zeros(3, np.float32)) == hashlib.sha256(b"<f4" + bytes(12)).digest()
    True
    >>> model_hash(np.zeros(3, np.float32)) == model_hash(np.zeros(3, np.float64))
    False
    """
    array = np.ascontiguousarray(weights)
    return hashlib.sha256(array.dtype.str.encode() + array.tobytes()).digest()


def bind(key: bytes, digest: bytes) -> bytes:
    """A Fernet channel key bound to a model hash: SHA-256 of the key and the hash, base64.

    An empty ``digest`` leaves ``key`` as it is (Flower's key).

    Examples
    --------
    >>> bind(b"k", b"") == b"k", bind(b"k", b"a") == bind(b"k", b"b")
    (True, False)
    """
    if not digest:
        return key
    return base64.urlsafe_b64encode(hashlib.sha256(key + digest).digest())


class SecAggClient:
    """One node's SecAgg+ state and its four stages.

    Parameters
    ----------
    node_id : int
        This node's id (``0 ≤ id < 2**64``); pairwise-mask signs follow id order.
    settings : SecAggSettings
        The protocol's ranges.
    cohort : Cohort
        The round's ``k`` (shares) and ``t`` (threshold).
    model_hash : bytes
        The hash of the model the server announced for this node (``clients.verify_model``;
        empty: no verification, Flower's protocol).

    Raises
    ------
    SecAggAbortedError
        From a stage: a stage out of order, too few neighbours or shares, a duplicated public
        key, or a share that is not from its claimed sender or not for this node.

    Examples
    --------
    Two nodes, threshold 2, ``Q = 4``, ``m = 16``:

    >>> s = SecAggSettings(1, 2, clipping_range=1.0, quantization_range=4, modulus_range=16)
    >>> c = s.for_cohort(2)
    >>> a, b = SecAggClient(1, s, c), SecAggClient(2, s, c)
    >>> keys = {1: a.setup(), 2: b.setup()}
    >>> to_b, to_a = a.share_keys(keys), b.share_keys(keys)
    >>> list(to_b), list(to_a)  # one ciphertext for the other node each
    ([2], [1])
    >>> y = a.masked_vector({2: to_a[1]}, np.array([1, 4]))
    >>> y.dtype.name, bool(((0 <= y) & (y < 16)).all())
    ('int64', True)
    >>> sorted(a.unmask(active=[1], dead=[2]))  # b's sk1 share: b sent no vector
    Traceback (most recent call last):
    ...
    fedsim.secagg.errors.SecAggAbortedError: SecAgg+ node 1: 1 active neighbours, threshold 2
    """

    def __init__(
        self, node_id: int, settings: SecAggSettings, cohort: Cohort, model_hash: bytes = b""
    ) -> None:
        self.node_id = int(node_id)
        self.settings = settings
        self.cohort = cohort
        self.model_hash = bytes(model_hash)
        self._stage = "new"
        self._sk1, pk1 = generate_key_pairs()
        self._sk2, pk2 = generate_key_pairs()
        self.public_keys = (public_key_to_bytes(pk1), public_key_to_bytes(pk2))
        self._neighbour_keys: dict[int, tuple[bytes, bytes]] = {}
        self._channel: dict[int, bytes] = {}
        self._seed = b""
        self._seed_shares: dict[int, bytes] = {}
        self._sk1_shares: dict[int, bytes] = {}
        self._shape: tuple[int, ...] = ()

    def __getstate__(self) -> dict[str, object]:
        """Picklable state (the node keeps its client between a round's messages).

        The private keys travel as their 48-byte scalars; the pickle is the node's own
        state, never sent to another party.
        """
        state = dict(self.__dict__)
        state["_sk1"], state["_sk2"] = (
            secret_key_to_bytes(self._sk1),
            secret_key_to_bytes(self._sk2),
        )
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        """Restore :meth:`__getstate__`'s state."""
        state = dict(state)
        state["_sk1"] = secret_key_from_bytes(state["_sk1"])  # type: ignore[arg-type]
        state["_sk2"] = secret_key_from_bytes(state["_sk2"])  # type: ignore[arg-type]
        self.__dict__.update(state)

    def setup(self) -> tuple[bytes, bytes]:
        """Stage 0: this node's public keys ``(pk1, pk2)`` (PEM bytes)."""
        self._advance("new", "setup")
        return self.public_keys

    def share_keys(
        self,
        public_keys: Mapping[int, tuple[bytes, bytes]],
        model_hashes: Mapping[int, bytes] | None = None,
    ) -> dict[int, bytes]:
        """Stage 1: encrypted shares of ``b`` and ``sk1`` for each neighbour.

        Parameters
        ----------
        public_keys : mapping of int to (bytes, bytes)
            Node id → ``(pk1, pk2)`` for this node's neighbours that answered stage 0, this
            node included.
        model_hashes : mapping of int to bytes, optional
            Node id → the model hash each neighbour announced (with ``model_hash`` set: a
            neighbour whose hash differs, or is missing, aborts the stage).

        Returns
        -------
        dict[int, bytes]
            Neighbour id → ciphertext (this node's share of each secret stays here).
        """
        self._advance("setup", "share_keys")
        t, k = self.cohort.threshold, self.cohort.num_shares
        if len(public_keys) < t:
            self._abort(f"{len(public_keys)} neighbours answered setup, threshold {t}")
        if len(public_keys) > k:
            self._abort(f"{len(public_keys)} neighbours but only {k} shares")
        flat = [key for pair in public_keys.values() for key in pair]
        if len(set(flat)) != len(flat):
            self._abort("two neighbours' public keys are identical")
        if tuple(public_keys.get(self.node_id, ())) != self.public_keys:
            self._abort("its own public keys are missing or altered")
        if self.model_hash:
            hashes = model_hashes or {}
            differ = sorted(int(n) for n in public_keys if hashes.get(n) != self.model_hash)
            if differ:
                raise ModelInconsistencyError(
                    f"SecAgg+ node {self.node_id}: {ModelInconsistencyError.MARK}: neighbours "
                    f"{differ} announced another model"
                )
        self._neighbour_keys = {int(nid): (pk1, pk2) for nid, (pk1, pk2) in public_keys.items()}
        self._seed = os.urandom(SEED_BYTES)
        secrets = [self._seed, secret_key_to_bytes(self._sk1)]
        seed_shares, sk1_shares = create_shares(secrets, t, k)
        ciphertexts = {}
        for index, (nid, (_, pk2)) in enumerate(self._neighbour_keys.items()):
            if nid == self.node_id:
                self._seed_shares[nid] = seed_shares[index]
                self._sk1_shares[nid] = sk1_shares[index]
                continue
            shared = generate_shared_key(self._sk2, bytes_to_public_key(pk2))
            self._channel[nid] = bind(shared, self.model_hash)
            plain = share_keys_plaintext_concat(
                self.node_id, nid, seed_shares[index], sk1_shares[index]
            )
            ciphertexts[nid] = encrypt(self._channel[nid], plain)
        return ciphertexts

    def masked_vector(self, ciphertexts: Mapping[int, bytes], quantized: np.ndarray) -> np.ndarray:
        """Stage 2: store the neighbours' shares; return the masked vector modulo ``m``.

        Parameters
        ----------
        ciphertexts : mapping of int to bytes
            Sender id → the ciphertext it addressed to this node (the server's
            ``SecAggServer.ciphertexts_for``).
        quantized : numpy.ndarray
            This node's quantized vector: integers in ``[0, Q]``
            (:func:`fedsim.secagg.quantize.quantize`).

        Returns
        -------
        numpy.ndarray
            int64 ``quantized + PRG(b) + Σ s·PRG(k)`` modulo ``m``, in ``[0, m)``.
        """
        self._advance("share_keys", "masked_vector")
        t, m = self.cohort.threshold, self.settings.modulus_range
        if len(ciphertexts) + 1 < t:
            self._abort(f"shares from {len(ciphertexts)} neighbours + its own, threshold {t}")
        q, big_q = np.asarray(quantized), self.settings.quantization_range
        if q.dtype.kind not in "iu" or (q.size and (q.min() < 0 or q.max() > big_q)):
            self._abort(f"its vector must hold integers in [0, {big_q}]")
        for src, ciphertext in ciphertexts.items():
            if src not in self._channel:
                self._abort(f"a share from node {src}, which is no neighbour")
            try:
                plain = decrypt(self._channel[src], ciphertext)
            except InvalidToken:
                if self.model_hash:  # the channel key binds the model: another model
                    raise ModelInconsistencyError(
                        f"SecAgg+ node {self.node_id}: {ModelInconsistencyError.MARK}: node "
                        f"{src}'s shares do not decrypt under this node's model hash"
                    ) from None
                self._abort(f"node {src}'s shares do not decrypt")
            actual_src, dst, seed_share, sk1_share = share_keys_plaintext_separate(plain)
            if actual_src != src or dst != self.node_id:
                self._abort(f"a share from {actual_src} for {dst} arrived as from {src}")
            self._seed_shares[src], self._sk1_shares[src] = seed_share, sk1_share
        self._shape = q.shape
        masked = q.astype(np.int64) + private_mask(self._seed, q.shape, m)
        for src in ciphertexts:
            pk1 = self._neighbour_keys[src][0]
            masked += pairwise_mask(self.node_id, self._sk1, src, pk1, q.shape, m)
        return masked & (m - 1)

    def unmask(self, active: Iterable[int], dead: Iterable[int]) -> dict[int, bytes]:
        """Stage 3: shares of ``b`` for the active neighbours, of ``sk1`` for the dead ones.

        Parameters
        ----------
        active : iterable of int
            Neighbours whose masked vectors are in the sum (this node included).
        dead : iterable of int
            Neighbours that shared keys but sent no masked vector.

        Returns
        -------
        dict[int, bytes]
            Owner id → this node's share of the owner's secret.
        """
        self._advance("masked_vector", "unmask")
        active, dead = [int(i) for i in active], [int(i) for i in dead]
        if len(active) < self.cohort.threshold:
            self._abort(f"{len(active)} active neighbours, threshold {self.cohort.threshold}")
        if set(active) & set(dead):
            self._abort(f"nodes {sorted(set(active) & set(dead))} named both active and dead")
        missing = [i for i in active + dead if i not in self._seed_shares]
        if missing:
            self._abort(f"it holds no shares of nodes {missing}")
        shares = {nid: self._seed_shares[nid] for nid in active}
        shares.update({nid: self._sk1_shares[nid] for nid in dead})
        return shares

    def _advance(self, expected: str, stage: str) -> None:
        if self._stage != expected:
            self._abort(f"stage {stage!r} after {self._stage!r}, expected after {expected!r}")
        self._stage = stage

    def _abort(self, reason: str) -> None:
        raise SecAggAbortedError(f"SecAgg+ node {self.node_id}: {reason}")
