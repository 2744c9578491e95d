import numpy as np
import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.krum import Krum, krum_scores


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def reference_krum(x, f):
    """Direct O(n²) Krum in float64 numpy: argmin of the n−f−2 smallest squared distances."""
    a = x.numpy()
    n = len(a)
    scores = []
    for i in range(n):
        dist = sorted(float(((a[i] - a[j]) ** 2).sum()) for j in range(n) if j != i)
        scores.append(sum(dist[: n - f - 2]))
    return int(np.argmin(scores)), scores  # np.argmin: first minimum


def test_hand_computed_four_points():
    # Prepare: a=(0,0) b=(1,0) c=(0,2) o=(10,0); f=0 → n−f−2 = 2 neighbours
    # squared distances ab=1 ac=4 ao=100 bc=5 bo=81 co=104
    # scores a=1+4=5, b=1+5=6, c=4+5=9, o=81+100=181
    u = t([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [10.0, 0.0]])

    out = Krum(f=0)(u, torch.ones(4), [7, 8, 9, 10])

    assert out.update.tolist() == [0.0, 0.0]
    assert out.accepted == [7]
    assert out.info["score"] == 5.0


def test_three_identical_honest_and_one_outlier():
    # honest rows score 0 (their 2 nearest are identical copies); ties go to the lowest row
    u = t([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1e6, -1e6, 5.0]])

    out = Krum(f=0)(u, torch.tensor([1.0, 1.0, 1.0, 100.0]), [3, 1, 2, 0])

    assert out.update.tolist() == [1.0, 2.0, 3.0]
    assert out.accepted == [3]


def test_scores_use_squared_distances_not_squared_again():
    d = t([[0.0, 4.0, 9.0], [4.0, 0.0, 1.0], [9.0, 1.0, 0.0]])

    assert krum_scores(d, 1).tolist() == [4.0, 1.0, 1.0]
    assert krum_scores(d, 2).tolist() == [13.0, 5.0, 10.0]


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_direct_reference(seed):
    n, f = 11, 3
    x = rand(n, 6, seed)

    out = Krum(f=f)(x, torch.ones(n), list(range(n)))

    best, scores = reference_krum(x, f)
    assert out.accepted == [best]
    assert torch.equal(out.update, x[best])
    assert out.info["score"] == pytest.approx(scores[best], rel=1e-13)


def test_permutation_invariant():
    x = rand(9, 5, seed=10)
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(1))
    ids = list(range(100, 109))

    a = Krum(f=2)(x, torch.ones(9), ids)
    b = Krum(f=2)(x[perm], torch.ones(9), [ids[i] for i in perm])

    assert torch.equal(a.update, b.update)
    assert a.accepted == b.accepted


def test_translation_equivariant_even_far_from_the_origin():
    x = rand(9, 5, seed=11)
    shift = torch.full((5,), 1e7, dtype=torch.float64)

    a = Krum(f=2)(x, torch.ones(9), list(range(9)))
    b = Krum(f=2)(x + shift, torch.ones(9), list(range(9)))

    assert a.accepted == b.accepted
    torch.testing.assert_close(b.update, a.update + shift)


def test_planted_outliers_stay_out_of_the_honest_box():
    n, f = 12, 3
    honest = rand(n - f, 8, seed=12)
    outliers = rand(f, 8, seed=13)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)
    x = torch.cat([honest, outliers])

    out = Krum(f=f)(x, torch.ones(n), list(range(n)))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())
    assert out.accepted[0] < n - f


def test_weights_are_ignored():
    x = rand(7, 3, seed=14)

    a = Krum(f=1)(x, torch.ones(7), list(range(7)))
    b = Krum(f=1)(x, torch.arange(7, dtype=torch.float64) * 1000, list(range(7)))

    assert torch.equal(a.update, b.update)


def test_round_precondition_message():
    rule = Krum(f=2)

    with pytest.raises(InvalidSettingError, match=r"krum needs n ≥ 2f\+3, got n=6, f=2"):
        rule(rand(6, 3, 0), torch.ones(6), list(range(6)))
    rule.check_round(7)


@pytest.mark.parametrize("bad", [-1, 1.5, "2", True, None])
def test_bad_f_is_rejected_naming_the_rule(bad):
    with pytest.raises(InvalidSettingError, match="krum"):
        build("krum", f=bad)


def test_f_is_required():
    with pytest.raises(InvalidSettingError, match="krum needs parameter 'f'"):
        build("krum")
