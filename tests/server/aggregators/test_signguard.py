import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.signguard import SignGuard, sign_statistics


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def positive_honest(n, d, seed):
    # honest updates are mostly positive: ~90% positive entries
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(d, generator=g, dtype=torch.float64).abs() + 0.3
    return base + 0.2 * torch.randn(n, d, generator=g, dtype=torch.float64)


def test_sign_statistics():
    x = t([[1.0, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, -1.0]])

    assert sign_statistics(x).tolist() == [[0.5, 0.25, 0.25], [0.0, 0.75, 0.25]]


def test_three_identical_honest_and_one_outlier():
    # Prepare: norms 3, 3, 3, √2e6 → M = median = 3; the outlier's ratio ≫ R = 3 and its
    # signs (+, −, 0) differ from the honest (+, +, +): both steps drop it
    h = [1.0, 2.0, 2.0]
    u = t([h, h, h, [1e6, -1e6, 0.0]])

    out = SignGuard(coord_fraction=1.0)(u, torch.ones(4), [0, 1, 2, 3])

    assert out.update.tolist() == h
    assert out.accepted == [0, 1, 2]
    assert out.info["median_norm"] == 3.0


def test_hand_computed_norm_bounds_and_clipping():
    # Prepare: one direction (one sign cluster), norms 0.05, 1, 2, 4, 40 → M = 2
    #   ratios 0.025 (< L=0.1, out), 0.5, 1, 2, 20 (> R=3, out)
    #   kept norms 1, 2, 4 → clipped to 1, 2, 2 → mean norm 5/3
    e = t([0.6, 0.8])
    u = torch.stack([0.05 * e, 1 * e, 2 * e, 4 * e, 40 * e])

    out = SignGuard(coord_fraction=1.0)(u, torch.ones(5), [0, 1, 2, 3, 4])

    assert out.accepted == [1, 2, 3]
    torch.testing.assert_close(out.update, (5 / 3) * e)


def test_sign_flipped_attackers_are_clustered_out():
    n_honest, d = 7, 400
    honest = positive_honest(n_honest, d, seed=1)
    flipped = -honest[:3]  # same norms: the norm filter alone cannot see them
    x = torch.cat([honest, flipped])

    out = SignGuard(seed=0)(x, torch.ones(10), list(range(10)))

    assert out.accepted == list(range(n_honest))


def test_planted_outliers_stay_in_the_honest_box():
    n, f, d = 10, 3, 200
    honest = positive_honest(n - f, d, seed=2)
    g = torch.Generator().manual_seed(3)
    outliers = torch.randn(f, d, generator=g, dtype=torch.float64)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = SignGuard()(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert out.accepted == list(range(n - f))
    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())


def test_seeded_sampling_is_deterministic():
    x = torch.cat([positive_honest(6, 300, seed=4), -positive_honest(2, 300, seed=5)])

    a = SignGuard(seed=3)(x, torch.ones(8), list(range(8)))
    b = SignGuard(seed=3)(x, torch.ones(8), list(range(8)))

    assert torch.equal(a.update, b.update)
    assert a.accepted == b.accepted


def test_permutation_invariant():
    x = torch.cat([positive_honest(6, 300, seed=6), -positive_honest(3, 300, seed=7)])
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(8))

    a = SignGuard(seed=1)(x, torch.ones(9), list(range(9)))
    b = SignGuard(seed=1)(x[perm], torch.ones(9), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-13, atol=1e-14)
    assert a.accepted == sorted(b.accepted)


def test_all_zero_updates_give_a_zero_update():
    out = SignGuard()(torch.zeros(3, 4, dtype=torch.float64), torch.ones(3), [0, 1, 2])

    assert out.update.tolist() == [0.0] * 4
    assert out.accepted == []


@pytest.mark.parametrize(
    "params",
    [
        {"lower": -0.1},
        {"lower": 3.0, "upper": 3.0},
        {"upper": 0.0},
        {"coord_fraction": 0.0},
        {"coord_fraction": 1.5},
        {"seed": -2},
    ],
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="signguard"):
        build("signguard", **params)
