import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build
from server.aggregators.rlr import RobustLearningRate, robust_lr


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed_mixed_signs():
    # Prepare: sign sums per coordinate 3, −1, 1 (sign(0) = 0) → |·| = 3, 1, 1
    # θ=2 → rates (+1, −1, −1); plain mean (1, −1/3, 2/3) → (1, 1/3, −2/3)
    u = t([[1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [1.0, -1.0, 2.0]])

    out = RobustLearningRate(threshold=2)(u, torch.ones(3), [0, 1, 2])

    torch.testing.assert_close(out.update, t([1.0, 1 / 3, -2 / 3]), rtol=1e-15, atol=0)
    assert out.info == {"flipped": 2, "threshold": 2}
    assert out.accepted is None


def test_rates_multiply_the_example_weighted_mean_and_eta():
    # Prepare: weights 1, 3 → mean (0.25·2 + 0.75·(−2), 0.25·4 + 0.75·4) = (−1, 4)
    # signs: coordinate 0 disagree (|0| < 1 → −η), coordinate 1 agree (2 ≥ 1 → +η); η = 0.5
    u = t([[2.0, 4.0], [-2.0, 4.0]])

    out = RobustLearningRate(threshold=1, eta=0.5)(u, t([1.0, 3.0]), [0, 1])

    assert out.update.tolist() == [0.5, 2.0]


def test_threshold_boundary_is_inclusive():
    u = t([[1.0], [1.0], [-1.0], [1.0]])  # |Σ sign| = 2

    assert robust_lr(u, 2, 1.0).tolist() == [1.0]
    assert robust_lr(u, 3, 1.0).tolist() == [-1.0]


def test_backdoor_coordinates_are_reversed():
    # Prepare: 7 honest push +1 on coordinate 0; 3 attackers push +5 on coordinate 1, where
    # the honest clients are split ±0.1 → coordinate 1's agreement is |3 + 3 − 4| = 2 < θ = 4
    honest = t([[1.0, 0.1]] * 3 + [[1.0, -0.1]] * 4)
    bad = t([[0.0, 5.0]] * 3)
    u = torch.cat([honest, bad])

    out = RobustLearningRate(threshold=4)(u, torch.ones(10), list(range(10)))

    assert float(out.update[0]) == pytest.approx(0.7)  # 7/10, agreement 7 ≥ 4 → kept
    assert float(out.update[1]) == pytest.approx(-(0.3 - 0.4 + 15) / 10)  # reversed


@pytest.mark.parametrize(
    "params", [{"threshold": 0}, {"threshold": 1.5}, {"threshold": 2, "eta": 0.0}]
)
def test_bad_settings_name_the_rule(params):
    with pytest.raises(InvalidSettingError, match="rlr"):
        build("rlr", **params)
