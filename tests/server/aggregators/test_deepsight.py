import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.deepsight import (
    DeepSight,
    neups,
    suspicious_labels,
    threshold_exceedings,
)

C, H, FEATURES = 10, 4, 20  # classes, output-layer inputs, coordinates before the output layer
D = FEATURES + C * H + C


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def honest(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, generator=g, dtype=torch.float64)


def backdoor(n, target=7, seed=100):
    """Identical sybil updates whose output-layer energy sits on one label."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(D, generator=g, dtype=torch.float64)
    weight = 0.01 * torch.randn(C, H, generator=g, dtype=torch.float64)
    bias = 0.01 * torch.randn(C, generator=g, dtype=torch.float64)
    weight[target] = 3.0
    bias[target] = 3.0
    x[FEATURES:] = torch.cat([weight.reshape(-1), bias])
    return x.expand(n, D).clone()


def test_hand_computed_neups_and_exceedings():
    # Prepare: C=3, h=2; weights rows (1,1), (0,0), (2,0) and bias (0,1,1) → ε = (2, 1, 3)
    # NEUP = (4, 1, 9)/14; ξ = max(0.01, 1/3)·9/14 = 3/14 → 4/14 and 9/14 exceed → TE = 2
    w = t([[[1.0, 1.0], [0.0, 0.0], [2.0, 0.0]]])
    b = t([[0.0, 1.0, 1.0]])

    c = neups(w, b)

    torch.testing.assert_close(c, t([[4 / 14, 1 / 14, 9 / 14]]))
    assert threshold_exceedings(c) == [2]


def test_exceeding_is_strict_and_zero_energy_has_no_exceedings():
    # NEUP (0.5, 0.5): ξ = 0.5·0.5 = 0.25 → both exceed; all-zero → NEUPs 0, nothing exceeds
    c = neups(t([[[1.0], [1.0]], [[0.0], [0.0]]]), t([[0.0, 0.0], [0.0, 0.0]]))

    assert c.tolist() == [[0.5, 0.5], [0.0, 0.0]]
    assert threshold_exceedings(c) == [2, 0]


def test_classification_boundary_is_half_the_median_inclusive():
    # median 10 → boundary 5; even count: median (4 + 6)/2 = 5 → boundary 2.5
    assert suspicious_labels([10, 10, 10, 1, 5]) == [False, False, False, True, True]
    assert suspicious_labels([2, 4, 6, 8]) == [True, False, False, False]


def test_backdoor_sybils_are_rejected():
    x = torch.cat([honest(7, seed=0), backdoor(3)])
    ids = list(range(10, 20))

    out = DeepSight(output_size=C, penultimate_size=H)(x, torch.ones(10), ids)

    assert out.info["exceedings"][7:] == [1, 1, 1]
    assert min(out.info["exceedings"][:7]) > 5
    assert out.info["suspicious"] == [17, 18, 19]
    assert out.accepted == list(range(10, 17))
    norms = torch.linalg.vector_norm(x, dim=1)
    s = float(torch.sort(norms).values[4:6].mean())
    assert out.info["clip_norm"] == pytest.approx(s)
    clipped = x[:7] * torch.clamp(s / norms[:7], max=1.0)[:, None]
    torch.testing.assert_close(out.update, clipped.mean(0))


def test_uniform_honest_group_is_accepted():
    x = honest(10, seed=3)

    out = DeepSight(output_size=C, penultimate_size=H)(x, torch.ones(10), list(range(10)))

    assert out.info["suspicious"] == []
    assert out.accepted == list(range(10))


def test_hand_computed_clip_to_the_median_norm():
    # Prepare: same direction e, scales 1, 2, 4 → equal NEUPs and TEs, nobody suspicious;
    # S = 2‖e‖ → clipped scales 1, 2, 2 → mean 5/3·e
    e = honest(1, seed=5)[0]
    x = torch.stack([e, 2 * e, 4 * e])

    out = DeepSight(output_size=C, penultimate_size=H)(x, torch.ones(3), [0, 1, 2])

    assert out.accepted == [0, 1, 2]
    assert out.info["clip_norm"] == pytest.approx(2 * float(torch.linalg.vector_norm(e)))
    torch.testing.assert_close(out.update, 5 / 3 * e)


def test_a_cluster_is_rejected_at_a_suspicious_share_of_tau():
    # the sybil cluster's suspicious share is 1: rejected even with τ = 1 (the test is < τ)
    x = torch.cat([honest(4, seed=6), backdoor(2)])
    rule = DeepSight(output_size=C, penultimate_size=H, tau=1.0)

    out = rule(x, torch.ones(6), list(range(6)))

    assert out.info["suspicious"] == [4, 5]
    assert out.accepted == [0, 1, 2, 3]


def test_all_rejected_gives_a_zero_update():
    # every update suspicious cannot happen (TE ≤ median/2 for all needs median 0): all-zero
    # output layers give TE 0 everywhere → boundary 0 → every update suspicious → rejected
    x = honest(4, seed=7)
    x[:, FEATURES:] = 0.0

    out = DeepSight(output_size=C, penultimate_size=H)(x, torch.ones(4), [0, 1, 2, 3])

    assert out.accepted == []
    assert out.update.tolist() == [0.0] * D


def test_layout_too_small_is_refused():
    with pytest.raises(InvalidSettingError, match=r"deepsight needs d >= C·h \+ C = 50"):
        DeepSight(output_size=10, penultimate_size=4)(
            honest(3, 0)[:, :49], torch.ones(3), [0, 1, 2]
        )


@pytest.mark.parametrize(
    "params",
    [
        {"output_size": 1, "penultimate_size": 4},
        {"output_size": 10, "penultimate_size": 0},
        {"output_size": 10, "penultimate_size": 4, "tau": 0.0},
        {"output_size": 10, "penultimate_size": 4, "tau": 1.5},
    ],
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="deepsight"):
        build("deepsight", **params)
