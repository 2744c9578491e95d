import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.geometric_median import GeometricMedian


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def objective(v, a, w):
    return float(w @ np.linalg.norm(a - v, axis=1))


def test_symmetric_square_has_its_centre_as_median():
    # the weighted mean (start) is already the minimiser: one step, no move
    u = t([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])

    out = GeometricMedian()(u, torch.ones(4), [0, 1, 2, 3])

    assert out.update.tolist() == [0.0, 0.0]
    assert out.info["converged"] is True
    assert out.info["objective"] == pytest.approx(2**0.5)  # Σ αᵢ‖v − Δᵢ‖ with Σ αᵢ = 1


def test_three_identical_honest_and_one_outlier():
    # 3/4 of the weight sits on one point: it is the geometric median
    u = t([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1e6, -1e6, 0.0]])

    out = GeometricMedian(tol=1e-12)(u, torch.ones(4), [0, 1, 2, 3])

    torch.testing.assert_close(out.update, t([1.0, 2.0, 3.0]), rtol=0, atol=1e-6)
    assert out.accepted is None


def test_collinear_points_give_the_one_dimensional_median():
    u = t([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0], [4.0, 4.0], [100.0, 100.0]])

    out = GeometricMedian(tol=1e-12, max_iter=1000)(u, torch.ones(5), list(range(5)))

    torch.testing.assert_close(out.update, t([3.0, 3.0]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_converges_to_the_minimiser_of_the_weighted_distance_sum(seed):
    n, d = 9, 4
    x = rand(n, d, seed)
    w = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) + 0.1
    a, wn = x.numpy(), (w / w.sum()).numpy()

    out = GeometricMedian(tol=1e-12, max_iter=10_000)(x, w, list(range(n)))

    res = minimize(objective, a.mean(axis=0), args=(a, wn), method="BFGS", options={"gtol": 1e-12})
    assert out.info["converged"] is True
    assert objective(out.update.numpy(), a, wn) <= res.fun + 1e-10
    np.testing.assert_allclose(out.update.numpy(), res.x, atol=1e-5)


def test_starts_at_the_weighted_mean_so_one_step_does_not_shrink_to_zero():
    # far from the origin, a single step from the weighted mean stays near the data
    x = rand(6, 3, seed=9) + 1e3

    out = GeometricMedian(max_iter=1)(x, torch.ones(6), list(range(6)))

    assert bool((out.update > 990).all())
    assert out.info["iterations"] == 1


def test_example_counts_weight_the_median():
    u = t([[0.0], [10.0]])

    heavy_right = GeometricMedian(tol=1e-12)(u, t([1.0, 3.0]), [0, 1])

    torch.testing.assert_close(heavy_right.update, t([10.0]), rtol=0, atol=1e-6)


def test_permutation_invariant():
    x = rand(8, 5, seed=10)
    w = torch.arange(1, 9, dtype=torch.float64)
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(5))

    a = GeometricMedian(tol=1e-10)(x, w, list(range(8)))
    b = GeometricMedian(tol=1e-10)(x[perm], w[perm], perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-12, atol=1e-12)


def test_translation_equivariant():
    x = rand(8, 3, seed=11)
    shift = t([1e4, -5.0, 0.5])

    a = GeometricMedian(tol=1e-12)(x, torch.ones(8), list(range(8)))
    b = GeometricMedian(tol=1e-12)(x + shift, torch.ones(8), list(range(8)))

    torch.testing.assert_close(b.update, a.update + shift, rtol=0, atol=1e-7)


def test_planted_outliers_move_it_a_bounded_amount():
    # breakdown point 1/2: f < n/2 outliers of norm 1e6 shift it by O(honest spread), not 1e6
    n, f = 10, 3
    honest = rand(n - f, 8, seed=12)
    outliers = rand(f, 8, seed=13)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)
    clean = GeometricMedian()(honest, torch.ones(n - f), list(range(n - f))).update

    out = GeometricMedian()(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    spread = float(torch.linalg.vector_norm(honest - clean, dim=1).max())
    assert float(torch.linalg.vector_norm(out.update - clean)) < 2 * spread


@pytest.mark.parametrize(
    "params", [{"nu": 0.0}, {"nu": -1.0}, {"tol": 0.0}, {"max_iter": 0}, {"max_iter": 2.0}]
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="geometric_median"):
        build("geometric_median", **params)
