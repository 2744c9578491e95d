"""A whole SecAgg+ round in memory: :func:`secure_sum` of n float vectors, with its costs.

Each client quantizes its vector (:func:`~fedsim.secagg.quantize.quantize`, its own seeded
generator) and runs :class:`~fedsim.secagg.client.SecAggClient`'s stages against one
:class:`~fedsim.secagg.server.SecAggServer`; chosen clients drop at a chosen point. The server
decodes the unmasked sum of the survivors' quantized vectors
(:func:`~fedsim.secagg.quantize.decode_sum`), which equals the sum of their clipped vectors
within ``n · 2c/Q`` per coordinate. A ServerApp drives the same stage methods, one message
round each.

Costs are counted per stage as the payload a Flower message would carry: keys, ciphertexts
and shares at their byte length, a node id as 8 bytes, a vector as 8 bytes (int64) per
coordinate; configuration messages of a few numbers count as messages of 0 bytes. Seconds
are the stage's compute, clients' and server's together, run one after the other.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from fedsim.errors import InvalidSettingError
from fedsim.secagg.client import SecAggClient
from fedsim.secagg.quantize import decode_sum, quantize
from fedsim.secagg.server import SecAggServer
from fedsim.secagg.settings import Cohort, SecAggSettings

__all__ = ["STAGES", "SecureSum", "StageCost", "secure_sum"]

STAGES = ("setup", "share_keys", "masked_vector", "unmask")
"""The four stages, in order (Flower's ``Stage`` values, ``collect_masked_vectors`` renamed)."""

ID_BYTES = 8
T = TypeVar("T")


@dataclass(frozen=True)
class StageCost:
    """Messages, payload bytes and seconds of one stage (down: server → clients)."""

    messages_down: int
    messages_up: int
    bytes_down: int
    bytes_up: int
    seconds: float


@dataclass(frozen=True)
class SecureSum:
    """What :func:`secure_sum` returns.

    Attributes
    ----------
    total : numpy.ndarray
        float64 sum of the survivors' clipped (weighted) vectors, as decoded by the server.
    survivors : tuple of int
        Indices of the vectors in the sum (their masked vectors arrived).
    cohort : Cohort
        The resolved ``n``, ``k`` and ``t``.
    stages : dict[str, StageCost]
        Cost per stage, by name (:data:`STAGES`).
    """

    total: np.ndarray
    survivors: tuple[int, ...]
    cohort: Cohort
    stages: dict[str, StageCost]


def secure_sum(
    vectors: Sequence[Any],
    settings: SecAggSettings,
    seed: int,
    *,
    weights: Sequence[float] | None = None,
    drop_before_sharing: Collection[int] = (),
    drop_before_masking: Collection[int] = (),
    drop_after_masking: Collection[int] = (),
) -> SecureSum:
    r"""Sum ``vectors`` through a full in-memory SecAgg+ round.

    .. math:: \hat S = \mathrm{decode}\Big(\sum_{i \in A} q_i \bmod m\Big)
              \approx \sum_{i \in A} \mathrm{clip}(w_i x_i, -c, c)

    with ``A`` the clients whose masked vectors arrived, ``q_i`` their quantized vectors and
    ``|Ŝ - Σ clip| < |A| · 2c/Q`` per coordinate.

    Parameters
    ----------
    vectors : sequence of array-like
        One float vector per client, all of one shape.
    settings : SecAggSettings
        The protocol's settings.
    seed : int
        Seeds the node ids, the neighbour graph and each client's rounding.
    weights : sequence of float, optional
        Public factor per client, applied before clipping (default: 1 each).
    drop_before_sharing : collection of int
        Clients (indices) that send their keys, then drop: they are out of the round.
    drop_before_masking : collection of int
        Clients that share their keys, then drop: the server removes their pairwise masks
        from the others' vectors through their ``sk1`` shares.
    drop_after_masking : collection of int
        Clients whose masked vectors arrive but which drop before unmasking: their vectors
        are in the sum, their private masks removed through their seeds' shares.

    Returns
    -------
    SecureSum
        The decoded sum, the survivors and the costs per stage.

    Raises
    ------
    InvalidSettingError
        Vectors of different shapes, a bad index, or settings that do not fit the cohort.
    SecAggAbortedError
        A node whose secret is needed has fewer than ``t`` shares left.

    Examples
    --------
    >>> s = SecAggSettings(clipping_range=1.0)
    >>> out = secure_sum([[0.5, -0.25], [0.25, 0.5], [1.0, 2.0]], s, seed=0)
    >>> out.total.round(4).tolist(), out.survivors  # 2.0 is clipped to 1.0
    ([1.75, 1.25], (0, 1, 2))
    >>> out.stages["masked_vector"].bytes_up  # 3 clients x 2 coordinates x 8 bytes
    48
    """
    n = len(vectors)
    arrays = [np.asarray(v, dtype=np.float64) for v in vectors]
    if len({a.shape for a in arrays}) > 1:
        raise InvalidSettingError("secure aggregation: the vectors must share one shape")
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    drops = (set(drop_before_sharing), set(drop_before_masking), set(drop_after_masking))
    if len(weights) != n or any(not 0 <= i < n for d in drops for i in d):
        raise InvalidSettingError(
            f"secure aggregation: weights and drop indices must fit {n} vectors"
        )
    cohort = settings.for_cohort(n)
    ids_rng, graph_rng, *client_rngs = [
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n + 2)
    ]
    ids = [int(i) + 1 for i in ids_rng.choice(2**40, size=n, replace=False)]
    index = {nid: i for i, nid in enumerate(ids)}
    costs: dict[str, StageCost] = {}
    server = SecAggServer(ids, settings, cohort, graph_rng)

    started = time.perf_counter()
    clients = {nid: SecAggClient(nid, settings, cohort) for nid in ids}  # makes the key pairs
    keys = {nid: c.setup() for nid, c in clients.items()}
    server.receive_public_keys(keys)
    costs["setup"] = _cost(n, n, 0, sum(len(a) + len(b) for a, b in keys.values()), started)

    started = time.perf_counter()
    sent = {nid: server.public_keys_for(nid) for nid in server.keyed}
    shared = _alive(sent, index, drops[0])
    replies = {nid: clients[nid].share_keys(sent[nid]) for nid in shared}
    server.receive_ciphertexts(replies)
    costs["share_keys"] = _cost(
        len(sent),
        len(replies),
        sum(ID_BYTES + len(a) + len(b) for keys in sent.values() for a, b in keys.values()),
        sum(ID_BYTES + len(c) for r in replies.values() for c in r.values()),
        started,
    )

    started = time.perf_counter()
    forwarded = {nid: server.ciphertexts_for(nid) for nid in server.shared}
    masking = _alive(forwarded, index, drops[1])
    masked = {}
    for nid in masking:
        i = index[nid]
        quantized = quantize(arrays[i], settings, client_rngs[i], weight=weights[i])
        masked[nid] = clients[nid].masked_vector(forwarded[nid], quantized)
    server.receive_masked_vectors(masked)
    costs["masked_vector"] = _cost(
        len(forwarded),
        len(masked),
        sum(ID_BYTES + len(c) for f in forwarded.values() for c in f.values()),
        sum(8 * v.size for v in masked.values()),
        started,
    )

    started = time.perf_counter()
    requests = {nid: server.unmask_request(nid) for nid in server.masked}
    answering = _alive(requests, index, drops[2])
    shares = {nid: clients[nid].unmask(*requests[nid]) for nid in answering}
    quantized_sum = server.unmask(shares)
    survivors = tuple(sorted(index[nid] for nid in server.masked))
    total = decode_sum(quantized_sum, len(survivors), settings)
    costs["unmask"] = _cost(
        len(requests),
        len(shares),
        sum(ID_BYTES * (len(a) + len(d)) for a, d in requests.values()),
        sum(ID_BYTES + len(s) for r in shares.values() for s in r.values()),
        started,
    )
    return SecureSum(total=total, survivors=survivors, cohort=cohort, stages=costs)


def _alive(asked: dict[int, T], index: dict[int, int], dropped: set[int]) -> list[int]:
    """The asked nodes that answer: all but the dropped indices, in id order."""
    return sorted(nid for nid in asked if index[nid] not in dropped)


def _cost(down: int, up: int, bytes_down: int, bytes_up: int, started: float) -> StageCost:
    return StageCost(down, up, bytes_down, bytes_up, time.perf_counter() - started)
