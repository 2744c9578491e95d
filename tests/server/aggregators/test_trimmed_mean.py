import numpy as np
import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.trimmed_mean import TrimmedMean


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_hand_computed_k1():
    # column 0 sorted [1, 2, 3, 4, 100] → drop 1 and 100 → (2+3+4)/3 = 3
    # column 1 sorted [-50, 0, 0, 6, 9] → drop -50 and 9 → (0+0+6)/3 = 2
    u = t([[3.0, 0.0], [100.0, -50.0], [1.0, 9.0], [4.0, 6.0], [2.0, 0.0]])

    out = TrimmedMean(k=1)(u, torch.ones(5), [0, 1, 2, 3, 4])

    assert out.update.tolist() == [3.0, 2.0]
    assert out.accepted is None
    assert out.info == {"k": 1}


def test_three_identical_honest_and_one_outlier_with_beta():
    # beta=0.25, n=4 → k = floor(1.0) = 1: keep the two middle values, both honest
    u = t([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1e6, -1e6, 0.0]])

    out = TrimmedMean(beta=0.25)(u, torch.ones(4), [0, 1, 2, 3])

    assert out.update.tolist() == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(("n", "k"), [(5, 1), (9, 2), (10, 4)])
def test_agrees_with_sorted_numpy(n, k):
    x = rand(n, 11, seed=n)

    out = TrimmedMean(k=k)(x, torch.ones(n), list(range(n)))

    expected = np.sort(x.numpy(), axis=0)[k : n - k].mean(axis=0)
    np.testing.assert_allclose(out.update.numpy(), expected, rtol=1e-14, atol=1e-15)


def test_beta_is_turned_into_k_each_round():
    rule = TrimmedMean(beta=0.2)

    assert rule.trimmed(10) == 2
    assert rule.trimmed(14) == 2
    assert rule.trimmed(15) == 3


def test_k_zero_is_rejected():
    with pytest.raises(InvalidSettingError, match="trimmed_mean needs an integer k >= 1, got 0"):
        TrimmedMean(k=0)


def test_beta_that_trims_nothing_this_round_is_rejected_not_ignored():
    rule = TrimmedMean(beta=0.1)

    with pytest.raises(InvalidSettingError, match="trimmed_mean would trim nothing"):
        rule(rand(9, 3, 0), torch.ones(9), list(range(9)))  # floor(0.9) = 0
    rule.check_round(10)


@pytest.mark.parametrize(("n", "k"), [(4, 2), (5, 3), (2, 1)])
def test_two_k_at_least_n_is_rejected(n, k):
    with pytest.raises(InvalidSettingError, match=f"trimmed_mean needs 2k < n, got n={n}, k={k}"):
        TrimmedMean(k=k)(rand(n, 3, 0), torch.ones(n), list(range(n)))


@pytest.mark.parametrize(
    "params",
    [{}, {"k": 1, "beta": 0.1}, {"beta": 0.0}, {"beta": 0.5}, {"beta": -0.1}, {"k": 1.0}],
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="trimmed_mean"):
        build("trimmed_mean", **params)


def test_permutation_invariant():
    x = rand(9, 6, seed=1)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))

    a = TrimmedMean(k=2)(x, torch.ones(9), list(range(9)))
    b = TrimmedMean(k=2)(x[perm], torch.ones(9), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-15, atol=1e-15)


def test_translation_equivariant():
    x = rand(9, 4, seed=2)
    shift = t([10.0, -3.0, 0.0, 1e5])

    a = TrimmedMean(k=2)(x, torch.ones(9), list(range(9)))
    b = TrimmedMean(k=2)(x + shift, torch.ones(9), list(range(9)))

    torch.testing.assert_close(b.update, a.update + shift)


def test_planted_outliers_stay_in_the_honest_box():
    n, f = 10, 3
    honest = rand(n - f, 8, seed=3)
    outliers = rand(f, 8, seed=4)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = TrimmedMean(k=f)(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())
