import math

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.foolsgold import FoolsGold, foolsgold_weights


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed_weights_with_pardoning_and_logit():
    # Prepare: histories h0=(1,0), h1=(1,1), h2=(0,1), h3=(−1,0); cos with 1/√2 ≈ 0.7071
    #   cs: 0–1 = c, 1–2 = c, 0–2 = 0, 0–3 = −1, 1–3 = −c, 2–3 = 0 (c = 1/√2)
    #   v = max_j cs_ij = (c, c, c, 0)
    #   pardoning (v_j > v_i) only touches row 3: cs_3j · 0/c = 0 → row 3 max is 0
    #   α = 1 − max = (1−c, 1−c, 1−c, 1) → / max → same
    #   logit κ=1: ln((1−c)/c) + 0.5 = ln(0.41421) + 0.5 = −0.3814 → clipped to 0; α3=1 → 1
    h = t([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])

    alpha = foolsgold_weights(h, kappa=1.0)

    assert alpha.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_logit_maps_intermediate_weights_with_kappa():
    # two histories at cosine 0.5 and a third orthogonal to both ... use 3 vectors:
    # h0=(1,0,0), h1=(0.5, √0.75, 0), h2=(0,0,1): cs01 = 0.5, others 0
    # v = (0.5, 0.5, 0); α = (0.5, 0.5, 1) → /1 → logit: ln(1) + 0.5 = 0.5 (κ=1), 1 for α=1
    h = t([[1.0, 0.0, 0.0], [0.5, math.sqrt(0.75), 0.0], [0.0, 0.0, 1.0]])

    one = foolsgold_weights(h, kappa=1.0)
    half = foolsgold_weights(h, kappa=0.5)

    torch.testing.assert_close(one, t([0.5, 0.5, 1.0]))
    torch.testing.assert_close(half, t([0.25, 0.25, 1.0]))


def test_identical_sybils_get_zero_weight_every_round():
    g = torch.Generator().manual_seed(0)
    d = 40
    target = torch.randn(d, generator=g, dtype=torch.float64)
    rule = FoolsGold()
    for _ in range(4):
        honest = torch.randn(5, d, generator=g, dtype=torch.float64)
        x = torch.cat([honest, target.expand(3, d)])

        out = rule(x, torch.ones(8), [0, 1, 2, 3, 4, 10, 11, 12])

        assert [out.info["weights"][c] for c in (10, 11, 12)] == [0.0, 0.0, 0.0]
        assert out.accepted == [0, 1, 2, 3, 4]
        alpha = t([out.info["weights"][c] for c in range(5)])
        torch.testing.assert_close(out.update, (alpha / alpha.sum()) @ honest)


def test_noisy_sybils_are_down_weighted_as_their_history_grows():
    # Prepare: sybils push one target plus large per-round noise; the noise averages out of
    # their histories, which grow more similar round by round; honest clients stay diverse
    g = torch.Generator().manual_seed(0)
    d = 50
    target = torch.randn(d, generator=g, dtype=torch.float64)
    common = torch.randn(d, generator=g, dtype=torch.float64)
    rule = FoolsGold()
    sybil_weight = []
    for _ in range(6):
        honest = 0.3 * common + torch.randn(5, d, generator=g, dtype=torch.float64)
        sybils = target + 2.0 * torch.randn(3, d, generator=g, dtype=torch.float64)

        out = rule(torch.cat([honest, sybils]), torch.ones(8), list(range(8)))

        sybil_weight.append(sum(out.info["weights"][c] for c in (5, 6, 7)) / 3)
    assert sybil_weight[0] == 1.0
    assert sybil_weight[-1] < 0.3
    assert sybil_weight[-1] < sybil_weight[2] < sybil_weight[0]


def test_history_state_round_trips_and_is_per_client_id():
    g = torch.Generator().manual_seed(1)
    rounds = [torch.randn(4, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    rule = FoolsGold()
    rule(rounds[0], torch.ones(4), [0, 1, 2, 3])
    rule(rounds[1], torch.ones(4), [0, 1, 2, 3])

    restored = FoolsGold()
    restored.load_state_dict(rule.state_dict())

    torch.testing.assert_close(rule.state_dict()["history"][2], rounds[0][2] + rounds[1][2])
    a = rule(rounds[2], torch.ones(4), [0, 1, 2, 3])
    b = restored(rounds[2], torch.ones(4), [0, 1, 2, 3])
    assert torch.equal(a.update, b.update)


def test_all_zero_weights_give_a_zero_update():
    same = t([[1.0, 2.0], [1.0, 2.0]])

    out = FoolsGold()(same, torch.ones(2), [0, 1])

    assert out.update.tolist() == [0.0, 0.0]
    assert out.accepted == []


def test_permutation_invariant_with_ids():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    x[4] = x[5]
    perm = torch.randperm(6, generator=g)

    a = FoolsGold()(x, torch.ones(6), list(range(6)))
    b = FoolsGold()(x[perm], torch.ones(6), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-13, atol=1e-14)
    assert a.accepted == sorted(b.accepted)


def test_dimension_change_is_rejected():
    rule = FoolsGold()
    rule(torch.ones(2, 3, dtype=torch.float64), torch.ones(2), [0, 1])

    with pytest.raises(InvalidSettingError, match="foolsgold holds a history of dimension 3"):
        rule(torch.ones(2, 4, dtype=torch.float64), torch.ones(2), [0, 1])


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_kappa_names_the_rule(bad):
    with pytest.raises(InvalidSettingError, match="foolsgold"):
        build("foolsgold", kappa=bad)


def test_client_dissimilar_to_everyone_keeps_full_weight():
    # h2 points against both others (v2 < 0): no pardoning factor with a negative ratio,
    # α2 = 1 − v2 > 1 → clipped to 1; the near-duplicates 0 and 1 go to 0
    h = t([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0]])

    alpha = foolsgold_weights(h, kappa=1.0)

    assert alpha.tolist() == [0.0, 0.0, 1.0]
