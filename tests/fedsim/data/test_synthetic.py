"""The synthetic dataset, drawn in blocks, is the one-shot draw of its docstring's formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fedsim.data.datasets as datasets
from fedsim.data.datasets import _stratified_split, load_synthetic


def reference(seed: int, test_fraction: float, **params: int | float) -> tuple[torch.Tensor, ...]:
    """x = clip(p_y + ε, 0, 1) in one float64 draw, cast to float32, then split."""
    n, classes = params["num_samples"], params["num_classes"]
    shape = (params["channels"], params["image_size"], params["image_size"])
    rng = np.random.default_rng(seed)
    prototypes = rng.random((classes, *shape))
    y = rng.permutation(np.arange(n) % classes)
    x = np.clip(prototypes[y] + rng.normal(0.0, params["noise"], (n, *shape)), 0.0, 1.0)
    train, test = _stratified_split(y, test_fraction, seed)
    x32, y64 = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    return x32[train], y64[train], x32[test], y64[test]


@pytest.mark.parametrize("block", [1 << 22, 1000, 1])
def test_blocked_draw_equals_the_one_shot_draw(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    params = {"num_samples": 1001, "num_classes": 7, "image_size": 5, "channels": 2, "noise": 0.4}
    monkeypatch.setattr(datasets, "_SYNTHETIC_BLOCK", block)

    data = load_synthetic(seed=3, test_fraction=0.3, **params)

    got = (data.x_train, data.y_train, data.x_test, data.y_test)
    for want, have in zip(reference(3, 0.3, **params), got, strict=True):
        assert have.dtype == want.dtype and torch.equal(have, want)
    assert data.input_shape == (2, 5, 5) and data.num_classes == 7
