"""Datasets and partitioning: ``FederatedData`` gives each client its slice, cached per process.

Registered datasets: ``digits`` and ``synthetic`` (built in), ``mnist``, ``fashion_mnist``,
``cifar10`` and ``femnist`` (Hugging Face, see :mod:`fedsim.data.vision`), ``shakespeare``
(text, see :mod:`fedsim.data.text`).
"""

from __future__ import annotations

from fedsim.data.datasets import DATASETS, Dataset, load_dataset
from fedsim.data.federated import FederatedData, federated_data
from fedsim.data.partition import (
    Partitions,
    partition_dirichlet,
    partition_iid,
    partition_natural,
    partition_shards,
)
from fedsim.data.text import TEXT_DATASETS
from fedsim.data.transforms import RandomCropFlip, normalize
from fedsim.data.vision import VISION_DATASETS, VisionSpec, available_offline

__all__ = [
    "DATASETS",
    "Dataset",
    "FederatedData",
    "Partitions",
    "RandomCropFlip",
    "TEXT_DATASETS",
    "VISION_DATASETS",
    "VisionSpec",
    "available_offline",
    "federated_data",
    "load_dataset",
    "normalize",
    "partition_dirichlet",
    "partition_iid",
    "partition_natural",
    "partition_shards",
]
