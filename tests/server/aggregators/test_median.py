import numpy as np
import pytest
import torch

from server.aggregators import build, common
from server.aggregators.median import Median


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_three_identical_honest_and_one_outlier():
    # n=4 is even: per coordinate the middle values are two honest copies → the honest value
    u = t([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1e6, -1e6, 0.0]])

    out = Median()(u, torch.ones(4), [0, 1, 2, 3])

    assert out.update.tolist() == [1.0, 2.0, 3.0]
    assert out.accepted is None


def test_even_n_is_the_mean_of_the_two_middle_values():
    # sorted columns: [1, 2, 10, 20] → (2+10)/2 = 6 ; [-4, -3, 0, 8] → (-3+0)/2 = -1.5
    u = t([[10.0, -3.0], [1.0, 8.0], [20.0, -4.0], [2.0, 0.0]])

    out = Median()(u, torch.ones(4), [0, 1, 2, 3])

    assert out.update.tolist() == [6.0, -1.5]


def test_odd_n_is_the_middle_value():
    u = t([[5.0], [-1.0], [3.0]])

    assert Median()(u, torch.ones(3), [0, 1, 2]).update.tolist() == [3.0]


@pytest.mark.parametrize("n", [1, 2, 5, 8])
def test_agrees_with_numpy_median(n):
    x = rand(n, 13, seed=n)

    out = Median()(x, torch.ones(n), list(range(n)))

    np.testing.assert_array_equal(out.update.numpy(), np.median(x.numpy(), axis=0))


def test_column_chunks_do_not_change_the_result(monkeypatch):
    x = rand(6, 101, seed=3)
    whole = Median()(x, torch.ones(6), list(range(6))).update
    monkeypatch.setattr(common, "CHUNK_ELEMENTS", 12)  # 2 columns per chunk

    chunked = Median()(x, torch.ones(6), list(range(6))).update

    assert torch.equal(whole, chunked)


def test_permutation_invariant():
    x = rand(8, 5, seed=4)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(4))

    a = Median()(x, torch.ones(8), list(range(8)))
    b = Median()(x[perm], torch.ones(8), perm.tolist())

    assert torch.equal(a.update, b.update)


def test_translation_equivariant():
    x = rand(7, 5, seed=5)
    shift = t([1.0, -2.0, 1e6, 0.0, 3.5])

    a = Median()(x, torch.ones(7), list(range(7)))
    b = Median()(x + shift, torch.ones(7), list(range(7)))

    torch.testing.assert_close(b.update, a.update + shift)


def test_planted_outliers_stay_in_the_honest_box():
    n, f = 10, 4
    honest = rand(n - f, 8, seed=6)
    outliers = rand(f, 8, seed=7)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = Median()(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())


def test_takes_no_parameters():
    assert build("median").describe() == "median()"
