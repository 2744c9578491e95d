"""White-box gradient canaries: their draws, their insertion into DP-SGD, the one-shot estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn

from fedsim.audit import canary_insertions, gradient_canaries, two_sample_epsilon
from fedsim.errors import ScenarioError
from fedsim.privacy.dp_sgd import DPSettings, InsertedGradients, train_dp_sgd
from fedsim.scenario import parse_scenario
from fedsim.training import TrainSettings
from fedsim.vectorized import LocalTask, train_clients_vectorized


def scenario(canaries: int, poisson: bool = True, epochs: int = 1, clients: int = 4):
    return parse_scenario(
        {
            "name": "g",
            "rounds": 1,
            "data": {"dataset": "digits", "num_clients": clients},
            "clients": {"per_round": 1, "local_epochs": epochs},
            "privacy": {
                "local_dp": {
                    "noise_multiplier": 1.0,
                    "max_grad_norm": 2.0,
                    "poisson_sampling": poisson,
                },
                "audit": {"canaries": canaries, "canary": "gradient"},
            },
        }
    )


def gdp_epsilon(mu: float, delta: float) -> float:
    """ε(δ) of μ-GDP (Dong, Roth, Su 2022): δ(ε) = Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2)."""

    def gap(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 200.0)


def test_canaries_sit_on_distinct_coordinates_of_honest_owners_at_the_clip_norm() -> None:
    s = scenario(canaries=300)
    c = gradient_canaries(s, malicious={1}, dim=500)
    assert c is not None and len(np.unique(c.coordinates)) == 300 == len(c.owners)
    assert c.coordinates.min() >= 0 and c.coordinates.max() < 500
    assert set(c.owners.tolist()) == {0, 2, 3} and c.norm == 2.0
    assert 0.4 < c.included.mean() < 0.6  # fair coins (150 ± 8.7 expected)
    again = gradient_canaries(s, malicious={1}, dim=500)
    assert np.array_equal(c.coordinates, again.coordinates)  # every process draws the same
    with pytest.raises(ScenarioError, match="privacy.audit.canaries"):
        gradient_canaries(s, malicious=(), dim=299)


def test_insertions_follow_poisson_sampling_or_one_step_per_epoch() -> None:
    s = scenario(canaries=400)
    c = gradient_canaries(s, malicious=(), dim=1000)
    owned = set(c.coordinates[c.owned_by(2)].tolist())
    g = canary_insertions(s, c, client=2, server_round=1, steps=50, sample_rate=0.2)
    assert g is not None and g.value == 2.0 and len(g.coordinates) == 50
    chosen = [set(t.tolist()) for t in g.coordinates]
    assert all(step <= owned for step in chosen)
    rate = sum(len(step) for step in chosen) / (50 * len(owned))
    assert abs(rate - 0.2) < 0.03  # 50 · ~50 Bernoulli(0.2) draws: sd 0.008
    shuffled = scenario(canaries=400, poisson=False, epochs=2)
    c = gradient_canaries(shuffled, malicious=(), dim=1000)
    g = canary_insertions(shuffled, c, client=0, server_round=3, steps=10, sample_rate=0.2)
    own = sorted(c.coordinates[c.owned_by(0)].tolist())
    for epoch in (g.coordinates[:5], g.coordinates[5:]):  # each canary once in each epoch
        assert sorted(torch.cat(epoch).tolist()) == own


def test_an_insertion_adds_c_on_its_coordinate_before_the_same_noise() -> None:
    # One DP-SGD step: with and without the canary the batch and the noise are the same draws,
    # so the weights differ by exactly −lr·C/B on the canary's coordinate (the sum gains C·e_i,
    # then divided by the expected batch size B like the rest).
    settings = TrainSettings(epochs=1, batch_size=8, lr=0.5)
    x, y = torch.randn(8, 3, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 2
    runs = []
    for inserted in (None, InsertedGradients((torch.tensor([4]),), 2.0)):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        train_dp_sgd(
            model,
            x,
            y,
            settings,
            DPSettings(max_grad_norm=2.0, poisson_sampling=False),
            noise_multiplier=1.0,
            generator=torch.Generator().manual_seed(1),
            inserted=inserted,
        )
        runs.append(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))
    expected = torch.zeros(8)
    expected[4] = -0.5 * 2.0 / 8
    assert torch.allclose(runs[1] - runs[0], expected, atol=1e-6)


def test_vectorized_runtime_inserts_as_opacus_does() -> None:
    settings = TrainSettings(epochs=2, batch_size=4, lr=0.2)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 1, 1, 3, generator=g), torch.randint(0, 2, (12,), generator=g)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    start = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    steps = tuple(torch.tensor([i % 8, 7 - i % 8]) if i % 2 else torch.tensor([]) for i in range(6))
    inserted = InsertedGradients(tuple(t.long() for t in steps), 1.0)
    dp = DPSettings(max_grad_norm=1.0)
    task = LocalTask(start, x, y, torch.Generator().manual_seed(3), 0.7, inserted)
    [out] = train_clients_vectorized(net, [task], settings, dp=dp)
    train_dp_sgd(
        net,
        x,
        y,
        settings,
        dp,
        noise_multiplier=0.7,
        generator=torch.Generator().manual_seed(3),
        inserted=inserted,
    )
    alone = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    assert torch.allclose(out.weights, alone, atol=1e-5)
    assert not torch.allclose(out.weights, start)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_one_shot_estimate_recovers_the_gaussian_mechanism_through_dp_sgd(sigma: float) -> None:
    # Zero inputs give a bias-free linear layer zero gradients: the canary coordinates move by
    # the inserted C·e_i and the noise N(0, σ²C²) only. One full-batch DP-SGD step of shuffled
    # batches inserts every inserted canary once, so a canary's score −Δ[i]·B/(lr·C) is
    # N(1, σ²) if inserted and N(0, σ²) if not: the Gaussian mechanism, μ = 1/σ in GDP.
    m, delta = 8000, 1e-5
    s = scenario(canaries=m, poisson=False)
    model = nn.Linear(100, 100, bias=False)
    c = gradient_canaries(s, malicious=(), dim=10_000)
    owner = int(c.owners[0])
    c = type(c)(c.coordinates, np.full(m, owner), c.included, c.norm)
    inserted = canary_insertions(s, c, owner, server_round=1, steps=1, sample_rate=1.0)
    before = model.weight.detach().reshape(-1).clone()
    lr, batch, clip = 0.1, 4, 2.0
    train_dp_sgd(
        model,
        torch.zeros(batch, 100),
        torch.zeros(batch, dtype=torch.long),
        TrainSettings(epochs=1, batch_size=batch, lr=lr),
        DPSettings(max_grad_norm=clip, poisson_sampling=False),
        noise_multiplier=sigma,
        generator=torch.Generator().manual_seed(int(10 * sigma)),
        inserted=inserted,
    )
    delta_w = (model.weight.detach().reshape(-1) - before).double().numpy()
    scores = -delta_w[c.coordinates] * batch / (lr * clip)
    est = two_sample_epsilon(scores[c.included], scores[~c.included], delta)
    truth = gdp_epsilon(1.0 / sigma, delta)
    # Measured over generator seeds 0..9 at each σ: |est − truth| / truth ≤ 0.04 (σ = 0.5,
    # ε = 10.0), ≤ 0.06 (σ = 1, ε = 4.38), ≤ 0.11 (σ = 2, ε = 1.99), mean −0.01; the fitted
    # null std within 2.1 % of σ. The shift's standard error is σ·√(2/4000) ≈ 2σ %.
    assert abs(est.epsilon - truth) <= 0.2 * truth
    assert abs(est.null_sigma - sigma) < 0.05 * sigma
