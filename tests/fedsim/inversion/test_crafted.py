"""Crafted-model attacks of a malicious server: imprint (Fowl et al.) and trap weights.

The imprint checks are exact where the math is: an image alone in its brightness bin comes
back from the gradient of the *sum* of the losses (the ratio of row differences), and over
Monte-Carlo batches drawn from the distribution the bins were cut for, the share of images
alone in their bin is (1 − 1/k)^(n−1).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.inversion import build_inversion
from fedsim.inversion.crafted import best_psnr, read_rows, recovered_share
from fedsim.inversion.imprint import ImprintAttack, bin_of, expected_recovered
from fedsim.inversion.trap_weights import TrapWeightsAttack

D = 16


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(D, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4)
    )


def gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    loss = nn.functional.cross_entropy(model(x), y)
    return list(torch.autograd.grad(loss, list(model.parameters())))


def alone(bins: torch.Tensor) -> torch.Tensor:
    """Which entries of ``bins`` no other entry shares."""
    return (bins.unsqueeze(0) == bins.unsqueeze(1)).sum(dim=1) == 1


def test_every_image_alone_in_its_bin_comes_back_exactly() -> None:
    gen = torch.Generator().manual_seed(1)
    attack = ImprintAttack(bins=8)
    public = torch.rand(4000, D, generator=gen)
    model = mlp()
    attack.craft(model, public)
    x = torch.rand(6, D, generator=gen)
    bins = bin_of(x, attack.thresholds(public))
    out = attack(model, gradient(model, x, torch.arange(6) % 4), input_shape=(1, 4, 4))
    best = best_psnr(x, out.x, (0.0, 1.0))
    assert bool(alone(bins).any()) and bool((~alone(bins)).any())  # both cases occur here
    assert bool((best[alone(bins)] > 60).all())  # float32 exact
    assert len(out.x) == len(set(bins.tolist()))  # one candidate per occupied bin


def test_alone_share_is_one_minus_one_over_k_to_the_n_minus_one() -> None:
    # Monte-Carlo: 300 batches of n = 12 from U(0,1)^16, k = 8 bins cut on 20 000 public
    # draws. E[share alone] = (7/8)^11 = 0.2301; the mean of 300 batches has a standard
    # error of about 0.007, so 0.025 is over three of them. Every alone image is recovered,
    # and a shared bin sometimes is too (one image's δ dominates): recovered ≥ alone.
    gen = torch.Generator().manual_seed(0)
    attack = ImprintAttack(bins=8)
    public = torch.rand(20_000, D, generator=gen)
    thresholds = attack.thresholds(public)
    model = mlp()
    attack.craft(model, public)
    shares_alone, shares_recovered = [], []
    for _ in range(300):
        x = torch.rand(12, D, generator=gen)
        y = torch.randint(0, 4, (12,), generator=gen)
        out = attack(model, gradient(model, x, y), input_shape=(1, 4, 4))
        best = best_psnr(x, out.x, (0.0, 1.0))
        lonely = alone(bin_of(x, thresholds))
        assert bool((best[lonely] >= 30).all())
        shares_alone.append(float(lonely.double().mean()))
        shares_recovered.append(recovered_share(x, out.x, (0.0, 1.0)))
    mean_alone = sum(shares_alone) / len(shares_alone)
    assert abs(mean_alone - expected_recovered(8, 12)) < 0.025
    assert sum(shares_recovered) >= sum(shares_alone)


def test_imprint_reads_a_weighted_mean_of_updates_as_well_as_a_gradient() -> None:
    # FedAvg's mean of two one-step updates Δ_i = -η ∇_i, weighted by n_i: a positive
    # combination of gradients, so the ratios are unchanged.
    gen = torch.Generator().manual_seed(2)
    attack = ImprintAttack(bins=16)
    public = torch.rand(4000, D, generator=gen)
    model = mlp()
    attack.craft(model, public)
    x = torch.rand(5, D, generator=gen)
    g1 = gradient(model, x[:2], torch.tensor([0, 1]))
    g2 = gradient(model, x[2:], torch.tensor([2, 3, 0]))
    mean = [-0.1 * (2 * a + 3 * b) / 5 for a, b in zip(g1, g2, strict=True)]
    direct = attack(model, gradient(model, x, torch.tensor([0, 1, 2, 3, 0])), input_shape=(1, 4, 4))
    summed = attack(model, mean, input_shape=(1, 4, 4))
    lonely = alone(bin_of(x, attack.thresholds(public)))
    assert bool((best_psnr(x, summed.x, (0.0, 1.0))[lonely] > 60).all())
    assert len(summed.x) == len(direct.x)


def test_trap_weights_give_back_each_image_that_fires_a_row_alone() -> None:
    gen = torch.Generator().manual_seed(3)
    attack = TrapWeightsAttack(scale=0.7, seed=0)
    model = mlp()
    attack.craft(model, torch.rand(10, D, generator=gen))
    first = model[1]
    x = torch.rand(8, D, generator=gen)
    fired = (x @ first.weight.detach().T + first.bias.detach()) > 0  # (images, rows)
    single = fired.sum(dim=0) == 1
    expected = x[fired[:, single].T.double().argmax(dim=1)]  # the image of each such row
    out = attack(model, gradient(model, x, torch.arange(8) % 4), input_shape=(1, 4, 4))
    assert int(single.sum()) > 0
    assert bool((best_psnr(expected, out.x, (0.0, 1.0)) > 60).all())
    positive = first.weight.detach() > 0
    assert bool(first.weight.detach()[positive].sum() < -first.weight.detach()[~positive].sum())


def test_read_rows_skips_rows_nothing_fired() -> None:
    out = read_rows(torch.tensor([[2.0, 4.0], [0.0, 0.0]]), torch.tensor([2.0, 0.0]))
    assert out.tolist() == [[1.0, 2.0]]
    assert read_rows(torch.zeros(3, 2), torch.zeros(3)).shape == (0, 2)
    assert read_rows(torch.full((1, 2), float("nan")), torch.tensor([float("nan")])).shape == (
        0,
        2,
    )


def test_crafted_attacks_refuse_models_they_cannot_craft() -> None:
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(16, 4))
    with pytest.raises(InvalidSettingError, match="first layer is a linear layer"):
        ImprintAttack(bins=4).craft(conv, torch.rand(10, 1, 4, 4))
    with pytest.raises(InvalidSettingError, match="bins ≤ the first layer's width 32"):
        ImprintAttack(bins=64).craft(mlp(), torch.rand(100, D))
    with pytest.raises(InvalidSettingError, match="at least bins=8 public inputs"):
        ImprintAttack(bins=8).craft(mlp(), torch.rand(5, D))
    with pytest.raises(InvalidSettingError, match="scale"):
        build_inversion("trap_weights", scale=0.0)
    with pytest.raises(InvalidSettingError, match="bins"):
        build_inversion("imprint", bins=1)
