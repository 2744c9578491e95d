"""Contract tests over every registered rule."""

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import accepts, build, names, pre_names

# The smallest valid settings of each rule; a new rule must be added here.
MINIMAL = {
    "bulyan": {"f": 1},
    "centered_clipping": {},
    "deepsight": {"output_size": 2, "penultimate_size": 2},
    "dnc": {"f": 1, "subsample_dim": 5},
    "fedavg": {},
    "fldetector": {"window": 2},
    "flame": {},
    "fltrust": {},
    "foolsgold": {},
    "geometric_median": {},
    "krum": {"f": 1},
    "median": {},
    "multikrum": {"f": 1},
    "norm_bound": {"max_norm": 1.0, "sigma": 0.01},
    "rlr": {"threshold": 2},
    "signguard": {},
    "trimmed_mean": {"k": 1},
}
SELECTING = {
    "krum",
    "multikrum",
    "bulyan",
    "deepsight",
    "flame",
    "dnc",
    "fltrust",
    "fldetector",
    "foolsgold",
    "signguard",
}


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def call(rule, name, x, ids, seed=0):
    if name == "fltrust":
        rule.server_update = x.mean(0) + 0.1 * rand(1, x.shape[1], seed)[0]
    return rule(x, torch.ones(x.shape[0]), ids)


def test_every_rule_has_minimal_settings():
    assert sorted(MINIMAL) == names()
    assert pre_names() == ["arc", "bucketing", "nnm", "norm_bound"]


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_build_rejects_unknown_params_naming_the_rule(name):
    with pytest.raises(InvalidSettingError, match=f"{name} has no parameter 'bogus'; allowed: "):
        build(name, **MINIMAL[name], bogus=1)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_output_contract(name):
    x = rand(9, 12, seed=1)
    ids = list(range(50, 59))

    out = call(build(name, **MINIMAL[name]), name, x, ids)

    assert out.update.shape == (12,)
    assert out.update.dtype == torch.float64
    assert bool(torch.isfinite(out.update).all())
    if name in SELECTING:
        assert out.accepted is not None and set(out.accepted) <= set(ids)
    else:
        assert out.accepted is None


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_same_settings_same_numbers_and_state_round_trips(name):
    x, y = rand(9, 12, seed=2), rand(9, 12, seed=3)
    ids = list(range(9))
    a, b = build(name, **MINIMAL[name]), build(name, **MINIMAL[name])

    first = call(a, name, x, ids).update
    assert torch.equal(first, call(b, name, x, ids).update)
    c = build(name, **MINIMAL[name])
    c.load_state_dict(a.state_dict())
    assert torch.equal(call(a, name, y, ids).update, call(c, name, y, ids).update)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_non_finite_updates_are_rejected(name):
    x = rand(9, 4, seed=4)
    x[2, 1] = float("nan")

    with pytest.raises(InvalidSettingError, match="NaN"):
        call(build(name, **MINIMAL[name]), name, x, list(range(9)))


@pytest.mark.parametrize("name", [n for n in sorted(MINIMAL) if "seed" in accepts(n)])
def test_seed_is_validated_where_accepted(name):
    with pytest.raises(InvalidSettingError, match=f"{name} needs an integer seed"):
        build(name, **MINIMAL[name], seed=-1)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_rules_leave_their_input_matrix_untouched(name):
    # The vectorized runtime hands a rule the rows of the round's update matrix in place
    # (server.replies.stack_updates): a rule that wrote into it would change every update the
    # probes read afterwards.
    x = rand(9, 8, seed=5)
    before = x.clone()
    rule = build(name, **MINIMAL[name])
    for _ in range(3):  # stateful rules (FoolsGold, FLDetector) on their later rounds too
        call(rule, name, x, list(range(9)))
    assert torch.equal(x, before)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_finite_true_only_skips_the_input_scan(name):
    x = rand(9, 8, seed=6)
    checked = call_finite(build(name, **MINIMAL[name]), name, x)
    assert torch.equal(
        checked.update, call(build(name, **MINIMAL[name]), name, x, list(range(9))).update
    )


def call_finite(rule, name, x):
    if name == "fltrust":
        rule.server_update = x.mean(0) + 0.1 * rand(1, x.shape[1], 0)[0]
    return rule(x, torch.ones(x.shape[0]), list(range(x.shape[0])), finite=True)
