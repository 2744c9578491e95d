import math

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.fltrust import FLTrust


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def run(rule, g0, updates, ids=None):
    rule.server_update = g0
    n = updates.shape[0]
    return rule(updates, torch.ones(n), list(range(n)) if ids is None else ids)


def test_hand_computed():
    # g0=(1,0), ‖g0‖=1
    #   Δ0=(2,0):  cos 1    → TS 1,    Δ̄0 = (1,0)
    #   Δ1=(0,3):  cos 0    → TS 0
    #   Δ2=(3,3):  cos 1/√2 → TS 1/√2, Δ̄2 = (1/√2, 1/√2)
    #   Δ3=(−1,1): cos −1/√2 → TS 0
    # out = (1·(1,0) + (1/√2)(1/√2,1/√2)) / (1 + 1/√2) = (1.5, 0.5) / (1 + 1/√2)
    u = t([[2.0, 0.0], [0.0, 3.0], [3.0, 3.0], [-1.0, 1.0]])

    out = run(FLTrust(), t([1.0, 0.0]), u, [10, 11, 12, 13])

    s = 1 + 1 / math.sqrt(2)
    torch.testing.assert_close(out.update, t([1.5 / s, 0.5 / s]), rtol=1e-15, atol=0)
    assert out.accepted == [10, 12]
    assert out.info["trust_sum"] == pytest.approx(s)


def test_three_identical_honest_and_one_outlier():
    # the outlier points away from g0 (TS 0); honest copies are rescaled to ‖g0‖
    h = [1.0, 2.0, 2.0]  # ‖h‖ = 3
    u = t([h, h, h, [-1e6, -1e6, 0.0]])

    out = run(FLTrust(), t([2.0, 4.0, 4.0]), u)  # ‖g0‖ = 6, same direction

    torch.testing.assert_close(out.update, t([2.0, 4.0, 4.0]))
    assert out.accepted == [0, 1, 2]


def test_all_negative_cosines_give_a_zero_update_not_a_fallback():
    u = t([[1.0, 1.0], [2.0, 0.5], [0.1, 3.0]])

    out = run(FLTrust(), t([-1.0, -1.0]), u)

    assert out.update.tolist() == [0.0, 0.0]
    assert out.accepted == []


def test_zero_server_update_trusts_nobody():
    out = run(FLTrust(), t([0.0, 0.0]), t([[1.0, 0.0], [0.0, 1.0]]))

    assert out.update.tolist() == [0.0, 0.0]
    assert out.accepted == []


def test_server_update_is_required_and_consumed():
    rule = FLTrust()
    u = rand(3, 4, 0)

    with pytest.raises(InvalidSettingError, match="fltrust needs the server's update"):
        rule(u, torch.ones(3), [0, 1, 2])
    rule.server_update = torch.ones(4, dtype=torch.float64)
    rule(u, torch.ones(3), [0, 1, 2])
    assert rule.server_update is None
    with pytest.raises(InvalidSettingError, match="fltrust needs the server's update"):
        rule(u, torch.ones(3), [0, 1, 2])


def test_malformed_server_update_is_rejected():
    rule = FLTrust()

    with pytest.raises(InvalidSettingError, match="fltrust server_update must be a"):
        rule.server_update = torch.ones(2, 3)
    with pytest.raises(InvalidSettingError, match="NaN"):
        rule.server_update = t([1.0, float("nan")])
    rule.server_update = torch.ones(5, dtype=torch.float64)
    with pytest.raises(InvalidSettingError, match="d=4"):
        rule(rand(3, 4, 0), torch.ones(3), [0, 1, 2])


def test_output_norm_never_exceeds_the_server_norm():
    x = rand(10, 6, seed=1) * 100
    g0 = rand(1, 6, seed=2)[0]

    out = run(FLTrust(), g0, x)

    norm = float(torch.linalg.vector_norm(out.update))
    assert norm <= float(torch.linalg.vector_norm(g0)) + 1e-12


def test_permutation_invariant():
    x = rand(8, 5, seed=3)
    g0 = rand(1, 5, seed=4)[0]
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(4))

    a = run(FLTrust(), g0, x)
    b = run(FLTrust(), g0, x[perm], perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-14, atol=1e-15)
    assert a.accepted == sorted(b.accepted)


def test_planted_outliers_stay_in_the_honest_box():
    # honest updates share a direction with g0; outliers of norm 1e6 point elsewhere or get
    # rescaled to ‖g0‖ — either way the output stays inside the honest box
    n, f = 10, 3
    base = t([1.0, 1.0, 1.0, 1.0])
    honest = base + 0.1 * rand(n - f, 4, seed=5)
    outliers = -1e6 * torch.ones(f, 4, dtype=torch.float64)
    g0 = honest.mean(0)

    out = run(FLTrust(), g0, torch.cat([honest, outliers]))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())
    assert out.accepted == list(range(n - f))


@pytest.mark.parametrize("bad", [0, -5, 2.5])
def test_bad_root_size_names_the_rule(bad):
    with pytest.raises(InvalidSettingError, match="fltrust"):
        build("fltrust", root_size=bad)
