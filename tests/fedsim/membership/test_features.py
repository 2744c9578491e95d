"""Named image features of property inference: statistics, median threshold, shadow shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedsim.errors import UnknownNameError
from fedsim.membership.features import FEATURES, ImageFeature
from fedsim.membership.property import holds_share, shadow_shares


def test_statistics_agree_with_numpy_and_half_the_pool_has_each_feature() -> None:
    x = torch.rand(101, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    flat = x.reshape(101, -1).numpy().astype(np.float64)
    np.testing.assert_allclose(FEATURES.get("bright")(x).numpy(), flat.mean(axis=1))
    np.testing.assert_allclose(FEATURES.get("contrast")(x).numpy(), flat.std(axis=1))
    for name in ("bright", "contrast"):
        has = ImageFeature(name, x).has(x)
        assert int(has.sum()) == 50  # strictly above the median of 101 distinct values


def test_unknown_feature_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="known: bright, contrast"):
        ImageFeature("hue", torch.zeros(2, 1, 2, 2))


def test_nan_images_never_have_a_feature() -> None:
    feature = ImageFeature("bright", torch.rand(10, 1, 2, 2))
    assert feature.has(torch.full((1, 1, 2, 2), float("nan"))).tolist() == [False]


def test_shadow_shares_straddle_min_fraction_and_holds_share_agrees() -> None:
    shares, has = shadow_shares(50, 0.6, np.random.default_rng(1))
    assert (shares[has] >= 0.6).all() and (shares[~has] < 0.6).all() and has.sum() == 50
    assert holds_share(torch.tensor([True] * 3 + [False] * 2), 0.6)
    assert not holds_share(torch.tensor([], dtype=torch.bool), 0.1)
