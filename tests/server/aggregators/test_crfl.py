import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedsim.errors import InvalidSettingError
from server.aggregators.crfl import (
    CRFLSetting,
    certified_accuracy,
    certified_radius,
    clopper_pearson_lower,
    crfl_clip_and_perturb,
)


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


def test_clopper_pearson_lower_bound():
    # k = M: the bound solves p^M = α → α^(1/M); k = 0 → 0; else beta.ppf(α, k, M−k+1)
    assert clopper_pearson_lower(100, 100, 0.001) == pytest.approx(0.001 ** (1 / 100))
    assert clopper_pearson_lower(0, 100, 0.001) == 0.0
    assert clopper_pearson_lower(60, 100, 0.05) < 0.6


def test_certified_accuracy_counts_only_correct_certified_samples():
    # sample 0: all 100 draws class 0, label 0 → radius ≈ 0.589; sample 1: correct but 50/50
    # (abstains); sample 2: certified but wrong
    counts = np.array([[100, 0], [50, 50], [0, 100]])
    p_a = 0.001 ** (1 / 100)
    r0 = certified_radius(p_a, 1 - p_a, setting())

    acc = certified_accuracy(counts, np.array([0, 0, 0]), [0.0, r0, r0 + 1e-9], setting())

    assert r0 == pytest.approx(0.5894, abs=1e-4)
    assert acc == [1 / 3, 1 / 3, 0.0]


def test_clip_and_perturb():
    w = torch.tensor([3.0, 4.0], dtype=torch.float64)

    clipped = crfl_clip_and_perturb(w, 1.0, 0.0, torch.Generator())
    kept = crfl_clip_and_perturb(w, 10.0, 0.0, torch.Generator())

    torch.testing.assert_close(clipped, torch.tensor([0.6, 0.8], dtype=torch.float64))
    assert torch.equal(kept, w)


def test_noise_has_the_requested_std_and_is_seeded():
    w = torch.zeros(20_000, dtype=torch.float64)

    a = crfl_clip_and_perturb(w, 1.0, 0.01, torch.Generator().manual_seed(1))
    b = crfl_clip_and_perturb(w, 1.0, 0.01, torch.Generator().manual_seed(1))

    assert float(a.std()) == pytest.approx(0.01, rel=0.03)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "changes", [{"sigma": 0.0}, {"rhos": []}, {"rhos": [-1.0]}, {"attacker_weights": []}]
)
def test_bad_setting_is_rejected(changes):
    with pytest.raises(InvalidSettingError, match="crfl"):
        setting(**changes)


def test_bad_server_step_settings_are_rejected():
    with pytest.raises(InvalidSettingError, match="crfl needs a finite rho > 0.0"):
        crfl_clip_and_perturb(torch.ones(2), 0.0, 0.1, torch.Generator())
