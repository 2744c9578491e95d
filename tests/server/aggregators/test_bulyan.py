import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.bulyan import Bulyan


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def reference_bulyan(x, f):
    """Direct plain-Python Bulyan in float64 (recursive Krum, then β closest to the median)."""
    a = x.tolist()
    n, d = len(a), len(a[0])

    def sq(i, j):
        return sum((a[i][k] - a[j][k]) ** 2 for k in range(d))

    remaining, chosen = list(range(n)), []
    for _ in range(n - 2 * f):
        k = min(max(len(remaining) - f - 2, 1), len(remaining) - 1)
        nearest = {i: sorted(sq(i, j) for j in remaining if j != i) for i in remaining}
        # lowest score; ties by the next-nearest distances, then by the lowest row
        best = min(remaining, key=lambda i: (sum(nearest[i][:k]), nearest[i][k:], i))
        chosen.append(best)
        remaining.remove(best)
    chosen.sort()
    beta = len(chosen) - 2 * f
    out = []
    for k in range(d):
        values = sorted(a[i][k] for i in chosen)
        theta = len(values)
        med = (values[(theta - 1) // 2] + values[theta // 2]) / 2
        closest = sorted(values, key=lambda v: (abs(v - med), v))[:beta]
        out.append(sum(closest) / beta)
    return chosen, out


def test_hand_computed_one_dimensional():
    # Prepare: f=1, n=7 → θ=5, β=3. Recursive Krum (k = |R|−f−2, clamped to ≥ 1) picks
    #   |R|=7, k=4: scores 0→90, 1→63, 3→39, 4→42, 8→154, 50→8490, −60→15386 → 3
    #   |R|=6, k=3: 0→81, 1→59, 4→41, 8→129, ...                         → 4
    #   |R|=5, k=2: 0→65, 1→50, 8→113, ...                               → 1
    #   |R|=4, k=1: 0→64, 8→64, 50→1764, −60→3600; the tie goes to the smaller
    #               2nd-nearest distance: 8→42²=1764 < 0→50²=2500          → 8
    #   |R|=3, k=1: 0→2500, 50→2500, −60→3600; 2nd nearest 0→3600 < 50→12100 → 0
    # S = {0, 1, 3, 4, 8}, median 3, the 3 closest are 3, 4, 1 → 8/3
    u = t([[0.0], [1.0], [3.0], [4.0], [8.0], [50.0], [-60.0]])

    out = Bulyan(f=1)(u, torch.ones(7), [10, 11, 12, 13, 14, 15, 16])

    assert out.update.tolist() == pytest.approx([8 / 3], rel=1e-15)
    assert out.accepted == [10, 11, 12, 13, 14]
    assert out.info == {"theta": 5, "beta": 3}


def test_three_identical_honest_and_one_outlier_with_f_zero():
    u = t([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [1e6, -1e6]])

    out = Bulyan(f=0)(u, torch.ones(4), [0, 1, 2, 3])

    # f=0 keeps all (θ = β = n): the mean — Bulyan is only robust for f ≥ the attackers
    assert out.update.tolist() == pytest.approx([(3 + 1e6) / 4, (6 - 1e6) / 4])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("n", "f"), [(7, 1), (12, 2), (15, 3)])
def test_agrees_with_direct_reference(seed, n, f):
    x = rand(n, 5, seed)

    out = Bulyan(f=f)(x, torch.ones(n), list(range(n)))

    chosen, expected = reference_bulyan(x, f)
    assert out.accepted == chosen
    torch.testing.assert_close(out.update, t(expected), rtol=1e-13, atol=1e-15)


def test_permutation_invariant():
    x = rand(11, 6, seed=30)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(3))

    a = Bulyan(f=2)(x, torch.ones(11), list(range(11)))
    b = Bulyan(f=2)(x[perm], torch.ones(11), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-14, atol=1e-15)
    assert a.accepted == sorted(b.accepted)


def test_translation_equivariant():
    x = rand(11, 4, seed=31)
    shift = t([1e4, -2.0, 0.25, 7.0])

    a = Bulyan(f=2)(x, torch.ones(11), list(range(11)))
    b = Bulyan(f=2)(x + shift, torch.ones(11), list(range(11)))

    torch.testing.assert_close(b.update, a.update + shift)


def test_planted_outliers_stay_out_of_the_honest_box():
    n, f = 11, 2
    honest = rand(n - f, 8, seed=32)
    outliers = rand(f, 8, seed=33)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = Bulyan(f=f)(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())
    assert not set(out.accepted) & {n - 2, n - 1}


def test_round_precondition_message():
    with pytest.raises(InvalidSettingError, match=r"bulyan needs n ≥ 4f\+3, got n=10, f=2"):
        Bulyan(f=2)(rand(10, 3, 0), torch.ones(10), list(range(10)))
    Bulyan(f=2).check_round(11)


@pytest.mark.parametrize("bad", [-1, 0.5, None])
def test_bad_f_names_the_rule(bad):
    with pytest.raises(InvalidSettingError, match="bulyan"):
        build("bulyan", f=bad)
