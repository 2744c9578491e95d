import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.centered_clipping import CenteredClipping


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def rand(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def test_hand_computed_two_rounds_keep_the_centre():
    # Prepare: τ=1, L=1, updates (3,4) and (0,0)
    # round 1, v0=0: (3,4) has norm 5 → scaled by 1/5 → (0.6,0.8); (0,0) adds 0 → v=(0.3,0.4)
    # round 2, v0=(0.3,0.4): (2.7,3.6) has norm 4.5 → (0.6,0.8); (−0.3,−0.4) has norm 0.5 ≤ τ
    #          → v = (0.3,0.4) + ((0.6,0.8) + (−0.3,−0.4))/2 = (0.45,0.6)
    u = t([[3.0, 4.0], [0.0, 0.0]])
    rule = CenteredClipping(tau=1.0, iterations=1)

    first = rule(u, torch.ones(2), [0, 1])
    second = rule(u, torch.ones(2), [0, 1])

    torch.testing.assert_close(first.update, t([0.3, 0.4]), rtol=1e-15, atol=0)
    torch.testing.assert_close(second.update, t([0.45, 0.6]), rtol=1e-15, atol=0)
    assert first.info == {"clipped": 1}


def test_three_identical_honest_and_one_outlier_moves_at_most_tau_over_n_per_step():
    # Prepare: honest h=(1,2,3) ×3 within τ of v; the outlier contributes τ·unit/n per step
    h = [1.0, 2.0, 3.0]
    u = t([h, h, h, [1e6, -1e6, 0.0]])
    rule = CenteredClipping(tau=10.0, iterations=3)

    out = rule(u, torch.ones(4), [0, 1, 2, 3])

    assert float(torch.linalg.vector_norm(out.update - t(h))) < 3 * 10.0 / 4 + 1e-9
    assert out.accepted is None


def test_large_tau_is_the_mean_after_one_iteration():
    x = rand(6, 4, seed=1)

    out = CenteredClipping(tau=1e9, iterations=1)(x, torch.ones(6), list(range(6)))

    torch.testing.assert_close(out.update, x.mean(0))


def test_state_is_kept_across_calls_and_restored():
    x = rand(5, 3, seed=2)
    rule = CenteredClipping(tau=0.5, iterations=2)
    fresh = CenteredClipping(tau=0.5, iterations=2)

    first = rule(x, torch.ones(5), list(range(5))).update
    state = rule.state_dict()
    second = rule(x, torch.ones(5), list(range(5))).update
    restored = CenteredClipping(tau=0.5, iterations=2)
    restored.load_state_dict(state)

    assert not torch.equal(first, second)  # started from v0 = first, not from 0
    torch.testing.assert_close(fresh(x, torch.ones(5), list(range(5))).update, first)
    assert torch.equal(restored(x, torch.ones(5), list(range(5))).update, second)
    assert torch.equal(state["center"], first)


def test_dimension_change_is_rejected():
    rule = CenteredClipping()
    rule(rand(3, 4, 0), torch.ones(3), [0, 1, 2])

    with pytest.raises(InvalidSettingError, match="centered_clipping keeps the previous aggregate"):
        rule(rand(3, 5, 0), torch.ones(3), [0, 1, 2])


def test_permutation_invariant():
    x = rand(7, 4, seed=3) * 5
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(3))

    a = CenteredClipping(tau=1.0)(x, torch.ones(7), list(range(7)))
    b = CenteredClipping(tau=1.0)(x[perm], torch.ones(7), perm.tolist())

    torch.testing.assert_close(a.update, b.update, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("params", [{"tau": 0.0}, {"tau": float("inf")}, {"iterations": 0}])
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="centered_clipping"):
        build("centered_clipping", **params)
