import pytest
import torch

from fedsim.errors import InvalidSettingError, UnknownNameError
from server.aggregators import Pipeline, build, build_pipeline
from server.aggregators.bucketing import Bucketing
from server.aggregators.krum import Krum
from server.aggregators.median import Median
from server.aggregators.norm_bound import NormClip


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_bucketing_changes_row_count_and_maps_accepted_back_to_client_ids():
    n = 10
    x = rand(n, 4, seed=0)
    ids = list(range(200, 210))
    agg = Pipeline([Bucketing(bucket_size=2, seed=3)], Krum(f=1))
    stage_copy = Bucketing(bucket_size=2, seed=3)  # same draws, to know the buckets

    out = agg(x, torch.ones(n), ids)

    groups = stage_copy.transform(x, torch.ones(n), ids).groups
    assert out.info["rows"] == 5
    [bucket] = [b for b, g in enumerate(groups) if torch.allclose(out.update, x[g].mean(0))]
    assert out.accepted == sorted(ids[i] for i in groups[bucket])
    assert len(out.accepted) == 2


def test_non_selecting_rule_keeps_accepted_none():
    agg = Pipeline([Bucketing(bucket_size=3)], Median())

    out = agg(rand(9, 3, 1), torch.ones(9), list(range(9)))

    assert out.accepted is None
    assert out.info == {"rows": 3}


def test_stages_compose_in_order():
    # norm clipping first, then bucketing of size n: one bucket holding the clipped mean
    x = t([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    agg = Pipeline([NormClip(max_norm=1.0), Bucketing(bucket_size=3)], Krum(f=0))

    with pytest.raises(InvalidSettingError, match="become 1 rows: krum needs n ≥ 2f\\+3"):
        agg(x, torch.ones(3), [0, 1, 2])

    agg = Pipeline([NormClip(max_norm=1.0), Bucketing(bucket_size=1)], Median())
    out = agg(x, torch.ones(3), [0, 1, 2])
    assert out.update.tolist() == [0.0, 0.8]  # median of (0.6,0.8), (0,1), (0,0)


def test_check_round_uses_the_rows_the_rule_will_get():
    agg = Pipeline([Bucketing(bucket_size=2)], Krum(f=1))  # krum needs ≥ 5 rows

    agg.check_round(9)  # ⌈9/2⌉ = 5
    with pytest.raises(InvalidSettingError, match="the 8 updates become 4 rows: krum needs"):
        agg.check_round(8)
    with pytest.raises(InvalidSettingError, match="krum needs n ≥ 2f\\+3, got n=4"):
        Pipeline([], Krum(f=1)).check_round(4)


def test_build_pipeline_accepts_names_and_mappings():
    pre = [
        {"name": "bucketing", "params": {"bucket_size": 2}},
        {"name": "norm_bound", "params": {"max_norm": 5.0}},
    ]

    agg = build_pipeline("krum", {"f": 1}, pre)

    assert isinstance(agg, Pipeline)
    assert agg.describe() == (
        "bucketing(bucket_size=2, seed=0) → norm_bound(max_norm=5.0) → krum(f=1)"
    )
    assert build_pipeline("median", {}, []).describe() == "median()"
    assert isinstance(build_pipeline("median", None, pre[:1]), Pipeline)


@pytest.mark.parametrize(
    ("pre", "error", "match"),
    [
        (["nope"], UnknownNameError, "unknown pre-aggregation stage 'nope'; known: arc, bucketing"),
        ([{"params": {}}], InvalidSettingError, r"defense.pre\[0\] must be a stage name"),
        ([{"name": "bucketing", "size": 2}], InvalidSettingError, r"defense.pre\[0\]"),
        ([{"name": "bucketing", "params": {"s": 2}}], InvalidSettingError, "has no parameter 's'"),
        (["bucketing"], InvalidSettingError, "bucketing needs parameter 'bucket_size'"),
        ([3], InvalidSettingError, r"defense.pre\[0\]"),
    ],
)
def test_build_pipeline_rejects_bad_pre_items(pre, error, match):
    with pytest.raises(error, match=match):
        build_pipeline("median", {}, pre)


def test_state_dict_round_trips_through_the_pipeline():
    x = rand(8, 3, seed=2)
    pre = [{"name": "bucketing", "params": {"bucket_size": 2}}]
    a = build_pipeline("centered_clipping", {"tau": 0.5}, pre)
    a(x, torch.ones(8), list(range(8)))
    b = build_pipeline("centered_clipping", {"tau": 0.5}, pre)
    b.load_state_dict(a.state_dict())

    next_a = a(x, torch.ones(8), list(range(8))).update
    next_b = b(x, torch.ones(8), list(range(8))).update

    assert torch.equal(next_a, next_b)


def test_pipeline_rejects_non_stages():
    with pytest.raises(InvalidSettingError, match="pipeline stages must be PreStage"):
        Pipeline([build("median")], build("median"))
