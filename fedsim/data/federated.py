"""A scenario's data as the federation sees it: one slice per client plus the test set."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from fedsim.data.datasets import Dataset, load_dataset
from fedsim.data.partition import (
    Partitions,
    partition_dirichlet,
    partition_iid,
    partition_natural,
    partition_shards,
)
from fedsim.data.text import TEXT_DATASETS
from fedsim.data.vision import natural_id_column
from fedsim.errors import InvalidSettingError
from fedsim.scenario import DataConfig

__all__ = ["FederatedData", "federated_data"]


@dataclass(frozen=True)
class FederatedData:
    """The dataset and the index partition of its training pool among clients.

    Attributes
    ----------
    partitions : Partitions
        Each client's indices into the training pool (any sequence of index arrays given is
        packed into one :class:`~fedsim.data.partition.Partitions`).
    extra : Mapping[int, tuple[Tensor, Tensor]]
        Examples added to some clients' training data beyond their partition (a privacy
        audit's canaries), by client id: images and labels appended after the partition's.
        They are in no partition and never in the test set.
    local_tests : Partitions or None
        Each client's own test split, taken out of its partition (personalized FL,
        :func:`fedsim.personalization.local_test_split`); ``None`` without one.
    """

    dataset: Dataset
    partitions: Partitions
    extra: Mapping[int, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, compare=False, repr=False
    )
    local_tests: Partitions | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.partitions, Partitions):
            object.__setattr__(self, "partitions", Partitions.from_parts(self.partitions))

    def client(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of client ``client_id``'s training data (partition, then extras).

        ``index_select``, not indexing with the index tensor: measured 5× faster (16 against
        81 µs for 64 digits-sized images).
        """
        idx = torch.from_numpy(self.partitions[client_id])
        x, y = self.dataset.x_train.index_select(0, idx), self.dataset.y_train.index_select(0, idx)
        if client_id in self.extra:
            x_extra, y_extra = self.extra[client_id]
            x, y = torch.cat([x, x_extra.to(x.dtype)]), torch.cat([y, y_extra.to(y.dtype)])
        return x, y

    def client_test(self, client_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of client ``client_id``'s own test split (see ``local_tests``).

        Raises
        ------
        ValueError
            The federation has no local test splits.
        """
        if self.local_tests is None:
            raise ValueError("this federation keeps no local test splits")
        idx = torch.from_numpy(self.local_tests[client_id])
        return self.dataset.x_train.index_select(0, idx), self.dataset.y_train.index_select(0, idx)

    def num_examples(self, client_id: int) -> int:
        """How many training examples :meth:`client` returns, without gathering them."""
        extra = self.extra.get(client_id)
        return len(self.partitions[client_id]) + (0 if extra is None else len(extra[1]))

    def sizes(self) -> np.ndarray:
        """Each client's number of training examples (its partition's, plus its extras)."""
        sizes = self.partitions.sizes().copy()
        for client_id, (_, y_extra) in self.extra.items():
            sizes[client_id] += len(y_extra)
        return sizes

    def with_extra(self, extra: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> FederatedData:
        """A copy whose clients also train on ``extra`` (the partitions are shared, not copied)."""
        return replace(self, extra=dict(extra))


def federated_data(config: DataConfig, seed: int) -> FederatedData:
    """Build (or fetch from this process' cache) the partitioned data of a scenario.

    Clients run in long-lived processes (Ray actors, or the driver for ``inline``); the cache
    means a partition is built once per process, not once per round.

    ``data.path`` is handed to the loader as ``path``. The ``natural`` partition needs a
    dataset with a natural client id (FEMNIST's ``writer_id``): client ``i`` is the ``i``-th
    writer of a seeded order, and unless ``data.params.writers`` says otherwise exactly
    ``data.num_clients`` writers are loaded.

    Raises
    ------
    InvalidSettingError
        The dataset cannot be loaded or split as configured.
    """
    key = json.dumps(config.model_dump(mode="json"), sort_keys=True)
    return _cached(key, seed)


@functools.lru_cache(maxsize=4)
def _cached(key: str, seed: int) -> FederatedData:
    config = DataConfig.model_validate_json(key)
    params = dict(config.params)
    if config.path is not None:
        params["path"] = config.path
    if config.partition == "natural":
        if config.dataset in TEXT_DATASETS:
            params.setdefault("roles", config.num_clients)
        elif natural_id_column(config.dataset) is None:
            raise InvalidSettingError(
                f"partition 'natural' needs a dataset with a natural client id (femnist: one "
                f"client per writer; shakespeare: one per speaking role); {config.dataset!r} "
                f"has none, use iid, dirichlet or shards"
            )
        else:
            params.setdefault("writers", config.num_clients)
    data = load_dataset(config.dataset, seed=seed, test_fraction=config.test_fraction, **params)
    labels = data.y_train.numpy()
    if config.partition == "iid":
        parts = partition_iid(len(labels), config.num_clients, seed)
    elif config.partition == "dirichlet":
        parts = partition_dirichlet(labels, config.num_clients, config.alpha, seed)
    elif config.partition == "shards":
        parts = partition_shards(labels, config.num_clients, config.shards_per_client, seed)
    else:
        if data.train_groups is None:
            raise InvalidSettingError(
                f"partition 'natural': the {config.dataset!r} data read has no "
                f"{natural_id_column(config.dataset) or 'role'!r} column to group clients by"
            )
        parts = partition_natural(data.train_groups, config.num_clients)
    return FederatedData(data, parts)
