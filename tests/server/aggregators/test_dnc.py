import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.dnc import DnC


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_three_identical_honest_and_one_outlier():
    # Prepare: centred rows are −¼o, −¼o, −¼o, ¾o (o = outlier − h): the top singular
    # direction is o, scores 1/16, 1/16, 1/16, 9/16 (×‖o‖²): f=1 drops the outlier
    h = [1.0, 2.0, 3.0]
    u = t([h, h, h, [1e6, -1e6, 0.0]])

    out = DnC(f=1)(u, torch.ones(4), [4, 5, 6, 7])

    assert out.update.tolist() == h
    assert out.accepted == [4, 5, 6]
    assert out.info == {"removed_per_iter": 1}


def test_filter_fraction_scales_the_number_removed():
    # c·f = 1.5·2 = 3 → floor 3 removed; the mean of the other 5 is unweighted
    x = t([[0.0], [1.0], [-1.0], [0.5], [-0.5], [10.0], [11.0], [-12.0]])

    out = DnC(f=2, filter_frac=1.5)(x, torch.arange(1, 9, dtype=torch.float64), list(range(8)))

    assert out.accepted == [0, 1, 2, 3, 4]
    assert out.update.tolist() == [0.0]


def test_planted_outliers_are_removed_with_subsampling():
    # Prepare: d > subsample_dim, several iterations; the f colluding outliers of norm 1e6
    # share a direction (DnC targets updates that deviate consistently), so every iteration
    # drops them
    n, f, d = 12, 3, 500
    honest = 0.1 * rand(n - f, d, seed=1) + 1.0
    direction = rand(1, d, seed=2)
    direction = direction / torch.linalg.vector_norm(direction)
    outliers = 1e6 * direction + rand(f, d, seed=3)

    out = DnC(f=f, subsample_dim=50, niters=3, seed=4)(
        torch.cat([honest, outliers]), torch.ones(n), list(range(n))
    )

    assert out.accepted == list(range(n - f))
    torch.testing.assert_close(out.update, honest.mean(0))
    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())


def test_seeded_sampling_is_deterministic_and_advances():
    x = rand(10, 300, seed=5)
    a, b = DnC(f=2, subsample_dim=20, seed=1), DnC(f=2, subsample_dim=20, seed=1)

    ids = list(range(10))
    assert a(x, torch.ones(10), ids).accepted == b(x, torch.ones(10), ids).accepted
    before = a.state_dict()["generator"].clone()
    a(x, torch.ones(10), list(range(10)))
    assert not torch.equal(before, a.state_dict()["generator"])


def test_empty_intersection_gives_a_zero_update():
    # Prepare: n=3, c·f = 2 → one survivor per iteration; on coordinate 0 (values 0, 5, −5,
    # mean 0) it is row 0, on coordinate 1 (5, 0, −5) row 1. Twenty one-coordinate draws
    # see both coordinates (all-equal draws have probability 2⁻¹⁹), so nobody survives all.
    x = t([[0.0, 5.0], [5.0, 0.0], [-5.0, -5.0]])

    out = DnC(f=2, subsample_dim=1, niters=20, seed=0)(x, torch.ones(3), [0, 1, 2])

    assert out.accepted == []
    assert out.update.tolist() == [0.0, 0.0]


def test_permutation_invariant():
    x = rand(9, 30, seed=6)
    x[7:] *= 50
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(6))

    a = DnC(f=2)(x, torch.ones(9), list(range(9)))
    b = DnC(f=2)(x[perm], torch.ones(9), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-13, atol=1e-14)
    assert a.accepted == sorted(b.accepted)


def test_round_precondition():
    with pytest.raises(InvalidSettingError, match="dnc needs n > floor"):
        DnC(f=3).check_round(3)
    DnC(f=3).check_round(4)


@pytest.mark.parametrize(
    "params",
    [
        {"f": -1},
        {"f": 1, "subsample_dim": 0},
        {"f": 1, "niters": 0},
        {"f": 1, "filter_frac": 0.0},
        {"f": 1, "seed": "x"},
    ],
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="dnc"):
        build("dnc", **params)
