import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build_pre
from server.aggregators.bucketing import Bucketing


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_bucket_means_weights_and_groups():
    # Prepare: rows hold their own index, so each bucket mean is the mean of its members
    n = 7
    x = torch.arange(n, dtype=torch.float64)[:, None].repeat(1, 2)
    w = torch.arange(1, n + 1, dtype=torch.float64)

    out = Bucketing(bucket_size=3, seed=1).transform(x, w, list(range(100, 107)))

    assert out.updates.shape == (3, 2)  # ⌈7/3⌉ buckets, the last has 1 member
    assert [len(g) for g in out.groups] == [3, 3, 1]
    assert sorted(i for g in out.groups for i in g) == list(range(n))
    assert out.client_ids == [0, 1, 2]
    for row, group in enumerate(out.groups):
        members = torch.tensor(group)
        torch.testing.assert_close(out.updates[row], x[members].mean(0))
        assert float(out.weights[row]) == float(w[members].sum())


def test_out_rows():
    assert Bucketing(bucket_size=2).out_rows(10) == 5
    assert Bucketing(bucket_size=3).out_rows(10) == 4
    assert Bucketing(bucket_size=1).out_rows(10) == 10


def test_same_seed_same_buckets_and_draws_advance():
    x = rand(12, 3, seed=0)
    a, b = Bucketing(bucket_size=4, seed=5), Bucketing(bucket_size=4, seed=5)

    first_a = a.transform(x, torch.ones(12), list(range(12))).groups
    first_b = b.transform(x, torch.ones(12), list(range(12))).groups
    second_a = a.transform(x, torch.ones(12), list(range(12))).groups

    assert first_a == first_b
    assert first_a != second_a


def test_generator_state_round_trips():
    x = rand(9, 2, seed=1)
    a = Bucketing(bucket_size=2)
    a.transform(x, torch.ones(9), list(range(9)))
    b = Bucketing(bucket_size=2)
    b.load_state_dict(a.state_dict())

    assert (
        a.transform(x, torch.ones(9), list(range(9))).groups
        == b.transform(x, torch.ones(9), list(range(9))).groups
    )


@pytest.mark.parametrize(
    "params", [{"bucket_size": 0}, {"bucket_size": 1.5}, {"bucket_size": 2, "seed": -1}]
)
def test_bad_settings_name_the_stage(params):
    with pytest.raises(InvalidSettingError, match="bucketing"):
        build_pre("bucketing", **params)
