import numpy as np
import pytest
import torch
from scipy.stats import norm

from fedsim.attacks.colluding.alie import ALIE
from fedsim.errors import InvalidSettingError

G = torch.Generator()


def _observed(k=6, d=5, seed=0):
    return torch.randn(k, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_paper_z_for_n20_f4():
    # s = floor(20/2 + 1) - 4 = 7; z = Phi^-1((20 - 7)/20) = Phi^-1(0.65)
    z = ALIE().z_for(n=20, f=4)
    assert z == pytest.approx(0.385320466, abs=1e-8)
    assert z == pytest.approx(norm.ppf(13 / 20), abs=1e-12)
    assert abs(z - norm.cdf(0.65)) > 0.3  # the inverse CDF, not the CDF


def test_paper_mode_crafts_mean_minus_z_std():
    u = _observed()
    out = ALIE()(u, n=20, f=4, generator=G)
    a = u.numpy()
    expected = a.mean(axis=0) - norm.ppf(13 / 20) * a.std(axis=0, ddof=0)
    assert out.updates.shape == (4, 5) and out.updates.dtype == torch.float64
    for row in out.updates:
        np.testing.assert_allclose(row.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert out.info["z"] == pytest.approx(0.385320466, abs=1e-8)
    assert out.info["s"] == 7


def test_fixed_mode_and_unbiased_std():
    u = _observed()
    a = u.numpy()
    out = ALIE(z_mode="fixed")(u, n=10, f=2, generator=G)
    np.testing.assert_allclose(out.updates[1].numpy(), a.mean(0) - 1.5 * a.std(0), rtol=1e-12)
    assert out.info["z"] == 1.5
    out = ALIE(z_mode="fixed", z=2.0, unbiased=True)(u, n=10, f=2, generator=G)
    np.testing.assert_allclose(
        out.updates[0].numpy(), a.mean(0) - 2.0 * a.std(0, ddof=1), rtol=1e-12
    )


def test_hand_computed_three_by_three():
    u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    out = ALIE(z_mode="fixed", z=1.0)(u, n=5, f=1, generator=G)
    # mean (3, 1, 2); population std (sqrt(8/3), sqrt(2), 0)
    expected = [3 - (8 / 3) ** 0.5, 1 - 2**0.5, 2.0]
    assert out.updates[0].tolist() == pytest.approx(expected, abs=1e-12)


def test_single_observed_update_with_population_std():
    u = _observed(k=1)
    out = ALIE()(u, n=10, f=3, generator=G)
    assert torch.equal(out.updates[0], u[0])
    with pytest.raises(InvalidSettingError, match="at least 2 observed"):
        ALIE(unbiased=True)(u, n=10, f=3, generator=G)


@pytest.mark.parametrize(
    "n, f, message",
    [(10, 0, "f \\(malicious updates\\) >= 1"), (4, 4, "n > f"), (10, 6, r"s = ⌊n/2\+1⌋ − f ≥ 1")],
)
def test_round_preconditions(n, f, message):
    with pytest.raises(InvalidSettingError, match=message):
        ALIE()(_observed(), n=n, f=f, generator=G)


def test_fixed_mode_allows_an_attacker_majority():
    assert ALIE(z_mode="fixed")(_observed(), n=10, f=6, generator=G).updates.shape == (6, 5)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"z_mode": "cdf"}, "z_mode"),
        ({"z": 1.0}, "z must not be set"),
        ({"z_mode": "fixed", "z": -1.0}, "z >= 0"),
        ({"unbiased": 1}, "unbiased"),
    ],
)
def test_invalid_settings(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        ALIE(**params)
