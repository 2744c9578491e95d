"""Randomized smoothing: radii from the counts, abstention, a constant classifier, seeds, ART."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from fedsim.certify import (
    RandomizedSmoothing,
    certified_accuracy,
    certified_radius,
    lower_confidence_bound,
)
from fedsim.errors import InvalidSettingError


class Constant(nn.Module):
    """Always class ``c`` of ``k`` (the noise never matters)."""

    def __init__(self, c: int, k: int = 3) -> None:
        super().__init__()
        self.c, self.k = c, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.k)
        out[:, self.c] = 1.0
        return out


class Threshold(nn.Module):
    """Class 1 where the mean pixel exceeds ``t``, else class 0: noise decides near ``t``."""

    def __init__(self, t: float = 0.5) -> None:
        super().__init__()
        self.t = t

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1) - self.t
        return torch.stack([-m, m], dim=1)


def _data(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = 0.45 + 0.1 * torch.rand(b, 1, 2, 2, generator=g)
    return x, (x.flatten(1).mean(dim=1) > 0.5).long()


def test_radii_are_sigma_times_probit_of_the_clopper_pearson_bound() -> None:
    x, y = _data()
    rs = RandomizedSmoothing(sigma=0.1, n0=20, n=200, alpha=0.01, batch_size=64)
    records = rs.certify(Threshold(), x, y, torch.Generator().manual_seed(0))
    assert len(records) == len(x)
    for r in records:
        p = stats.beta.ppf(0.01, r.count, 200 - r.count + 1) if r.count else 0.0
        if p > 0.5:
            assert r.prediction != -1
            assert r.radius == pytest.approx(0.1 * stats.norm.ppf(p), rel=1e-12)
        else:
            assert (r.prediction, r.radius) == (-1, 0.0)
    # the threshold classifier near its boundary: some certified, some abstain
    assert {r.prediction for r in records} >= {-1}
    assert any(r.radius > 0 for r in records)


def test_abstains_at_and_below_one_half() -> None:
    n, alpha = 100, 0.05
    # the largest count whose bound is still <= 1/2
    k = max(c for c in range(n + 1) if lower_confidence_bound(c, n, alpha) <= 0.5)
    assert certified_radius(lower_confidence_bound(k, n, alpha), 0.25) == 0.0
    assert certified_radius(lower_confidence_bound(k + 1, n, alpha), 0.25) > 0.0
    assert certified_radius(0.5, 1.0) == 0.0
    # a classifier split evenly by the noise abstains
    rs = RandomizedSmoothing(sigma=0.5, n0=50, n=500, alpha=0.001)
    [rec] = rs.certify(
        Threshold(),
        torch.full((1, 1, 2, 2), 0.5),
        torch.tensor([1]),
        torch.Generator().manual_seed(3),
    )
    assert (rec.prediction, rec.radius) == (-1, 0.0)


@pytest.mark.parametrize("n, alpha, sigma", [(1000, 0.001, 0.25), (100, 0.01, 0.5), (50, 0.1, 1.0)])
def test_a_constant_classifier_gets_the_radius_n_and_alpha_allow(n, alpha, sigma) -> None:
    rs = RandomizedSmoothing(sigma=sigma, n0=5, n=n, alpha=alpha, batch_size=37)
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    records = rs.certify(Constant(2), x, torch.tensor([2, 2, 0]), torch.Generator().manual_seed(0))
    expected = sigma * stats.norm.ppf(alpha ** (1.0 / n))  # p_A = alpha^(1/n) for count n
    for r in records:
        assert (r.prediction, r.count, r.n) == (2, n, n)
        assert r.radius == pytest.approx(expected, rel=1e-9)
    r = records[0].radius
    assert certified_accuracy(records, [0.0, r]) == {"r0": 2 / 3, f"r{r:g}": 2 / 3}


def test_reference_md_numbers() -> None:
    """REFERENCE.md: all correct at σ = 0.25, α = 0.001: R = 0.616 (n = 1000), 0.800 (10⁴)."""
    for n, radius in ((1000, 0.616), (10_000, 0.800)):
        assert round(certified_radius(lower_confidence_bound(n, n, 0.001), 0.25), 3) == radius


def test_certified_accuracy_uses_greater_or_equal() -> None:
    rs = RandomizedSmoothing(sigma=0.25, n0=5, n=1000, alpha=0.001)
    records = rs.certify(
        Constant(0), torch.zeros(2, 1, 1, 1), torch.tensor([0, 1]), torch.Generator().manual_seed(0)
    )
    r = records[0].radius
    acc = certified_accuracy(records, [r])
    assert list(acc.values()) == [0.5]  # radius == r counts
    assert certified_accuracy([rec.to_dict() for rec in records], [r + 1e-6]) == {
        f"r{r + 1e-6:g}": 0.0
    }
    assert math.isnan(certified_accuracy([], [0.25])["r0.25"])


def test_same_seed_same_records_other_seed_other_counts() -> None:
    x, y = _data()
    rs = RandomizedSmoothing(sigma=0.1, n0=20, n=300, alpha=0.01, batch_size=50)
    a = rs.certify(Threshold(), x, y, torch.Generator().manual_seed(7))
    b = rs.certify(Threshold(), x, y, torch.Generator().manual_seed(7))
    c = rs.certify(Threshold(), x, y, torch.Generator().manual_seed(8))
    assert a == b
    assert [r.count for r in a] != [r.count for r in c]
    p1 = rs.predict(Threshold(), x, torch.Generator().manual_seed(7))
    p2 = rs.predict(Threshold(), x, torch.Generator().manual_seed(7))
    assert torch.equal(p1, p2)


def test_predict_abstains_on_a_coin_flip_and_answers_a_clear_case() -> None:
    rs = RandomizedSmoothing(sigma=0.5, n=400, alpha=0.001)
    x = torch.stack([torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 0.95)])
    pred = rs.predict(Threshold(), x, torch.Generator().manual_seed(0))
    assert pred.tolist() == [-1, 1]


def test_the_denoiser_sees_the_noisy_batch_before_the_classifier() -> None:
    seen = []

    def denoiser(z: torch.Tensor) -> torch.Tensor:
        seen.append(z.clone())
        return torch.zeros_like(z)  # everything becomes mean 0 → class 0

    rs = RandomizedSmoothing(sigma=0.3, n0=4, n=10, alpha=0.1, batch_size=4, denoiser=denoiser)
    [rec] = rs.certify(
        Threshold(), torch.ones(1, 1, 2, 2), torch.tensor([0]), torch.Generator().manual_seed(0)
    )
    assert (rec.prediction, rec.count) == (0, 10)
    assert sum(len(z) for z in seen) == 14  # n0 + n noisy copies, in batches of <= 4
    assert not torch.equal(seen[0][0], torch.ones(1, 2, 2))  # noisy (and not clipped)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sigma": 0.0}, "sigma > 0.0"),
        ({"sigma": 0.25, "n": 0}, "n >= 1"),
        ({"sigma": 0.25, "alpha": 1.0}, "alpha < 1.0"),
        ({"sigma": 0.25, "denoiser": 3}, "callable denoiser"),
    ],
)
def test_settings_are_validated(kwargs, match) -> None:
    with pytest.raises(InvalidSettingError, match=match):
        RandomizedSmoothing(**kwargs)


def test_agrees_with_art_randomized_smoothing_on_a_constant_classifier() -> None:
    """ART 1.20's certify: same ĉA, count and radius where the counts cannot differ.

    ART draws its noise from NumPy's global generator, so only a classifier the noise cannot
    move gives both the same counts. ART's bound needs statsmodels.
    """
    pytest.importorskip("statsmodels")
    rs_art = pytest.importorskip("art.estimators.certification.randomized_smoothing")
    n, alpha, sigma = 500, 0.001, 0.25
    art = rs_art.PyTorchRandomizedSmoothing(
        model=Constant(1),
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 2, 2),
        nb_classes=3,
        sample_size=10,
        scale=sigma,
        alpha=alpha,
        clip_values=(0.0, 1.0),
    )
    x = np.random.default_rng(0).random((2, 1, 2, 2)).astype(np.float32)
    pred, radius = art.certify(x, n=n, batch_size=100)
    ours = RandomizedSmoothing(sigma=sigma, n0=10, n=n, alpha=alpha).certify(
        Constant(1), torch.from_numpy(x), torch.tensor([1, 1]), torch.Generator().manual_seed(0)
    )
    assert pred.tolist() == [r.prediction for r in ours]
    assert radius.tolist() == pytest.approx([r.radius for r in ours], rel=1e-9)


def test_bound_equals_statsmodels_beta_interval_at_two_alpha() -> None:
    """Cohen et al.'s and ART's call: proportion_confint(k, n, alpha=2α, method="beta")[0]."""
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    for n in (10, 100, 1000):
        for k in sorted({0, 1, n // 2, n // 2 + 1, (9 * n) // 10, n - 1, n}):
            ref = proportion.proportion_confint(k, n, alpha=2 * 0.001, method="beta")[0]
            assert lower_confidence_bound(k, n, 0.001) == pytest.approx(ref, rel=1e-12, abs=1e-15)
