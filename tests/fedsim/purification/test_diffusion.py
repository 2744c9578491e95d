"""The diffusion purifier: forward SDE, DSM vs the analytic score, samplers on noisy digits.

Independent references: an Euler–Maruyama simulation of the forward SDE (for the closed-form
marginal), the analytic score of a Gaussian (for the trained network), finite differences (for
the full gradient through the sampler), and the clean digits (for purification).
"""

from __future__ import annotations

import math

import pytest
import torch
from sklearn.datasets import load_digits

from fedsim.errors import InvalidSettingError
from fedsim.purification import DiffusionPurifier, build_purifier
from fedsim.purification.diffusion import VPSDE, ScoreNet, train_score_net


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """scikit-learn's digits in [0, 1], ``(1797, 1, 8, 8)``."""
    return torch.tensor(load_digits().images / 16.0, dtype=torch.float32).unsqueeze(1)


@pytest.fixture(scope="module")
def purifier(digits: torch.Tensor) -> DiffusionPurifier:
    """A small score model trained on digits 300.. (the tests purify digits 0..99)."""
    torch.set_num_threads(1)
    p = DiffusionPurifier(t_star=0.1, width=16, train_steps=300, batch_size=64)
    p.fit(digits[300:], torch.Generator().manual_seed(0))
    return p


def test_forward_marginal_matches_a_simulation_of_the_sde() -> None:
    sde, x0, t_end, steps = VPSDE(), 0.8, 0.3, 600
    g = torch.Generator().manual_seed(0)
    x = torch.full((20000,), x0)
    h = t_end / steps
    for k in range(steps):  # Euler–Maruyama on dx = -β/2 x dt + √β dW
        beta = sde.beta(torch.tensor(k * h))
        x = x - 0.5 * beta * x * h + torch.sqrt(beta * h) * torch.randn(x.shape, generator=g)
    a = float(sde.alpha_bar(torch.tensor(t_end)))
    # closed form: mean √ᾱ x0 = 0.296, variance 1 − ᾱ = 0.863; standard error of the mean 0.007
    assert float(x.mean()) == pytest.approx(math.sqrt(a) * x0, abs=0.03)
    assert float(x.var()) == pytest.approx(1 - a, rel=0.03)
    xt, std = sde.marginal(torch.tensor([[x0]]), torch.tensor(t_end), torch.tensor([[1.0]]))
    assert float(xt) == pytest.approx(math.sqrt(a) * x0 + math.sqrt(1 - a))
    assert float(std) == pytest.approx(math.sqrt(1 - a))


@pytest.mark.parametrize("ratio", [0.05, 0.5, 2.0])
def test_t_for_noise_ratio_inverts_the_schedule(ratio: float) -> None:
    sde = VPSDE()
    a = float(sde.alpha_bar(torch.tensor(sde.t_for_noise_ratio(ratio), dtype=torch.float64)))
    assert math.sqrt((1 - a) / a) == pytest.approx(ratio, rel=1e-9)
    with pytest.raises(InvalidSettingError, match="noise ratio"):
        sde.t_for_noise_ratio(1e4)  # beyond t = 1


def test_dsm_learns_the_analytic_score_of_a_gaussian() -> None:
    # data N(0, s² I): the marginal at t is N(0, (ᾱ s² + 1 − ᾱ) I), so the optimal noise
    # predictor is ε*(x, t) = √(1 − ᾱ) x / (ᾱ s² + 1 − ᾱ), i.e. score −x / (ᾱ s² + 1 − ᾱ)
    s, sde = 0.5, VPSDE()
    g = torch.Generator().manual_seed(0)
    data = s * torch.randn(2048, 1, 4, 4, generator=g)
    torch.manual_seed(0)
    net = ScoreNet(channels=1, size=4, width=8)
    losses = train_score_net(net, sde, data, g, steps=300, batch_size=64, lr=3e-3)
    # last 50 / first 50 mean loss: 0.49–0.50 over seeds 0–2
    assert sum(losses[-50:]) / 50 < 0.7 * sum(losses[:50]) / 50
    x = s * torch.randn(512, 1, 4, 4, generator=g)
    for t in (0.1, 0.3, 0.6):
        a = float(sde.alpha_bar(torch.tensor(t)))
        xt = math.sqrt(a) * x + math.sqrt(1 - a) * torch.randn(x.shape, generator=g)
        exact = math.sqrt(1 - a) * xt / (a * s * s + 1 - a)
        with torch.no_grad():
            learned = net(xt, torch.tensor(t))
        relative = float((learned - exact).norm() / exact.norm())
        # measured over seeds 0–2: 0.31–0.32 at t = 0.1, 0.22 at 0.3, 0.20–0.22 at 0.6
        # (400 steps at width 16: below 0.25); the zero predictor scores 1.0
        assert relative < 0.45, (t, relative)


