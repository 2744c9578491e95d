import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build, flame
from server.aggregators.flame import Flame


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def honest_and_flipped(n_honest, n_bad, d=20, seed=0, bad_scale=1.0):
    base = rand(1, d, seed)[0]
    honest = base + 0.2 * rand(n_honest, d, seed + 1)
    bad = -bad_scale * base + 0.01 * rand(n_bad, d, seed + 2)
    return honest, bad


def test_three_identical_honest_and_one_outlier():
    # Prepare: the outlier points the other way (cosine distance 2): cluster {0,1,2}
    # norms: 3, 3, 3, 1e6 → S = median = 3: the honest copies are not clipped, no noise
    h = [1.0, 2.0, 2.0]
    u = t([h, h, h, [-1e6, 0.0, 0.0]])

    out = Flame(noise_lambda=0.0)(u, torch.ones(4), [4, 5, 6, 7])

    assert out.update.tolist() == h
    assert out.accepted == [4, 5, 6]
    assert out.info["clip_norm"] == 3.0
    assert out.info["noise_std"] == 0.0
    assert out.info["clustered"] is True


def test_hand_computed_clipping_to_the_median_norm():
    # Prepare: same direction (one cluster), norms 1, 2, 4, 8 → S = (2+4)/2 = 3
    # clipped: 1, 2, 3, 3 along e → mean 9/4
    e = torch.tensor([0.6, 0.8], dtype=torch.float64)
    u = torch.stack([1 * e, 2 * e, 4 * e, 8 * e])

    out = Flame(noise_lambda=0.0)(u, torch.ones(4), [0, 1, 2, 3])

    torch.testing.assert_close(out.update, 2.25 * e)
    assert out.info["clip_norm"] == 3.0
    assert out.accepted == [0, 1, 2, 3]


def test_opposite_updates_are_filtered_and_noise_is_logged():
    honest, bad = honest_and_flipped(7, 3, seed=3, bad_scale=50.0)
    x = torch.cat([honest, bad])
    norms = torch.linalg.vector_norm(x, dim=1)
    s = float(torch.sort(norms).values[4:6].mean())

    out = Flame(noise_lambda=0.01, seed=1)(x, torch.ones(10), list(range(10)))

    assert out.accepted == list(range(7))
    assert out.info["noise_lambda"] == 0.01
    assert out.info["clip_norm"] == pytest.approx(s)
    assert out.info["noise_std"] == pytest.approx(0.01 * s)


def test_noise_std_is_lambda_times_s():
    d = 20_000
    e = torch.zeros(d, dtype=torch.float64)
    e[0] = 1.0
    u = torch.stack([2.0 * e, 2.0 * e, 2.0 * e])  # S = 2, no clipping

    out = Flame(noise_lambda=0.05, seed=7)(u, torch.ones(3), [0, 1, 2])

    noise = out.update - 2.0 * e
    assert float(noise.std()) == pytest.approx(0.05 * 2.0, rel=0.03)


def test_seeded_noise_is_deterministic_and_advances():
    x = rand(5, 10, seed=4) + 3.0
    a, b = Flame(seed=2), Flame(seed=2)

    first_a = a(x, torch.ones(5), list(range(5))).update
    first_b = b(x, torch.ones(5), list(range(5))).update
    second_a = a(x, torch.ones(5), list(range(5))).update

    assert torch.equal(first_a, first_b)
    assert not torch.equal(first_a, second_a)


def test_no_cluster_admits_everyone(monkeypatch):
    monkeypatch.setattr(flame, "majority_cluster", lambda dist: None)
    u = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])

    out = Flame(noise_lambda=0.0)(u, torch.ones(3), [0, 1, 2])

    assert out.accepted == [0, 1, 2]
    assert out.info["clustered"] is False
    torch.testing.assert_close(out.update, t([0.0, 1.0 / 3.0]))


def test_single_update_is_admitted():
    out = Flame(noise_lambda=0.0)(t([[1.0, 2.0]]), torch.ones(1), [9])

    assert out.accepted == [9]
    assert out.update.tolist() == [1.0, 2.0]


def test_permutation_invariant():
    honest, bad = honest_and_flipped(6, 3, seed=5)
    x = torch.cat([honest, bad])
    perm = torch.randperm(9, generator=torch.Generator().manual_seed(5))

    a = Flame(seed=1)(x, torch.ones(9), list(range(9)))
    b = Flame(seed=1)(x[perm], torch.ones(9), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-13, atol=1e-14)
    assert a.accepted == sorted(b.accepted)


def test_planted_outliers_stay_in_the_honest_box():
    n, f = 10, 3
    honest, _ = honest_and_flipped(n - f, 0, seed=6)
    outliers = rand(f, 20, seed=8)
    outliers = 1e6 * outliers / torch.linalg.vector_norm(outliers, dim=1, keepdim=True)

    out = Flame(noise_lambda=0.0)(torch.cat([honest, outliers]), torch.ones(n), list(range(n)))

    assert out.accepted == list(range(n - f))
    assert bool((out.update >= honest.min(0).values).all())
    assert bool((out.update <= honest.max(0).values).all())


@pytest.mark.parametrize("params", [{"noise_lambda": -0.1}, {"seed": 1.5}, {"seed": -1}])
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="flame"):
        build("flame", **params)
