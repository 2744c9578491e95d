"""Split a training pool among clients: ``iid``, ``dirichlet``, ``shards`` and ``natural``.

Each partitioner returns :class:`Partitions`, one sorted index array per client; together
they cover every training sample exactly once (``natural`` with fewer clients than writers
leaves the other writers' samples unused). All draws come from ``seed``.

:class:`Partitions` stores them compactly (one index array and one offset array, the CSR
layout of a ragged array), so a cross-device population of a million clients costs two
arrays, not a million small ones (each ~100 bytes of object overhead).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

import numpy as np

from fedsim.errors import InvalidSettingError

__all__ = [
    "Partitions",
    "partition_dirichlet",
    "partition_iid",
    "partition_natural",
    "partition_shards",
]


class Partitions(Sequence[np.ndarray]):
    """Every client's sample indices in two arrays: ``parts[i] = indices[offsets[i]:offsets[i+1]]``.

    A sequence of int64 index arrays, one per client. They are views into ``indices``, as
    the partitions of a cached federation are shared: do not write into them.

    Parameters
    ----------
    indices : ndarray
        All clients' indices, client 0's first.
    offsets : ndarray
        ``(num_clients + 1,)`` non-decreasing, from 0 to ``len(indices)``.

    Raises
    ------
    ValueError
        ``offsets`` do not delimit ``indices`` as above.

    Examples
    --------
    >>> parts = Partitions(np.array([4, 7, 1, 2, 5]), np.array([0, 2, 2, 5]))
    >>> len(parts), [p.tolist() for p in parts], parts.sizes().tolist()
    (3, [[4, 7], [], [1, 2, 5]], [2, 0, 3])
    """

    __slots__ = ("indices", "offsets")

    def __init__(self, indices: np.ndarray, offsets: np.ndarray) -> None:
        indices = np.array(indices, dtype=np.int64).reshape(-1)
        offsets = np.array(offsets, dtype=np.int64).reshape(-1)
        if (
            len(offsets) < 1
            or offsets[0] != 0
            or offsets[-1] != len(indices)
            or (np.diff(offsets) < 0).any()
        ):
            raise ValueError(
                f"partition offsets must rise from 0 to len(indices) = {len(indices)}, got "
                f"{offsets[:5].tolist()}{'...' if len(offsets) > 5 else ''} "
                f"(length {len(offsets)})"
            )
        self.indices = indices
        self.offsets = offsets

    @classmethod
    def from_parts(cls, parts: Iterable[np.ndarray]) -> Partitions:
        """Pack one index array per client (kept in the given order)."""
        arrays = [np.asarray(p, dtype=np.int64).reshape(-1) for p in parts]
        sizes = np.array([len(a) for a in arrays], dtype=np.int64)
        indices = np.concatenate(arrays) if arrays else np.empty(0, np.int64)
        return cls(indices, np.concatenate([[0], np.cumsum(sizes)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, client: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, client: slice) -> list[np.ndarray]: ...

    def __getitem__(self, client: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(client, slice):
            return [self[i] for i in range(len(self))[client]]
        n = len(self)
        i = int(client)
        if not -n <= i < n:
            raise IndexError(f"client {client} outside 0..{n - 1}")
        i %= n
        return self.indices[self.offsets[i] : self.offsets[i + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for start, stop in zip(self.offsets[:-1].tolist(), self.offsets[1:].tolist(), strict=True):
            yield self.indices[start:stop]

    def __repr__(self) -> str:
        return f"Partitions({len(self)} clients, {len(self.indices)} indices)"

    def sizes(self) -> np.ndarray:
        """Each client's number of indices."""
        return np.diff(self.offsets)


