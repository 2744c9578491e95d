r"""The server's side of SecAgg+: relay keys and shares, sum masked vectors, unmask the sum.

:class:`SecAggServer` keeps what Flower 1.42's ``SecAggPlusWorkflow`` keeps between its four
stages, on plain bytes, ints and arrays. With ``K`` the nodes that answered setup, ``S ⊆ K``
those that shared keys and ``A ⊆ S`` those whose masked vectors arrived, the server computes

.. math:: \sum_{u \in A} x_u = \sum_{u \in A} y_u - \sum_{u \in A} PRG(b_u)
          + \sum_{d \in S \setminus A} \sum_{v \in N(d) \cap A} s_{d,v}\, PRG(k_{d,v})
          \pmod m,

rebuilding each ``b_u`` (``u ∈ A``) and each dropped node's ``sk1`` (``d ∈ S \ A``) from at
least ``t`` Shamir shares held by its neighbours in ``A``, all secrets in one batch
(:func:`fedsim.secagg.shamir.combine_shares`; Flower's ``combine_shares`` rebuilds one secret
at a time in GF(2^128)).
Node ``u``'s pairwise masks are only with neighbours in ``S`` (those it received shares from).

**Departures from Flower.** A node that drops before sharing its keys is simply out of the
round (Flower's unmask stage then finds no shares of it and halts); the threshold is checked
per node whose secret is needed, rather than for every sampled node; the neighbour graph is
seeded; a failure raises :class:`~fedsim.secagg.errors.SecAggAbortedError` naming the node and
its count instead of logging and returning ``False``.

Reference: Bell, Bonawitz, Gascón, Lepoint, Raykova, ACM CCS 2020 (SecAgg+); Bonawitz et al.,
ACM CCS 2017.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from fedsim.secagg.errors import SecAggAbortedError
from fedsim.secagg.masks import pairwise_mask, private_mask, secret_key_from_bytes
from fedsim.secagg.neighbours import neighbour_graph
from fedsim.secagg.settings import Cohort, SecAggSettings
from fedsim.secagg.shamir import combine_shares

__all__ = ["SecAggServer"]


class SecAggServer:
    """The server's SecAgg+ state for one round.

    Parameters
    ----------
    node_ids : iterable of int
        The sampled nodes.
    settings : SecAggSettings
        The protocol's ranges.
    cohort : Cohort
        ``k`` and ``t`` for these nodes (:meth:`SecAggSettings.for_cohort`).
    rng : numpy.random.Generator
        Draws the neighbour graph.

    Raises
    ------
    SecAggAbortedError
        From a stage: a node whose secret is needed has fewer than ``t`` neighbours left to
        hold (or return) its shares, a reply from a node not in the stage, or vectors of
        different shapes.

    Examples
    --------
    The stages in order for three nodes, all surviving (``t = 2``):

    >>> from fedsim.secagg.client import SecAggClient
    >>> s = SecAggSettings(1, 2, clipping_range=1.0, quantization_range=4, modulus_range=16)
    >>> c = s.for_cohort(3)
    >>> server = SecAggServer([1, 2, 3], s, c, np.random.default_rng(0))
    >>> nodes = {i: SecAggClient(i, s, c) for i in (1, 2, 3)}
    >>> server.receive_public_keys({i: n.setup() for i, n in nodes.items()})
    >>> server.receive_ciphertexts(
    ...     {i: n.share_keys(server.public_keys_for(i)) for i, n in nodes.items()})
    >>> x = {1: np.array([0, 4]), 2: np.array([1, 1]), 3: np.array([2, 0])}
    >>> server.receive_masked_vectors(
    ...     {i: n.masked_vector(server.ciphertexts_for(i), x[i]) for i, n in nodes.items()})
    >>> shares = {i: n.unmask(*server.unmask_request(i)) for i, n in nodes.items()}
    >>> server.unmask(shares).tolist()
    [3, 5]
    """

    def __init__(
        self,
        node_ids: Iterable[int],
        settings: SecAggSettings,
        cohort: Cohort,
        rng: np.random.Generator,
    ) -> None:
        self.settings = settings
        self.cohort = cohort
        self.graph = neighbour_graph(node_ids, cohort.num_shares, rng)
        if len(self.graph) != cohort.num_nodes:
            raise SecAggAbortedError(
                f"SecAgg+: {len(self.graph)} nodes for a cohort resolved for {cohort.num_nodes}"
            )
        self.keyed: frozenset[int] = frozenset()
        self.shared: frozenset[int] = frozenset()
        self.masked: frozenset[int] = frozenset()
        self._public_keys: dict[int, tuple[bytes, bytes]] = {}
        self._forward: dict[int, dict[int, bytes]] = {}
        self._sum: np.ndarray | None = None

    # stage 0: setup
    def receive_public_keys(self, public_keys: Mapping[int, tuple[bytes, bytes]]) -> None:
        """Keep the ``(pk1, pk2)`` of the nodes that answered setup (``K``)."""
        self._check_senders("setup", public_keys, frozenset(self.graph))
        self._public_keys = {int(i): (pk1, pk2) for i, (pk1, pk2) in public_keys.items()}
        self.keyed = frozenset(self._public_keys)
        self._check_holders("setup", self.keyed, self.keyed, "to share with")

    # stage 1: share keys
    def public_keys_for(self, node_id: int) -> dict[int, tuple[bytes, bytes]]:
        """The public keys sent to ``node_id``: its neighbours in ``K``, itself included."""
        return {i: self._public_keys[i] for i in sorted(self.graph[node_id] & self.keyed)}

    def receive_ciphertexts(self, replies: Mapping[int, Mapping[int, bytes]]) -> None:
        """Keep each node's ciphertexts (sender → recipient → bytes) to forward (``S``)."""
        self._check_senders("share_keys", replies, self.keyed)
        self.shared = frozenset(int(i) for i in replies)
        self._forward = {dst: {} for dst in self.shared}
        for src, ciphertexts in sorted(replies.items()):
            for dst, ciphertext in ciphertexts.items():
                if dst not in self.graph[src]:
                    raise SecAggAbortedError(
                        f"SecAgg+: node {src} sent shares to non-neighbour {dst}"
                    )
                if dst in self._forward:
                    self._forward[dst][int(src)] = ciphertext
        self._check_holders("share_keys", self.shared, self.shared, "holding its shares")

    # stage 2: collect masked vectors
    def ciphertexts_for(self, node_id: int) -> dict[int, bytes]:
        """The ciphertexts addressed to ``node_id``, by sender."""
        return dict(self._forward[node_id])

    def receive_masked_vectors(self, vectors: Mapping[int, np.ndarray]) -> None:
        """Sum the masked vectors modulo ``m``; their senders are ``A``."""
        self._check_senders("masked_vector", vectors, self.shared)
        if not vectors:
            raise SecAggAbortedError("SecAgg+: no masked vector arrived")
        m = self.settings.modulus_range
        shapes = {np.shape(v) for v in vectors.values()}
        if len(shapes) != 1:
            raise SecAggAbortedError(f"SecAgg+: masked vectors of shapes {sorted(shapes)}")
        total = np.zeros(shapes.pop(), dtype=np.int64)
        for _, vector in sorted(vectors.items()):
            total += np.asarray(vector, dtype=np.int64)
            total &= m - 1
        self._sum, self.masked = total, frozenset(int(i) for i in vectors)
        self._forward = {}
        self._check_holders("masked_vector", self.shared, self.masked, "left to unmask")

    # stage 3: unmask
    def unmask_request(self, node_id: int) -> tuple[list[int], list[int]]:
        """``(active, dead)`` neighbours of ``node_id``: in ``A``, and in ``S`` but not ``A``."""
        neighbours = self.graph[node_id]
        return sorted(neighbours & self.masked), sorted(neighbours & (self.shared - self.masked))

    def unmask(self, replies: Mapping[int, Mapping[int, bytes]]) -> np.ndarray:
        """Rebuild the secrets from the shares; return ``Σ_{u ∈ A} x_u mod m`` (int64).

        Parameters
        ----------
        replies : mapping of int to mapping of int to bytes
            Replier (in ``A``) → owner → share, from :meth:`SecAggClient.unmask`.

        Returns
        -------
        numpy.ndarray
            The sum of the quantized vectors of ``A``; decode it with
            :func:`fedsim.secagg.quantize.decode_sum` and ``len(self.masked)``.
        """
        if self._sum is None:
            raise SecAggAbortedError("SecAgg+: unmask before any masked vector arrived")
        self._check_senders("unmask", replies, self.masked)
        shares: dict[int, list[bytes]] = {i: [] for i in self.shared}
        for replier, owned in replies.items():
            for owner, share in owned.items():
                if owner not in self.graph[replier] or owner not in shares:
                    raise SecAggAbortedError(
                        f"SecAgg+: node {replier} returned a share of node {owner}, not asked"
                    )
                shares[owner].append(share)
        m, t = self.settings.modulus_range, self.cohort.threshold
        for owner, owned in sorted(shares.items()):
            if len(owned) < t:
                raise SecAggAbortedError(
                    f"SecAgg+: node {owner} has {len(owned)} shares returned, threshold {t}: "
                    "the round fails without revealing anything"
                )
        owners = sorted(shares)
        secrets = combine_shares([shares[owner] for owner in owners])
        total, shape = self._sum.copy(), self._sum.shape
        for owner, secret in zip(owners, secrets, strict=True):
            if owner in self.masked:
                total -= private_mask(secret, shape, m)
            else:
                sk1 = secret_key_from_bytes(secret)
                for v in sorted(self.graph[owner] & self.masked):
                    total += pairwise_mask(owner, sk1, v, self._public_keys[v][0], shape, m)
            total &= m - 1
        self._sum = None
        return total

    def _check_senders(
        self, stage: str, replies: Mapping[int, object], allowed: frozenset[int]
    ) -> None:
        unknown = sorted(set(replies) - allowed)
        if unknown:
            raise SecAggAbortedError(f"SecAgg+ {stage}: replies from nodes {unknown}, not asked")

    def _check_holders(
        self, stage: str, owners: frozenset[int], holders: frozenset[int], what: str
    ) -> None:
        """Each owner needs ``t`` neighbours (itself included) among ``holders``."""
        t = self.cohort.threshold
        for owner in sorted(owners):
            count = len(self.graph[owner] & holders)
            if count < t:
                raise SecAggAbortedError(
                    f"SecAgg+ {stage}: node {owner} has {count} neighbours {what}, threshold "
                    f"{t}: the round fails without revealing anything"
                )
