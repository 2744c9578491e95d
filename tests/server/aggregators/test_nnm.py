import numpy as np
import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build_pipeline, build_pre
from server.aggregators.median import Median
from server.aggregators.nnm import NearestNeighbourMixing, nnm_matrix
from server.aggregators.pipeline import Pipeline


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def reference_nnm(x, f):
    """Direct float64 numpy NNM: mean of self plus the n−f−1 nearest others (stable ties)."""
    a = x.numpy()
    n = len(a)
    out = []
    for i in range(n):
        others = sorted((float(((a[i] - a[j]) ** 2).sum()), j) for j in range(n) if j != i)
        rows = [i] + [j for _, j in others[: n - f - 1]]
        out.append(a[rows].mean(0))
    return torch.from_numpy(np.array(out))


def test_hand_computed_shared_example():
    # Prepare: squared distances 0–1 = 27, 1–2 = 27, 0–2 = 108; f=1 → 2 rows per mean
    # row 0: {0, 1} → (2.5, 3.5, 4.5); row 1: 0 and 2 tie at 27, lower index → {1, 0};
    # row 2: {2, 1} → (5.5, 6.5, 7.5)
    u = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

    out = NearestNeighbourMixing(f=1).transform(u, t([1.0, 2.0, 3.0]), [7, 8, 9])

    assert out.updates.tolist() == [[2.5, 3.5, 4.5], [2.5, 3.5, 4.5], [5.5, 6.5, 7.5]]
    assert out.weights.tolist() == [1.0, 2.0, 3.0]
    assert out.client_ids == [7, 8, 9]
    assert out.groups == [[0], [1], [2]]


def test_hand_computed_two_groups_on_a_line():
    # Prepare: points 0, 1, 3, 10, 11 on the x axis; f=2 → 3 nearest (itself included)
    # 0 → {0,1,3}, 1 → {1,0,3}, 3 → {3,1,0}: mean 4/3; 10 → {10,11,3}, 11 → {11,10,3}: 8
    u = t([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [10.0, 0.0], [11.0, 0.0]])

    out = NearestNeighbourMixing(f=2).transform(u, torch.ones(5), list(range(5)))

    expected = t([[4 / 3, 0.0]] * 3 + [[8.0, 0.0]] * 2)
    torch.testing.assert_close(out.updates, expected, rtol=1e-15, atol=0)


def test_f_zero_gives_every_row_the_plain_mean():
    x = rand(6, 4, seed=0)

    out = NearestNeighbourMixing(f=0).transform(x, torch.ones(6), list(range(6)))

    torch.testing.assert_close(out.updates, x.mean(0).expand(6, 4))


def test_itself_is_kept_beside_an_exact_duplicate():
    u = t([[1.0, 1.0], [1.0, 1.0], [4.0, 5.0]])

    mixing = nnm_matrix(u, 2)  # one row per mean: must be the row itself

    assert mixing.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_direct_reference(seed):
    x = rand(9, 5, seed)

    out = NearestNeighbourMixing(f=3).transform(x, torch.ones(9), list(range(9)))

    torch.testing.assert_close(out.updates, reference_nnm(x, 3), rtol=1e-14, atol=1e-15)


def test_pipeline_keeps_accepted_and_ids_per_client():
    x = rand(7, 3, seed=4)
    agg = build_pipeline("krum", {"f": 1}, [{"name": "nnm", "params": {"f": 1}}])

    out = agg(x, torch.ones(7), list(range(20, 27)))

    assert len(out.accepted) == 1
    assert agg.describe() == "nnm(f=1) → krum(f=1)"


def test_round_with_n_not_above_f_is_refused():
    agg = Pipeline([NearestNeighbourMixing(f=3)], Median())

    with pytest.raises(InvalidSettingError, match="nnm needs n > f, got n=3, f=3"):
        agg(rand(3, 2, 0), torch.ones(3), [0, 1, 2])


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True, None])
def test_bad_f_names_the_stage(bad):
    with pytest.raises(InvalidSettingError, match="nnm needs an integer f"):
        build_pre("nnm", f=bad)