def partition_iid(num_samples: int, num_clients: int, seed: int) -> Partitions:
    """A seeded random permutation cut into ``num_clients`` near-equal parts, each sorted.

    The parts of ``np.array_split(permutation, num_clients)``: the first
    ``num_samples mod num_clients`` get ⌊num_samples / num_clients⌋ + 1 samples, the rest
    one fewer. Sorting within parts is one sort of the keys ``owner · num_samples + index``,
    without a Python object per client.

    Examples
    --------
    >>> [p.tolist() for p in partition_iid(7, 3, seed=0)]
    [[2, 3, 4], [5, 6], [0, 1]]
    """
    _check(num_samples, num_clients)
    order = np.random.default_rng(seed).permutation(num_samples).astype(np.int64)
    base, extra = divmod(num_samples, num_clients)
    sizes = np.full(num_clients, base, dtype=np.int64)
    sizes[:extra] += 1
    owner = np.repeat(np.arange(num_clients, dtype=np.int64), sizes)
    keys = np.sort(owner * num_samples + order)
    return Partitions(keys % num_samples, np.concatenate([[0], np.cumsum(sizes)]))


def partition_dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_size: int = 2
) -> Partitions:
    """Label-skewed split: client class proportions drawn from Dir(alpha).

    Uses flwr-datasets' ``DirichletPartitioner`` (Hsu et al., 2019; redraws until every client
    has at least ``min_size`` samples). Smaller ``alpha`` gives more skew.
    """
    _check(len(labels), num_clients)
    import datasets
    from flwr_datasets.partitioner import DirichletPartitioner

    table = datasets.Dataset.from_dict({"label": labels, "idx": np.arange(len(labels))})
    min_size = min(min_size, len(labels) // num_clients)
    partitioner = DirichletPartitioner(
        num_partitions=num_clients,
        partition_by="label",
        alpha=alpha,
        min_partition_size=min_size,
        self_balancing=False,
        shuffle=True,
        seed=seed,
    )
    partitioner.dataset = table
    try:
        return Partitions.from_parts(
            np.sort(np.asarray(partitioner.load_partition(i)["idx"])) for i in range(num_clients)
        )
    except ValueError as e:
        raise InvalidSettingError(
            f"dirichlet partition of {len(labels)} samples into {num_clients} clients with "
            f"alpha={alpha} failed: {e}"
        ) from e


def partition_shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, seed: int
) -> Partitions:
    """Pathological non-IID split (McMahan et al., AISTATS 2017).

    Samples are sorted by label, cut into ``num_clients × shards_per_client`` contiguous shards
    (sizes differ by at most one, so no sample is dropped), and each client receives
    ``shards_per_client`` randomly chosen shards — typically that many classes.
    """
    _check(len(labels), num_clients * shards_per_client)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.permutation(len(labels)), labels))  # by label, random within label
    shards = np.array_split(order, num_clients * shards_per_client)
    assignment = rng.permutation(len(shards)).reshape(num_clients, shards_per_client)
    return Partitions.from_parts(
        np.sort(np.concatenate([shards[s] for s in row])) for row in assignment
    )


def partition_natural(groups: np.ndarray, num_clients: int) -> Partitions:
    """One client per natural group (a FEMNIST writer): client ``i`` gets group ``i``.

    The same split as flwr-datasets' ``NaturalIdPartitioner``, but with the group order fixed
    by the caller (a seeded permutation of the writer ids, see :mod:`fedsim.data.vision`).

    Parameters
    ----------
    groups : ndarray
        Group index ``0..G-1`` of every training sample.
    num_clients : int
        Clients, at most ``G``; groups ``num_clients..G-1`` are left out.

    Examples
    --------
    >>> [p.tolist() for p in partition_natural(np.array([1, 0, 1, 2]), 2)]
    [[1], [0, 2]]
    """
    groups = np.asarray(groups)
    num_groups = int(groups.max()) + 1 if len(groups) else 0
    if num_clients < 1 or num_clients > num_groups:
        raise InvalidSettingError(
            f"the natural partition gives one client per writer: data.num_clients = "
            f"{num_clients} needs 1 ≤ num_clients ≤ {num_groups}, the writers in the data"
        )
    order = np.argsort(groups, kind="stable")  # stable: indices ascend within each group
    bounds = np.searchsorted(groups[order], np.arange(num_clients + 1))
    return Partitions(order[: bounds[-1]], bounds)


def _check(num_samples: int, parts: int) -> None:
    if parts < 1 or num_samples < parts:
        raise InvalidSettingError(
            f"cannot split {num_samples} training samples into {parts} non-empty parts"
        )
