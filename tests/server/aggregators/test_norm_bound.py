import math

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build, build_pre
from server.aggregators.norm_bound import NormBound, NormClip


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_hand_computed_clip_then_weighted_mean():
    # M=1: (3,4) → (0.6,0.8); (0.3,0.4) is kept; weights 1 and 3 → (0.6+0.9, 0.8+1.2)/4
    u = t([[3.0, 4.0], [0.3, 0.4]])

    out = NormBound(max_norm=1.0)(u, t([1.0, 3.0]), [0, 1])

    torch.testing.assert_close(out.update, t([0.375, 0.5]), rtol=1e-15, atol=0)
    assert out.info == {"clipped": 1, "sigma": 0.0}
    assert out.accepted is None


def test_three_identical_honest_and_one_outlier():
    # the outlier is scaled to norm M=√14 = ‖h‖; the aggregate moves by at most M/4
    h = [1.0, 2.0, 3.0]
    outlier = [1e6, -1e6, 0.0]
    u = t([h, h, h, outlier])

    out = NormBound(max_norm=math.sqrt(14))(u, torch.ones(4), [0, 1, 2, 3])

    expected = (3 * t(h) + math.sqrt(14) * t(outlier) / math.sqrt(2e12)) / 4
    torch.testing.assert_close(out.update, expected)


def test_noise_has_the_requested_std_and_advances_round_by_round():
    d = 20_000
    u = torch.zeros(2, d, dtype=torch.float64)
    rule = NormBound(max_norm=1.0, sigma=0.1, seed=3)

    first = rule(u, torch.ones(2), [0, 1]).update
    second = rule(u, torch.ones(2), [0, 1]).update
    again = NormBound(max_norm=1.0, sigma=0.1, seed=3)(u, torch.ones(2), [0, 1]).update

    assert float(first.std()) == pytest.approx(0.1, rel=0.03)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_generator_state_round_trips():
    u = rand(3, 10, seed=1)
    rule = NormBound(max_norm=1.0, sigma=1.0)
    rule(u, torch.ones(3), [0, 1, 2])
    state = rule.state_dict()
    expected = rule(u, torch.ones(3), [0, 1, 2]).update

    other = NormBound(max_norm=1.0, sigma=1.0)
    other.load_state_dict(state)

    assert torch.equal(other(u, torch.ones(3), [0, 1, 2]).update, expected)


def test_permutation_invariant():
    x = rand(6, 4, seed=2) * 3
    w = torch.arange(1, 7, dtype=torch.float64)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(2))

    a = NormBound(max_norm=2.0)(x, w, list(range(6)))
    b = NormBound(max_norm=2.0)(x[perm], w[perm], perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-14, atol=1e-15)


def test_pre_stage_clips_rows_and_keeps_ids_and_weights():
    u = t([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    w = t([1.0, 2.0, 3.0])

    out = NormClip(max_norm=1.0).transform(u, w, [5, 6, 7])

    torch.testing.assert_close(out.updates, t([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))
    assert torch.equal(out.weights, w)
    assert out.client_ids == [5, 6, 7]
    assert out.groups == [[0], [1], [2]]


@pytest.mark.parametrize(
    "params", [{"max_norm": 0.0}, {"max_norm": 1.0, "sigma": -1.0}, {"max_norm": 1.0, "seed": -1}]
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="norm_bound"):
        build("norm_bound", **params)


def test_max_norm_is_required_for_rule_and_stage():
    with pytest.raises(InvalidSettingError, match="norm_bound needs parameter 'max_norm'"):
        build("norm_bound")
    with pytest.raises(InvalidSettingError, match="norm_bound needs parameter 'max_norm'"):
        build_pre("norm_bound")
    with pytest.raises(InvalidSettingError, match="norm_bound has no parameter 'sigma'"):
        build_pre("norm_bound", max_norm=1.0, sigma=0.1)
