"""The uniform-noise baseline: in the ball and in [0, 1], seeded, blind to model and labels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion import UniformNoise, build_attack


class Untouchable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("noise must not query the model")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_noise_stays_in_the_ball_and_in_pixel_range(norm: str) -> None:
    x = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    x[:8] = 0.0
    x[8:16] = 1.0
    x_adv = UniformNoise(eps=0.3, norm=norm)(
        Untouchable(), x, torch.zeros(64), torch.Generator().manual_seed(1)
    )
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert bool((size <= 0.3 + 1e-6).all())
    assert 0.0 <= float(x_adv.min()) and float(x_adv.max()) <= 1.0
    assert float(size.max()) > 0.1  # it does perturb


def test_same_generator_same_noise_and_eps_zero_is_the_identity() -> None:
    x = torch.rand(4, 1, 4, 4)
    a, b = (
        UniformNoise(0.1)(Untouchable(), x, torch.zeros(4), torch.Generator().manual_seed(3))
        for _ in range(2)
    )
    assert torch.equal(a, b)
    assert torch.equal(UniformNoise(0.0)(Untouchable(), x, torch.zeros(4), torch.Generator()), x)


def test_registered_and_validated() -> None:
    assert build_attack("noise", eps=0.2).label == "noise-linf-0.2"
    with pytest.raises(InvalidSettingError, match="eps"):
        UniformNoise(eps=-1)
