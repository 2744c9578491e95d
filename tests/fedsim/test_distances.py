import numpy as np
import pytest
import torch

from fedsim import distances
from fedsim.distances import cosine_distances, pairwise_sq_distances, sq_distances_to


def rand(n, d, seed=0, scale=1.0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    return offset + scale * torch.randn(n, d, generator=g, dtype=torch.float64)


def numpy_sq(x):
    # direct O(n²) differences in float64
    a = x.numpy()
    n = len(a)
    return np.array([[float(((a[i] - a[j]) ** 2).sum()) for j in range(n)] for i in range(n)])


def test_hand_computed_three_points():
    u = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], dtype=torch.float64)

    out = pairwise_sq_distances(u)

    assert out.tolist() == [[0.0, 25.0, 100.0], [25.0, 0.0, 25.0], [100.0, 25.0, 0.0]]
    assert out.dtype == torch.float64


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_matches_direct_differences(n):
    x = rand(n, 50, seed=n)

    out = pairwise_sq_distances(x)

    np.testing.assert_allclose(out.numpy(), numpy_sq(x), rtol=1e-13, atol=0)
    assert torch.equal(out, out.T)
    assert bool((out.diagonal() == 0).all())


def test_exact_where_the_gram_expansion_cancels():
    # Prepare: updates 1e-3 apart around 1e8 — ‖x‖²+‖y‖²−2x·y loses every digit here
    x = rand(30, 200, seed=1, scale=1e-3, offset=1e8)
    gram = (x * x).sum(1)[:, None] + (x * x).sum(1)[None] - 2 * x @ x.T
    reference = numpy_sq(x)

    out = pairwise_sq_distances(x)

    np.testing.assert_allclose(out.numpy(), reference, rtol=1e-12)
    assert np.abs(gram.numpy() - reference).max() > 1e3 * reference.max()  # the pitfall is real


def test_chunked_path_gives_the_same_distances(monkeypatch):
    x = rand(9, 1000, seed=2)
    whole = pairwise_sq_distances(x)
    monkeypatch.setattr(distances, "CHUNK_ELEMENTS", 50)  # 5 coordinates per chunk

    chunked = pairwise_sq_distances(x)
    to_point = sq_distances_to(x, x[3])

    torch.testing.assert_close(chunked, whole, rtol=1e-13, atol=0)
    torch.testing.assert_close(to_point, whole[3], rtol=1e-13, atol=1e-300)


def test_row_scale_scales_rows_without_a_copy():
    x = rand(6, 20, seed=3)
    s = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0, 0.0], dtype=torch.float64)

    out = pairwise_sq_distances(x, row_scale=s)

    np.testing.assert_allclose(out.numpy(), numpy_sq(x * s[:, None]), rtol=1e-13)


def test_sq_distances_to_point():
    u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)

    out = sq_distances_to(u, torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64))

    assert out.tolist() == [0.0, 4.0, 25.0]


def test_cosine_distances_match_numpy_and_handle_zero_rows():
    x = rand(8, 30, seed=4)
    x[5] = 0.0
    a = x.numpy()
    norms = np.linalg.norm(a, axis=1)

    out = cosine_distances(x).numpy()

    for i in range(8):
        for j in range(8):
            if i == j:
                expected = 0.0
            elif 5 in (i, j):
                expected = 1.0  # a zero row has no direction: cosine 0
            else:
                expected = 1.0 - a[i] @ a[j] / (norms[i] * norms[j])
            assert out[i, j] == pytest.approx(expected, abs=1e-12)


def test_cosine_distance_of_parallel_updates_is_exactly_zero():
    x = torch.tensor([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [-1.0, -2.0, -3.0]], dtype=torch.float64)

    out = cosine_distances(x)

    assert out[0, 1] == 0.0
    assert out[0, 2] == pytest.approx(2.0, abs=1e-15)
