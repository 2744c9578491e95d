"""CRFL's certified prediction: the radius of Theorem 3, parameter smoothing, certified accuracy."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from fedsim.certify import (
    CRFLSetting,
    ParameterSmoothing,
    certified_accuracy,
    crfl_radius,
    lower_confidence_bound,
)
from fedsim.errors import InvalidSettingError

certified_radius = crfl_radius  # the name the radius tests were written with


def setting(**changes):
    base = dict(
        sigma=1.0,
        sigma_test=1.0,
        rhos=[40.0],
        lr=1.0,
        local_iters=1.0,
        lipschitz=1.0,
        scale=1.0,
        poison_per_batch=1.0,
        batch_size=1.0,
        attacker_weights=[1.0],
    )
    return CRFLSetting(**{**base, **changes})


def test_radius_hand_computed_unit_constants():
    # (√0.9 − √0.1)² = 1 − 2√0.09 = 0.4; −ln(0.6) = 0.5108256; Φ(40) = 1 → RAD = √(0.5108/2)
    assert certified_radius(0.9, 0.1, setting()) == pytest.approx(math.sqrt(-math.log(0.6) / 2))
    assert certified_radius(0.9, 0.1, setting()) == pytest.approx(0.505384, abs=1e-6)


def test_radius_equals_the_closed_form():
    # Prepare: σ=0.01 before T, σ_T=0.02, ρ = (2.1, 2.2, 2.3), η=0.1, τ=20, L_Z=√17, γ=10,
    # q_B/n_B = 5/64, two attackers with p = 0.1 each
    s = setting(
        sigma=0.01,
        sigma_test=0.02,
        rhos=[2.1, 2.2, 2.3],
        lr=0.1,
        local_iters=20.0,
        lipschitz=math.sqrt(17.0),
        scale=10.0,
        poison_per_batch=5.0,
        batch_size=64.0,
        attacker_weights=[0.1, 0.1],
    )
    p_a, p_b = 0.8, 0.15
    contraction = (
        (2 * norm.cdf(2.1 / 0.01) - 1)
        * (2 * norm.cdf(2.2 / 0.01) - 1)
        * (2 * norm.cdf(2.3 / 0.02) - 1)
    )
    denominator = 2 * 2 * 20**2 * 17 * 10**2 * 0.1**2 * (5 / 64) ** 2 * 0.02 * contraction
    gap = (math.sqrt(p_a) - math.sqrt(p_b)) ** 2
    expected = math.sqrt(-(0.01**2) * math.log(1 - gap) / denominator)

    assert certified_radius(p_a, p_b, s) == pytest.approx(expected, rel=1e-12)


def test_contraction_of_a_tight_clip_enlarges_the_radius():
    # ρ/σ_T = 1.959964 → 2Φ − 1 = 0.95: RAD² grows by 1/0.95
    loose = certified_radius(0.9, 0.1, setting())
    tight = certified_radius(0.9, 0.1, setting(rhos=[norm.ppf(0.975)]))

    assert tight == pytest.approx(loose / math.sqrt(0.95), rel=1e-9)


@pytest.mark.parametrize(("p_a", "p_b"), [(0.5, 0.5), (0.3, 0.6), (0.0, 0.0)])
def test_radius_is_zero_without_a_margin(p_a, p_b):
    assert certified_radius(p_a, p_b, setting()) == 0.0


def test_radius_is_infinite_for_a_certain_prediction():
    assert certified_radius(1.0, 0.0, setting()) == math.inf


def test_radius_from_counts_matches_a_hand_computation_of_theorem_3():
    # M = 100 noisy models, all vote class 0, α = 0.001: p̲A = α^(1/M) = 0.933254 (the
    # Clopper–Pearson bound when every draw agrees), p̄B = 1 − p̲A = 0.066746.
    # Constants of a digits run: σ = σ_T = 0.01, ρ = 20 (2Φ(2000) − 1 = 1), η = 0.05,
    # τ = 1 epoch × 5 batches, L_Z = √17, γ = 1, q_B/n_B = 16/32, R = 1 with p = 1/10.
    # (√p̲A − √p̄B)² = (0.966050 − 0.258353)² = 0.500835; −ln(1 − 0.500835) = 0.694820
    # numerator 1e-4 · 0.694820 = 6.94820e-5
    # denominator 2 · 1 · (5 · √17 · 1 · 0.05)² · 0.25 · 0.01 = 2 · 1.0625 · 0.0025 = 5.3125e-3
    # RAD = √(6.94820e-5 / 5.3125e-3) = √0.0130790 = 0.114364
    s = setting(
        sigma=0.01,
        sigma_test=0.01,
        rhos=[20.0],
        lr=0.05,
        local_iters=5.0,
        lipschitz=math.sqrt(17.0),
        scale=1.0,
        poison_per_batch=16.0,
        batch_size=32.0,
        attacker_weights=[0.1],
    )
    smoothing = ParameterSmoothing(sigma_test=0.01, rho=20.0, models=100, alpha=0.001)
    (record,) = smoothing.certify(torch.tensor([[100, 0, 0]]), torch.tensor([0]), s)

    assert lower_confidence_bound(100, 100, 0.001) == pytest.approx(0.933254, abs=1e-6)
    assert (record.prediction, record.count, record.n) == (0, 100, 100)
    assert record.radius == pytest.approx(0.114364, abs=2e-6)


def test_abstains_when_the_top_class_is_not_a_clear_majority():
    smoothing = ParameterSmoothing(sigma_test=0.01, rho=1.0, models=100, alpha=0.001)
    records = smoothing.certify(torch.tensor([[55, 45], [0, 100]]), torch.tensor([0, 0]), setting())
    # 55 of 100: p̲A = B(0.001; 55, 46) ≈ 0.39 ≤ ½ → abstain; the second is certified but wrong
    assert (records[0].prediction, records[0].radius) == (-1, 0.0)
    assert records[1].prediction == 1 and records[1].radius > 0
    assert certified_accuracy(records, [0.0]) == {"r0": 0.0}


def _votes(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Votes of 100 noisy copies of a random linear model on 60 random samples, and labels."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(6, 3)
    x = torch.randn(60, 6, generator=g)
    params = torch.randn(6 * 3 + 3, generator=g, dtype=torch.float64)
    smoothing = ParameterSmoothing(sigma_test=0.3, rho=5.0, models=100)
    votes = smoothing.votes(model, params, x, g)
    return votes, votes.argmax(1) if seed % 2 else torch.randint(0, 3, (60,), generator=g)


@pytest.mark.parametrize("seed", [0, 1])
def test_certified_accuracy_never_increases_with_the_radius(seed):
    votes, y = _votes(seed)
    smoothing = ParameterSmoothing(sigma_test=0.3, rho=5.0, models=100)
    records = smoothing.certify(votes, y, setting(sigma=0.3, sigma_test=0.3))
    radii = sorted({0.0, *np.linspace(0.0, 2.0, 21).tolist()})

    shares = list(certified_accuracy(records, radii).values())

    assert all(a >= b for a, b in zip(shares, shares[1:], strict=False))
    assert shares[0] > shares[-1]  # the curve does fall over this range


def test_more_attackers_certify_fewer_samples_at_every_radius():
    votes, y = _votes(1)
    smoothing = ParameterSmoothing(sigma_test=0.3, rho=5.0, models=100)
    base = setting(sigma=0.3, sigma_test=0.3, attacker_weights=[0.1])
    radii = [0.0, 0.5, 1.0, 2.0, 4.0]

    curves = [
        certified_accuracy(smoothing.certify(votes, y, base.with_attackers(r)), radii)
        for r in (1, 2, 3, 4)
    ]
    # equal weights p: RAD ∝ 1/(R·p), so R = 2 halves every radius exactly
    one, two = smoothing.radii(votes, base), smoothing.radii(votes, base.with_attackers(2))
    assert two == pytest.approx([r / 2 for r in one])
    for fewer, more in zip(curves, curves[1:], strict=False):
        assert all(more[k] <= fewer[k] for k in fewer)
    assert curves[-1]["r1"] < curves[0]["r1"]


def test_votes_are_seeded_clip_first_and_refuse_a_non_finite_model():
    model = nn.Linear(2, 2)
    w = torch.tensor([30.0, 40.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # ‖w‖ = 50
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tiny = ParameterSmoothing(sigma_test=1e-6, rho=5.0, models=3)
    a = tiny.votes(model, w, x, torch.Generator().manual_seed(0))
    b = tiny.votes(model, w, x, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.sum(1).tolist() == [3, 3]
    # after the last copy the model holds the clipped vector (to 1e-6): 0.1 × w
    assert torch.allclose(model.weight.data.flatten()[:2], torch.tensor([3.0, 4.0]), atol=1e-4)
    with pytest.raises(InvalidSettingError, match="finite"):
        tiny.votes(model, torch.full((6,), float("nan")), x, torch.Generator())


@pytest.mark.parametrize(
    "changes", [{"sigma": 0.0}, {"rhos": []}, {"rhos": [-1.0]}, {"attacker_weights": []}]
)
def test_bad_setting_is_rejected(changes):
    with pytest.raises(InvalidSettingError, match="crfl"):
        setting(**changes)
