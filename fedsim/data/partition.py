"""Split a training pool among clients: ``iid``, ``dirichlet``, ``shards`` and ``natural``.

Each partitioner returns one index array per client; together they cover every training
sample exactly once (``natural`` with fewer clients than writers leaves the other writers'
samples unused). All draws come from ``seed``.
"""

from __future__ import annotations

import numpy as np

from fedsim.errors import InvalidSettingError

__all__ = ["partition_dirichlet", "partition_iid", "partition_natural", "partition_shards"]


def partition_iid(num_samples: int, num_clients: int, seed: int) -> list[np.ndarray]:
    """A seeded random permutation cut into ``num_clients`` near-equal parts."""
    _check(num_samples, num_clients)
    order = np.random.default_rng(seed).permutation(num_samples)
    return [np.sort(part) for part in np.array_split(order, num_clients)]


def partition_dirichlet(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_size: int = 2
) -> list[np.ndarray]:
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
        return [
            np.sort(np.asarray(partitioner.load_partition(i)["idx"])) for i in range(num_clients)
        ]
    except ValueError as e:
        raise InvalidSettingError(
            f"dirichlet partition of {len(labels)} samples into {num_clients} clients with "
            f"alpha={alpha} failed: {e}"
        ) from e


def partition_shards(
    labels: np.ndarray, num_clients: int, shards_per_client: int, seed: int
) -> list[np.ndarray]:
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
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in assignment]


def partition_natural(groups: np.ndarray, num_clients: int) -> list[np.ndarray]:
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
    order = np.argsort(groups, kind="stable")
    bounds = np.searchsorted(groups[order], np.arange(num_clients + 1))
    return [np.sort(order[bounds[i] : bounds[i + 1]]) for i in range(num_clients)]


def _check(num_samples: int, parts: int) -> None:
    if parts < 1 or num_samples < parts:
        raise InvalidSettingError(
            f"cannot split {num_samples} training samples into {parts} non-empty parts"
        )
