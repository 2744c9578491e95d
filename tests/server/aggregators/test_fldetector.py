import pytest
import torch

from fedsim.errors import InvalidSettingError, UnknownNameError
from server.aggregators import build
from server.aggregators.common import coordinate_median
from server.aggregators.fldetector import FLDetector, gap_two_clusters, lbfgs_hvp


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rounds_of(n_honest, n_flip, rounds, d=30, seed=0, noise=0.05):
    """Honest: a fixed direction a plus small noise; flippers: ±(a + noise), a fresh sign each."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, generator=g, dtype=torch.float64)
    for _ in range(rounds):
        honest = a + noise * torch.randn(n_honest, d, generator=g, dtype=torch.float64)
        signs = torch.where(torch.rand(n_flip, 1, generator=g) < 0.5, -1.0, 1.0)
        flips = signs.to(torch.float64) * (
            a + noise * torch.randn(n_flip, d, generator=g, dtype=torch.float64)
        )
        yield torch.cat([honest, flips])


def test_lbfgs_one_pair_by_hand():
    # s = e₁, y = 2e₁ → σ = 2 and the BFGS update from σI keeps B = 2I
    s, y = t([[1.0, 0.0]]), t([[2.0, 0.0]])

    assert lbfgs_hvp(s, y, t([0.0, 1.0])).tolist() == [0.0, 2.0]
    assert lbfgs_hvp(s, y, t([3.0, 0.0])).tolist() == [6.0, 0.0]


def test_lbfgs_satisfies_the_latest_secant_equation_on_a_quadratic():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(6, 6, generator=g, dtype=torch.float64)
    hessian = q @ q.T + 6 * torch.eye(6, dtype=torch.float64)
    s = torch.randn(3, 6, generator=g, dtype=torch.float64)
    y = s @ hessian  # yₖ = H sₖ

    torch.testing.assert_close(lbfgs_hvp(s, y, s[-1]), y[-1])


def test_gap_statistic_splits_two_groups_and_keeps_one_spread_group():
    g = torch.Generator().manual_seed(0)

    two, top, stats = gap_two_clusters(t([0.05, 0.06, 0.05, 0.07, 0.06, 0.4, 0.42]), 20, g)
    one, none, _ = gap_two_clusters(torch.linspace(0, 1, 10, dtype=torch.float64), 20, g)

    assert two and top == [5, 6]
    assert stats["gap1"] < stats["gap2"] - stats["s2"]
    assert not one and none == []


def test_hand_computed_normalised_errors():
    # Prepare: window 1, three clients; round 0 all send 1 (median 1), round 1 all send 2
    # (median 2) → one pair s = 1, y = 2 − 1 = 1 → H̃ = y/s = 1; w² − w¹ = 2 → H̃·2 = 2
    # round 2: prediction 2 + 2 = 4 for everyone; updates 4, 5, 7 → errors 0, 1, 3 → /4
    rule = FLDetector(window=1)
    rule(t([[1.0], [1.0], [1.0]]), torch.ones(3), [0, 1, 2])
    rule(t([[2.0], [2.0], [2.0]]), torch.ones(3), [0, 1, 2])

    out = rule(t([[4.0], [5.0], [7.0]]), torch.ones(3), [0, 1, 2])

    assert out.info["scores"] == {0: 0.0, 1: 0.25, 2: 0.75}


def test_sign_flipping_group_is_flagged_after_the_window_and_stays_out():
    rule = FLDetector(window=5, seed=0)
    ids = list(range(11))  # 8 honest, 3 flippers (8, 9, 10)
    flagged_at = None
    for r, x in enumerate(rounds_of(8, 3, rounds=12)):
        out = rule(x, torch.ones(11), ids)
        if out.info["flagged"] and flagged_at is None:
            flagged_at = r
            assert out.info["flagged"] == [8, 9, 10]
        if flagged_at is not None:
            assert out.info["excluded"] == [8, 9, 10]
            assert out.accepted == list(range(8))
            torch.testing.assert_close(out.update, coordinate_median(x[:8]))

    assert flagged_at is not None and 6 <= flagged_at <= 8  # errors from round 2, N = 5


def test_uniform_honest_group_is_not_flagged():
    rule = FLDetector(window=5, seed=0)
    tested = 0

    for x in rounds_of(30, 0, rounds=12, seed=3):
        out = rule(x, torch.ones(30), list(range(30)))

        tested += "scores" in out.info
        assert out.info["excluded"] == []
        assert out.accepted == list(range(30))
    assert tested == 6  # rounds 6..11 ran the gap statistic


def test_gap_statistic_false_positive_rate_on_one_gaussian_group():
    # one unimodal group of 30 scores: two clusters reported in well under 5% of draws
    g = torch.Generator().manual_seed(7)
    draws = [torch.randn(30, generator=g, dtype=torch.float64) for _ in range(100)]

    positives = sum(gap_two_clusters(x, 20, g)[0] for x in draws)

    assert positives <= 3


def test_only_clients_of_consecutive_rounds_are_predicted():
    rule = FLDetector(window=1)
    rule(t([[1.0], [1.0], [1.0]]), torch.ones(3), [0, 1, 2])
    rule(t([[2.0], [2.0], [2.0]]), torch.ones(3), [0, 1, 3])  # client 3 is new

    out = rule(t([[4.0], [5.0], [7.0], [9.0]]), torch.ones(4), [0, 1, 3, 2])

    assert sorted(out.info["scores"]) == [0, 1, 3]  # client 2 skipped round 1


def test_state_round_trips():
    rule = FLDetector(window=3, seed=2)
    data = list(rounds_of(6, 2, rounds=7, seed=5))
    for x in data[:5]:
        rule(x, torch.ones(8), list(range(8)))
    copy = FLDetector(window=3, seed=2)
    copy.load_state_dict(rule.state_dict())

    for x in data[5:]:
        a, b = rule(x, torch.ones(8), list(range(8))), copy(x, torch.ones(8), list(range(8)))
        assert torch.equal(a.update, b.update)
        assert a.info == b.info


def test_base_rule_and_its_settings():
    u = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

    out = build("fldetector", base="fedavg")(u, t([1.0, 1.0, 2.0]), [0, 1, 2])
    krum = build("fldetector", base="krum", base_params={"f": 0})(u, torch.ones(3), [0, 1, 2])

    assert out.update.tolist() == [4.75, 5.75, 6.75]
    assert krum.accepted == [0]  # every Krum score is 27: ties go to the lowest row


def test_dimension_change_is_rejected():
    rule = FLDetector()
    rule(torch.ones(3, 2, dtype=torch.float64), torch.ones(3), [0, 1, 2])

    with pytest.raises(InvalidSettingError, match="fldetector holds history of dimension 2"):
        rule(torch.ones(3, 4, dtype=torch.float64), torch.ones(3), [0, 1, 2])


@pytest.mark.parametrize(
    "params",
    [
        {"window": 0},
        {"references": 1},
        {"seed": -1},
        {"base": "fldetector"},
        {"base": "krum", "base_params": {"g": 1}},
        {"base": "krum"},
    ],
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="fldetector"):
        build("fldetector", **params)


def test_unknown_base_lists_the_rules():
    with pytest.raises(UnknownNameError, match="krum"):
        build("fldetector", base="nope")


def test_zero_aggregates_add_no_curvature_pair():
    # all-zero rounds: w does not move, so no (s, y) pair and no prediction, never NaN
    rule = FLDetector(window=2)
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    for _ in range(4):
        out = rule(zeros, torch.ones(4), [0, 1, 2, 3])

        assert out.update.tolist() == [0.0, 0.0, 0.0]
        assert "scores" not in out.info
    assert rule.state_dict()["s"] == []
