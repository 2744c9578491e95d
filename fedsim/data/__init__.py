"""Datasets and partitioning: ``FederatedData`` gives each client its slice, cached per process."""

from __future__ import annotations

from fedsim.data.datasets import DATASETS, Dataset, load_dataset
from fedsim.data.federated import FederatedData, federated_data
from fedsim.data.partition import partition_dirichlet, partition_iid, partition_shards

__all__ = [
    "DATASETS",
    "Dataset",
    "FederatedData",
    "federated_data",
    "load_dataset",
    "partition_dirichlet",
    "partition_iid",
    "partition_shards",
]
