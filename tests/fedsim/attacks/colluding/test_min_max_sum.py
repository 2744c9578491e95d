import math

import numpy as np
import pytest
import torch

from fedsim.attacks.colluding.deviation import largest_gamma
from fedsim.attacks.colluding.min_max import MinMax
from fedsim.attacks.colluding.min_sum import MinSum

G = torch.Generator()


def _observed(k=7, d=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return 0.3 + torch.randn(k, d, generator=g, dtype=torch.float64)


def _direction(a, direction):
    mu = a.mean(axis=0)
    if direction == "unit":
        return -mu / np.linalg.norm(mu)
    if direction == "sign":
        return -np.sign(mu)
    return -a.std(axis=0)


def _min_max_gamma(a, p):
    """Closed form: the smallest positive root over i of ||mu - a_i + g p||^2 = max pair dist^2."""
    mu = a.mean(axis=0)
    bound = max(np.sum((x - y) ** 2) for x in a for y in a)
    roots = []
    for x in a:
        c = mu - x
        qa, qb, qc = p @ p, 2 * c @ p, c @ c - bound
        roots.append((-qb + math.sqrt(qb * qb - 4 * qa * qc)) / (2 * qa))
    return min(roots)


def _min_sum_gamma(a, p):
    """Closed form: sum_i ||mu - a_i + g p||^2 = sum_i ||mu - a_i||^2 + k g^2 ||p||^2."""
    mu = a.mean(axis=0)
    bound = max(sum(np.sum((x - y) ** 2) for y in a) for x in a)
    spread = sum(np.sum((mu - x) ** 2) for x in a)
    return math.sqrt((bound - spread) / (len(a) * (p @ p)))


@pytest.mark.parametrize("direction", ["unit", "sign", "std"])
@pytest.mark.parametrize("cls, closed_form", [(MinMax, _min_max_gamma), (MinSum, _min_sum_gamma)])
def test_gamma_meets_the_constraint_with_equality(cls, closed_form, direction):
    u = _observed()
    attack = cls(direction=direction)
    out = attack(u, n=10, f=3, generator=G)
    gamma, tol = out.info["gamma"], attack.tol
    a = u.numpy()
    p = _direction(a, direction)
    assert not out.info["gamma_capped"]
    assert closed_form(a, p) - tol < gamma <= closed_form(a, p)
    mean, pt = u.mean(dim=0), torch.from_numpy(p)
    bound = attack.threshold(u)
    assert attack.objective(mean + gamma * pt, u) <= bound
    assert attack.objective(mean + (gamma + tol) * pt, u) > bound
    assert out.updates.shape == (3, 6)
    for row in out.updates:
        np.testing.assert_allclose(row.numpy(), a.mean(axis=0) + gamma * p, rtol=1e-12)


def test_hand_computed_min_max_sign():
    u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    # m = (3-g, 1-g, 2-g); the farthest update is (5, 3, 2): 2(2+g)^2 + g^2 = 25
    expected = (-8 + math.sqrt(64 + 4 * 3 * 17)) / 6
    gamma = MinMax(direction="sign")(u, n=5, f=1, generator=G).info["gamma"]
    assert expected - 1e-5 < gamma <= expected


def test_thresholds_by_hand():
    u = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]], dtype=torch.float64)
    assert MinMax().threshold(u) == 25.0
    assert MinSum().threshold(u) == 25.0 + 18.0  # row 1: 25 + 9 + 9


def test_search_reports_a_cap():
    u = _observed()
    out = MinMax(gamma_init=0.01, tol=1e-6)(u, n=10, f=2, generator=G)
    assert out.info["gamma_capped"]
    assert out.info["gamma"] == pytest.approx(0.02, abs=1e-6)


def test_largest_gamma_follows_the_papers_probes():
    probes = []

    def feasible(g):
        probes.append(g)
        return g <= 12.3

    gamma, capped = largest_gamma(feasible, 10.0, 1e-3)
    assert probes[:4] == [10.0, 15.0, 12.5, 11.25]
    assert 12.3 - 1e-3 < gamma <= 12.3 and not capped


def test_invalid_settings():
    from fedsim.errors import InvalidSettingError

    with pytest.raises(InvalidSettingError, match="min_sum needs direction"):
        MinSum(direction="random")
    with pytest.raises(InvalidSettingError, match="tol"):
        MinMax(tol=0.0)
    with pytest.raises(InvalidSettingError, match="tol < gamma_init"):
        MinMax(gamma_init=1.0, tol=2.0)
