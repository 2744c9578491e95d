r"""Hub image datasets: ``mnist``, ``fashion_mnist``, ``cifar10``, ``femnist``.

Each is read through :mod:`fedsim.data.hub` (``data.path``, then the local cache, then the Hub)
under the Hub ids Flower's examples use, decoded once into ``uint8``, scaled to [0, 1] and
standardised per channel. Settings (``data.params``):

- ``normalize`` (default true): :math:`x' = (x - \mu_c)/\sigma_c` with the dataset's standard
  statistics; FEMNIST has no customary ones, so its :math:`\mu, \sigma` are measured on the
  training pool that was loaded.
- ``augment`` (default true for ``cifar10`` only): random crop with 4-pixel padding and a
  horizontal flip in local training (:class:`~fedsim.data.transforms.RandomCropFlip`).
- ``writers`` (``femnist`` only): keep this many writers, the first ones of a seeded
  permutation of the sorted writer ids (default: all; the ``natural`` partition defaults it to
  ``data.num_clients``).

Where the data has a ``test`` split (MNIST, Fashion-MNIST, CIFAR-10), it is the held-out test
set and ``data.test_fraction`` is unused. FEMNIST has only ``train``: each writer's samples are
split, a seeded ``test_fraction`` of them held out (LEAF's per-writer split), every writer
keeping at least one training sample.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedsim.data.datasets import DATASETS, Dataset, _stratified_split
from fedsim.data.hub import (
    column_values,
    decode_images,
    is_available,
    open_dataset,
    read_labels,
)
from fedsim.data.text import TEXT_DATASETS, text_available
from fedsim.data.transforms import RandomCropFlip, normalize
from fedsim.errors import InvalidSettingError

if TYPE_CHECKING:
    import datasets

__all__ = [
    "VISION_DATASETS",
    "VisionSpec",
    "available_offline",
    "load_vision",
    "natural_id_column",
]


@dataclass(frozen=True)
class VisionSpec:
    """Where a dataset lives on the Hub, its columns, its shape and its statistics."""

    name: str
    hub_id: str
    image_columns: tuple[str, ...]
    label_columns: tuple[str, ...]
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    augment: bool = False
    group_column: str | None = None


VISION_DATASETS: dict[str, VisionSpec] = {
    spec.name: spec
    for spec in (
        # LeCun et al. 1998; statistics as in PyTorch's MNIST example.
        VisionSpec(
            "mnist", "ylecun/mnist", ("image",), ("label",), (1, 28, 28), 10, (0.1307,), (0.3081,)
        ),
        # Xiao, Rasul, Vollgraf 2017.
        VisionSpec(
            "fashion_mnist",
            "zalando-datasets/fashion_mnist",
            ("image",),
            ("label",),
            (1, 28, 28),
            10,
            (0.2860,),
            (0.3530,),
        ),
        # Krizhevsky 2009; per-channel statistics of the 50,000 training images.
        VisionSpec(
            "cifar10",
            "uoft-cs/cifar10",
            ("img", "image"),
            ("label",),
            (3, 32, 32),
            10,
            (0.4914, 0.4822, 0.4465),
            (0.2470, 0.2435, 0.2616),
            augment=True,
        ),
        # Caldas et al., LEAF, 2018: 62 classes (digits, upper and lower case), 3,597 writers.
        VisionSpec(
            "femnist",
            "flwrlabs/femnist",
            ("image",),
            ("character", "label"),
            (1, 28, 28),
            62,
            None,
            None,
            group_column="writer_id",
        ),
    )
}


def natural_id_column(name: str) -> str | None:
    """The column that names a sample's natural client (``writer_id``), or ``None``."""
    spec = VISION_DATASETS.get(name)
    return spec.group_column if spec is not None else None


def available_offline(name: str, path: str | None = None) -> bool:
    """Whether dataset ``name`` can be loaded without network (built-ins always can)."""
    if name in TEXT_DATASETS:
        return text_available(path)
    spec = VISION_DATASETS.get(name)
    return spec is None or is_available(spec.hub_id, path)