@pytest.mark.parametrize(("sampler", "steps"), [("ode", 5), ("sde", 50)])
def test_both_samplers_map_noisy_digits_closer_to_clean(
    purifier: DiffusionPurifier, digits: torch.Tensor, sampler: str, steps: int
) -> None:
    clean = digits[:100]
    g = torch.Generator().manual_seed(1)
    noisy = (clean + 0.3 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    with torch.no_grad():
        out = purifier.using(sampler, steps)(noisy, torch.Generator().manual_seed(2))
    before = float(((noisy - clean) ** 2).mean())
    after = float(((out - clean) ** 2).mean())
    # measured over training seeds 0–2: noisy 0.0511; ode 5 0.034–0.035, sde 50 0.037–0.038
    assert after < 0.85 * before, (before, after)


def test_one_shot_denoiser_beats_the_noisy_input_at_large_sigma(
    purifier: DiffusionPurifier, digits: torch.Tensor
) -> None:
    clean = digits[:100]
    noisy = clean + 0.5 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = purifier.denoise(noisy, 0.5)
    before, after = float(((noisy - clean) ** 2).mean()), float(((out - clean) ** 2).mean())
    assert after < 0.25 * before, (before, after)  # measured 0.251 → 0.038–0.039, seeds 0–2


def test_the_same_seeds_give_the_same_purifier_and_purification(digits: torch.Tensor) -> None:
    def trained() -> DiffusionPurifier:
        p = DiffusionPurifier(width=8, train_steps=5, sampler="sde", steps=4)
        p.fit(digits[:64], torch.Generator().manual_seed(7))
        return p

    first, second = trained(), trained()
    x = digits[64:70]
    a = first(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, second(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, first(x, torch.Generator().manual_seed(2)))  # randomized


def test_full_gradient_through_the_fast_sampler_matches_finite_differences(
    purifier: DiffusionPurifier, digits: torch.Tensor
) -> None:
    p = purifier.using("ode", 3)
    net = p._network(digits[:1]).double()
    try:
        x = digits[:2].double().clamp(0.05, 0.95)
        w = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

        def loss(z: torch.Tensor) -> torch.Tensor:
            return (p(z, torch.Generator().manual_seed(5)) * w).sum()

        grad = torch.func.grad(loss)(x)
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h = 1e-5
        numeric = (loss(x + h * v) - loss(x - h * v)) / (2 * h)
        assert float((grad * v).sum()) == pytest.approx(float(numeric), rel=1e-4)
        assert float(grad.abs().sum()) > 0
    finally:
        net.float()


def test_settings_are_checked_and_an_untrained_purifier_says_so() -> None:
    with pytest.raises(InvalidSettingError, match="t_star <= 1.0"):
        build_purifier("diffusion", t_star=1.5)
    with pytest.raises(InvalidSettingError, match="sampler one of sde, ode"):
        build_purifier("diffusion", sampler="heun")
    with pytest.raises(InvalidSettingError, match="no trained score network"):
        build_purifier("diffusion")(torch.zeros(1, 1, 8, 8))
    assert build_purifier("diffusion", sampler="sde").steps == 100


def test_nan_input_does_not_crash(purifier: DiffusionPurifier) -> None:
    x = torch.full((2, 1, 8, 8), float("nan"))
    with torch.no_grad():
        assert purifier(x, torch.Generator().manual_seed(0)).shape == x.shape
