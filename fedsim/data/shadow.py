"""Shadow data: a federation's partition with some examples taken out and held-out ones added.

Membership inference's reference ("shadow") federations train the scenario's federation on
data where each audited example is in or out at random (Carlini et al., IEEE S&P 2022): a
training example the target federation saw is left out of its client's partition when its
inclusion bit is off; a held-out example the target never saw is added to a client's partition
when its bit is on. Every other training example stays where the scenario's partition put it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from fedsim.data.federated import FederatedData
from fedsim.data.partition import Partitions
from fedsim.errors import InvalidSettingError

__all__ = ["shadow_data"]


def shadow_data(
    data: FederatedData,
    train_targets: np.ndarray,
    train_in: np.ndarray,
    extra: tuple[torch.Tensor, torch.Tensor],
    extra_in: np.ndarray,
    extra_clients: np.ndarray,
) -> FederatedData:
    """``data`` with the training targets whose bit is off removed and the extra ones added.

    Parameters
    ----------
    data : FederatedData
        The scenario's data.
    train_targets : numpy.ndarray
        ``(k,)`` indices into the training pool (``data.dataset.x_train``).
    train_in : numpy.ndarray
        ``(k,)`` booleans: keep training target i in its client's partition.
    extra : tuple of torch.Tensor
        ``(x, y)`` of m held-out examples.
    extra_in : numpy.ndarray
        ``(m,)`` booleans: add extra example j.
    extra_clients : numpy.ndarray
        ``(m,)`` the client each extra example is added to.

    Returns
    -------
    FederatedData
        The same test set and clients; the training pool is the old one followed by the added
        extra examples, and each partition lists its indices in increasing order.

    Examples
    --------
    >>> from fedsim.data.datasets import Dataset
    >>> ds = Dataset("t", torch.zeros(4, 1, 1, 1), torch.arange(4), torch.zeros(2, 1, 1, 1),
    ...              torch.arange(2), 4)
    >>> data = FederatedData(ds, (np.array([0, 1]), np.array([2, 3])))
    >>> out = shadow_data(data, np.array([1, 2]), np.array([False, True]),
    ...                   (ds.x_test, ds.y_test), np.array([True, False]), np.array([1, 0]))
    >>> [p.tolist() for p in out.partitions], out.dataset.y_train.tolist()
    ([[0], [2, 3, 4]], [0, 1, 2, 3, 0])
    """
    train_targets = np.asarray(train_targets, dtype=np.int64)
    train_in = np.asarray(train_in, dtype=bool)
    extra_in = np.asarray(extra_in, dtype=bool)
    extra_clients = np.asarray(extra_clients, dtype=np.int64)
    x_extra, y_extra = extra
    m = len(y_extra)
    if train_in.shape != train_targets.shape or extra_in.shape != (m,):
        raise InvalidSettingError(
            f"shadow data: {train_targets.size} training targets with {train_in.size} bits, "
            f"{m} extra examples with {extra_in.size} bits; give one bit per example"
        )
    if extra_clients.shape != (m,) or (
        m and not 0 <= extra_clients.min() <= extra_clients.max() < len(data.partitions)
    ):
        raise InvalidSettingError(
            f"shadow data: extra_clients must give one of the {len(data.partitions)} client "
            f"ids for each of the {m} extra examples"
        )
    dropped = train_targets[~train_in]
    added = np.flatnonzero(extra_in)
    base = len(data.dataset.y_train)
    partitions = []
    for client, part in enumerate(data.partitions):
        kept = part[~np.isin(part, dropped)]
        mine = base + np.flatnonzero(extra_clients[added] == client)
        partitions.append(np.sort(np.concatenate([kept, mine]).astype(np.int64)))
    index = torch.from_numpy(added)
    dataset = dataclasses.replace(
        data.dataset,
        x_train=torch.cat([data.dataset.x_train, x_extra[index].to(data.dataset.x_train.dtype)]),
        y_train=torch.cat([data.dataset.y_train, y_extra[index].to(data.dataset.y_train.dtype)]),
        train_groups=None,
    )
    # The pool's first entries are unchanged, so clients' own test splits still index them.
    return FederatedData(dataset, Partitions.from_parts(partitions), local_tests=data.local_tests)
