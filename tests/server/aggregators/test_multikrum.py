import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.multikrum import MultiKrum


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def reference_multikrum(x, f, m):
    """Direct O(n²) Multi-Krum in float64 numpy: plain mean of the m lowest scores."""
    a = x.numpy()
    n = len(a)
    scores = []
    for i in range(n):
        dist = sorted(float(((a[i] - a[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(dist[: n - f - 2]))
    chosen = sorted(sorted(range(n), key=lambda i: (scores[i], i))[:m])
    return chosen, a[chosen].mean(axis=0)


def test_hand_computed_four_points():
    # a=(0,0) b=(1,0) c=(0,2) o=(10,0), f=0: scores a=5 b=6 c=9 o=181 (see test_krum)
    u = t([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 0.0]])

    two = MultiKrum(f=0, m=2)(u, torch.ones(4), [0, 1, 2, 3])
    three = MultiKrum(f=0, m=3)(u, torch.ones(4), [0, 1, 2, 3])

    assert two.update.tolist() == [0.5, 0.0]
    assert two.accepted == [0, 1]
    assert three.update.tolist() == pytest.approx([1 / 3, 2 / 3])
    assert three.accepted == [0, 1, 2]


def test_default_m_is_n_minus_f_and_the_mean_is_unweighted():
    # Prepare: n=5, f=1 → m=4; the outlier is dropped, the honest weights do not matter
    u = t([[1.0], [2.0], [3.0], [4.0], [1e6]])

    out = MultiKrum(f=1)(u, torch.tensor([1.0, 1.0, 1.0, 1000.0, 1.0]), [0, 1, 2, 3, 4])

    assert out.update.tolist() == [2.5]
    assert out.accepted == [0, 1, 2, 3]
    assert out.info["m"] == 4


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("m", [1, 4, None])
def test_agrees_with_direct_reference(seed, m):
    n, f = 10, 2
    x = rand(n, 7, seed)

    out = MultiKrum(f=f, m=m)(x, torch.rand(n, dtype=torch.float64), list(range(n)))

    chosen, mean = reference_multikrum(x, f, n - f if m is None else m)
    assert out.accepted == chosen
    torch.testing.assert_close(out.update, torch.from_numpy(mean), rtol=1e-13, atol=1e-15)


def test_permutation_invariant():
    x = rand(9, 5, seed=20)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(2))

    a = MultiKrum(f=2)(x, torch.ones(9), list(range(9)))
    b = MultiKrum(f=2)(x[perm], torch.ones(9), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-14, atol=1e-15)
    assert a.accepted == sorted(b.accepted)


def test_translation_equivariant():
    x = rand(9, 4, seed=21)
    shift = t([3.0, -7.0, 1e5, 0.5])

    a = MultiKrum(f=2, m=3)(x, torch.ones(9), list(range(9)))
    b = MultiKrum(f=2, m=3)(x + shift, torch.ones(9), list(range(9)))

    assert a.accepted == b.accepted
    torch.testing.assert_close(b.update, a.update + shift)


def test_planted_outliers_stay_out_of_the_honest_box():
    n, f = 12, 3
    honest = rand(n - f, 8, seed=22)
    outliers = rand(f, 8, seed=23)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = MultiKrum(f=f)(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())
    assert out.accepted == list(range(n - f))


def test_round_checks():
    with pytest.raises(InvalidSettingError, match=r"multikrum needs n ≥ 2f\+3, got n=4, f=1"):
        MultiKrum(f=1).check_round(4)
    with pytest.raises(InvalidSettingError, match="multikrum needs m ≤ n, got n=5, m=6"):
        MultiKrum(f=1, m=6).check_round(5)


@pytest.mark.parametrize("params", [{"f": -1}, {"f": 1, "m": 0}, {"f": 1, "m": 2.5}])
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="multikrum"):
        build("multikrum", **params)
