"""Feature squeezing on hand-checkable images, against SciPy's median filter, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from fedsim.errors import InvalidSettingError, UnknownNameError
from fedsim.purification import PURIFIERS, BitDepth, Identity, MedianFilter, build_purifier


def test_the_registry_holds_the_four_purifiers() -> None:
    assert PURIFIERS.names() == ["bit_depth", "diffusion", "median_filter", "none"]
    assert isinstance(build_purifier("none"), Identity)
    assert build_purifier("median_filter", size=3).size == 3
    with pytest.raises(InvalidSettingError, match="bit_depth has no parameter 'size'"):
        build_purifier("bit_depth", size=3)
    with pytest.raises(UnknownNameError, match="known: bit_depth, diffusion, median_filter, none"):
        build_purifier("jpeg")


def test_bit_depth_one_splits_at_one_half() -> None:
    x = torch.tensor([0.0, 0.2, 0.49, 0.51, 0.8, 1.0]).view(1, 1, 2, 3)
    assert BitDepth(1)(x).flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_bit_depth_has_two_to_the_bits_levels_and_is_idempotent(bits) -> None:
    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(bits))
    once = BitDepth(bits)(x)
    assert torch.equal(BitDepth(bits)(once), once)
    levels = (once * (2**bits - 1)).round()
    assert torch.allclose(once * (2**bits - 1), levels, atol=1e-4)
    assert float((once - x).abs().max()) <= 0.5 / (2**bits - 1) + 1e-6
    assert len(levels.unique()) <= 2**bits


def test_eight_bits_leave_8_bit_images_unchanged() -> None:
    x = torch.randint(0, 256, (2, 1, 5, 5), generator=torch.Generator().manual_seed(0)) / 255.0
    assert torch.allclose(BitDepth(8)(x), x, atol=1e-7)


def test_a_3x3_median_removes_one_salt_pixel() -> None:
    x = torch.full((1, 1, 3, 3), 0.3)
    x[0, 0, 1, 1] = 1.0
    assert torch.equal(MedianFilter(3)(x), torch.full((1, 1, 3, 3), 0.3))


def test_the_median_works_per_channel_and_keeps_the_shape() -> None:
    x = torch.stack([torch.zeros(4, 5), torch.ones(4, 5)]).unsqueeze(0)
    out = MedianFilter(3)(x)
    assert out.shape == x.shape
    assert torch.equal(out, x)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_the_median_equals_scipy_reflect(size) -> None:
    x = torch.rand(2, 3, 7, 6, generator=torch.Generator().manual_seed(size))
    ref = ndimage.median_filter(x.numpy(), size=(1, 1, size, size), mode="reflect")
    np.testing.assert_array_equal(MedianFilter(size)(x).numpy(), ref)


def test_identity_and_size_one_change_nothing() -> None:
    x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert Identity()(x) is x
    assert torch.equal(MedianFilter(1)(x), x)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: BitDepth(0), "bit_depth needs an integer bits >= 1, got 0"),
        (lambda: BitDepth(17), "bit_depth needs bits <= 16, got 17"),
        (lambda: BitDepth(2.0), "integer bits"),
        (lambda: MedianFilter(True), "median_filter needs an integer size >= 1, got True"),
    ],
)
def test_settings_are_validated(make, match) -> None:
    with pytest.raises(InvalidSettingError, match=match):
        make()


def test_shapes_are_checked() -> None:
    with pytest.raises(InvalidSettingError, match=r"shape \(B, C, H, W\), got \(3, 3\)"):
        MedianFilter(3)(torch.zeros(3, 3))
    with pytest.raises(InvalidSettingError, match="smaller window"):
        MedianFilter(7)(torch.zeros(1, 1, 2, 2))
