"""Datasets as in-memory tensors: the embedded ``digits`` and a seeded ``synthetic`` task.

Every loader returns a :class:`Dataset` with images ``(N, C, H, W)`` float32 and int64 labels,
already split into a training pool (partitioned among clients) and a held-out test set the
server evaluates on. ``digits`` and ``synthetic`` are in [0, 1]; the real image datasets
(:mod:`fedsim.data.vision`) are standardised per channel and record their ``mean``/``std``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedsim.data.transforms import Augment
from fedsim.errors import InvalidSettingError
from fedsim.registry import Registry

__all__ = ["DATASETS", "Dataset", "load_dataset"]


@dataclass(frozen=True)
class Dataset:
    """A classification dataset split into a training pool and a held-out test set.

    Attributes
    ----------
    mean, std : tuple of float or None
        Per-channel statistics the images were standardised with (``None``: raw [0, 1]).
    augment : Augment or None
        Training-time augmentation for local training (``augment(x, generator)``), or none.
    train_groups : ndarray or None
        For datasets with a natural client id (FEMNIST's writers, Shakespeare's roles): the
        group index ``0..G-1`` of every training sample, in the seeded group order the
        ``natural`` partition assigns to clients.
    vocabulary : str or None
        For text (:mod:`fedsim.data.text`): the characters the ``uint8`` indices of ``x``
        and the classes ``y`` stand for; ``None`` for images.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    augment: Augment | None = field(default=None, compare=False)
    train_groups: np.ndarray | None = field(default=None, repr=False, compare=False)
    vocabulary: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """``(channels, height, width)`` of one image; ``(sequence length,)`` for text."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    @property
    def is_text(self) -> bool:
        """Whether samples are character windows (:attr:`vocabulary` set), not images."""
        return self.vocabulary is not None

    @property
    def data_range(self) -> tuple[float, float]:
        """``(lo, hi)``: the smallest box holding every valid input (a [0, 1] pixel, mapped)."""
        if self.mean is None or self.std is None:
            return (0.0, 1.0)
        lows = [(0.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        highs = [(1.0 - m) / s for m, s in zip(self.mean, self.std, strict=True)]
        return (min(lows), max(highs))


DatasetLoader = Callable[..., Dataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


def load_dataset(name: str, *, seed: int, test_fraction: float, **params: Any) -> Dataset:
    """Load registry dataset ``name``; the train/test split is drawn from ``seed``."""
    loader = DATASETS.get(name)
    try:
        return loader(seed=seed, test_fraction=test_fraction, **params)
    except TypeError as e:
        raise InvalidSettingError(f"dataset {name!r}: {e}") from e


def _stratified_split(
    y: np.ndarray, test_fraction: float, seed: int, keep_one: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded, per-class stratified train/test split.

    ``y`` may be any integer strata (classes, or writers); with ``keep_one`` every stratum
    keeps at least one training sample.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = int(round(test_fraction * len(idx)))
        if keep_one:
            n_test = min(n_test, len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _split(
    name: str, x: np.ndarray, y: np.ndarray, num_classes: int, test_fraction: float, seed: int
) -> Dataset:
    train, test = _stratified_split(y, test_fraction, seed)
    xt = torch.from_numpy(x.astype(np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    return Dataset(name, xt[train], yt[train], xt[test], yt[test], num_classes)


@DATASETS.register("digits")
def load_digits(*, seed: int, test_fraction: float) -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 grey 8×8 images, 10 classes.

    Pixel values 0–16 are scaled to [0, 1]. Ships with scikit-learn, so it works offline.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (bunch.data / 16.0).reshape(-1, 1, 8, 8)
    return _split("digits", x, bunch.target, 10, test_fraction, seed)


@DATASETS.register("synthetic")
def load_synthetic(
    *,
    seed: int,
    test_fraction: float,
    num_samples: int = 2000,
    num_classes: int = 10,
    image_size: int = 8,
    channels: int = 1,
    noise: float = 0.3,
) -> Dataset:
    """A seeded, learnable image classification task of any size.

    Each class has a random prototype image p_c ∈ [0, 1]^{C×H×W}; a sample of class c is
    clip(p_c + ε, 0, 1) with ε ~ N(0, noise²). Labels are balanced.
    """
    if (
        num_samples < 2 * num_classes
        or num_classes < 2
        or image_size < 1
        or channels < 1
        or noise < 0
    ):
        raise InvalidSettingError(
            "synthetic needs num_samples ≥ 2·num_classes, num_classes ≥ 2, image_size ≥ 1, "
            f"channels ≥ 1, noise ≥ 0; got num_samples={num_samples}, num_classes={num_classes}, "
            f"image_size={image_size}, channels={channels}, noise={noise}"
        )
    rng = np.random.default_rng(seed)
    shape = (channels, image_size, image_size)
    prototypes = rng.random((num_classes, *shape))
    y = rng.permutation(np.arange(num_samples) % num_classes)
    # Drawn in blocks of rows and written straight to the float32 train and test arrays: the
    # same numbers as one float64 draw cast and split afterwards (the Generator's normals do
    # not depend on how the draw is cut; train and test are sorted, so each block's rows are
    # one run of each), without the float64 and unsplit copies of a million-client pool.
    train, test = _stratified_split(y, test_fraction, seed)
    x_train = np.empty((len(train), *shape), dtype=np.float32)
    x_test = np.empty((len(test), *shape), dtype=np.float32)
    rows = max(1, _SYNTHETIC_BLOCK // math.prod(shape))
    for start in range(0, num_samples, rows):
        stop = min(start + rows, num_samples)
        noisy = prototypes[y[start:stop]] + rng.normal(0.0, noise, (stop - start, *shape))
        np.clip(noisy, 0.0, 1.0, out=noisy)
        for index, out in ((train, x_train), (test, x_test)):
            lo, hi = np.searchsorted(index, (start, stop))
            out[lo:hi] = noisy[index[lo:hi] - start]
    y = y.astype(np.int64)
    return Dataset(
        "synthetic",
        torch.from_numpy(x_train),
        torch.from_numpy(y[train]),
        torch.from_numpy(x_test),
        torch.from_numpy(y[test]),
        num_classes,
    )


_SYNTHETIC_BLOCK = 1 << 22
"""Pixels drawn per block by :func:`load_synthetic` (32 MiB of float64)."""