def load_vision(
    spec: VisionSpec,
    *,
    seed: int,
    test_fraction: float,
    path: str | None = None,
    normalize: bool = True,
    augment: bool | None = None,
    writers: int | None = None,
) -> Dataset:
    """Load ``spec``'s dataset as a :class:`~fedsim.data.datasets.Dataset`.

    Parameters
    ----------
    spec : VisionSpec
        Which dataset.
    seed : int
        Seeds the writer choice and, without a ``test`` split, the train/test split.
    test_fraction : float
        Share of each writer's samples held out when there is no ``test`` split.
    path : str, optional
        A local copy (``data.path``).
    normalize : bool
        Standardise each channel.
    augment : bool, optional
        Random crop and flip in local training (default: the dataset's custom).
    writers : int, optional
        ``femnist``: how many writers to keep (seeded choice).

    Raises
    ------
    InvalidSettingError
        The data cannot be found or does not have the expected columns, shape or labels.
    """
    if writers is not None and (spec.group_column is None or writers < 1):
        raise InvalidSettingError(
            f"data.params.writers needs a dataset with writers (femnist) and writers ≥ 1; "
            f"got writers={writers} for {spec.name!r}"
        )
    splits = open_dataset(spec.name, spec.hub_id, path)
    if "train" not in splits:
        raise InvalidSettingError(
            f"dataset {spec.name!r} needs a 'train' split; found {sorted(splits)}"
        )
    train = splits["train"]
    groups = None
    if spec.group_column is not None and spec.group_column in train.column_names:
        train, groups = _select_writers(train, spec.group_column, writers, seed)
    elif writers is not None:
        raise InvalidSettingError(
            f"data.params.writers: the {spec.name!r} data read has no {spec.group_column!r} "
            f"column; found {train.column_names}"
        )
    x_train, y_train = _arrays(spec, train)
    if "test" in splits:
        x_test, y_test = _arrays(spec, splits["test"])
    else:
        strata = groups if groups is not None else y_train
        train_idx, test_idx = _stratified_split(strata, test_fraction, seed, keep_one=True)
        x_test, y_test = x_train[test_idx], y_train[test_idx]
        x_train, y_train = x_train[train_idx], y_train[train_idx]
        groups = None if groups is None else groups[train_idx]
    mean, std = spec.mean, spec.std
    if normalize and mean is None:
        mean, std = _channel_stats(x_train)
    if not normalize:
        mean = std = None
    x_train, x_test = _to_float(x_train, mean, std), _to_float(x_test, mean, std)
    use_augment = spec.augment if augment is None else augment
    crop = None
    if use_augment:
        fill = tuple(-m / s for m, s in zip(mean, std, strict=True)) if mean and std else (0.0,)
        crop = RandomCropFlip(padding=4, flip=True, fill=fill)
    return Dataset(
        spec.name,
        x_train,
        torch.from_numpy(y_train),
        x_test,
        torch.from_numpy(y_test),
        spec.num_classes,
        mean=mean,
        std=std,
        augment=crop,
        train_groups=groups,
    )


def _select_writers(
    split: datasets.Dataset, column: str, writers: int | None, seed: int
) -> tuple[datasets.Dataset, np.ndarray]:
    """Keep ``writers`` writers (seeded); return their rows and each row's writer index."""
    ids = column_values(split, column)
    names, inverse = np.unique(ids, return_inverse=True)
    if writers is not None and writers > len(names):
        raise InvalidSettingError(
            f"data.params.writers = {writers} but the data has only {len(names)} writers"
        )
    order = np.random.default_rng(seed).permutation(len(names))[: writers or len(names)]
    rank = np.full(len(names), -1, dtype=np.int64)
    rank[order] = np.arange(len(order))
    row_group = rank[inverse]
    rows = np.flatnonzero(row_group >= 0)
    if len(rows) < len(ids):
        split = split.select(rows)
    return split, row_group[rows]


def _arrays(spec: VisionSpec, split: datasets.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Decoded ``uint8`` images ``(N, C, H, W)`` and ``int64`` labels, checked against spec."""
    image_column = _column(spec, split, spec.image_columns, "image")
    label_column = _column(spec, split, spec.label_columns, "label")
    x = decode_images(split, image_column, "L" if spec.input_shape[0] == 1 else "RGB")
    y = read_labels(split, label_column)
    if x.shape[1:] != spec.input_shape:
        raise InvalidSettingError(
            f"dataset {spec.name!r} has images of shape (C, H, W) = {spec.input_shape}, "
            f"but the data read has {tuple(x.shape[1:])}; is data.path the right dataset?"
        )
    if y.min() < 0 or y.max() >= spec.num_classes:
        raise InvalidSettingError(
            f"dataset {spec.name!r} has labels 0..{spec.num_classes - 1}, but the data read "
            f"has labels from {y.min()} to {y.max()}"
        )
    return x, y


def _column(
    spec: VisionSpec, split: datasets.Dataset, candidates: tuple[str, ...], what: str
) -> str:
    for name in candidates:
        if name in split.column_names:
            return name
    raise InvalidSettingError(
        f"dataset {spec.name!r} reads its {what}s from a column named "
        f"{' or '.join(candidates)}; the data has columns {split.column_names}"
    )


def _channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of ``uint8`` images on the [0, 1] scale.

    Computed exactly from each channel's 256-bin histogram, without a float copy of ``x``.
    """
    values = np.arange(256, dtype=np.float64) / 255.0
    means, stds = [], []
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        mean = float(counts @ values / counts.sum())
        var = float(counts @ (values - mean) ** 2 / counts.sum())
        means.append(mean)
        stds.append(max(var**0.5, 1e-6))
    return tuple(means), tuple(stds)


def _to_float(
    x: np.ndarray, mean: tuple[float, ...] | None, std: tuple[float, ...] | None
) -> torch.Tensor:
    """``uint8`` → float32 in [0, 1], then standardised when ``mean``/``std`` are given."""
    scaled = torch.from_numpy(x).to(torch.float32).div_(255.0)
    if mean is None or std is None:
        return scaled
    return normalize(scaled, mean, std)


for _spec in VISION_DATASETS.values():
    DATASETS.register(_spec.name)(functools.partial(load_vision, _spec))
