import math

import pytest
import torch

from fedsim.errors import InvalidSettingError
from server.aggregators import build_pre
from server.aggregators.arc import AdaptiveRobustClipping, arc_clip_count


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_hand_computed_shared_example():
    # Prepare: n=3, f=1 → k = ⌊2·(1/3)·2⌋ = ⌊4/3⌋ = 1
    # norms √14 ≈ 3.742, √77 ≈ 8.775, √194 ≈ 13.928 → C = √77
    # row 2 · √(77/194) = (7, 8, 9) · 0.630010 = (4.410, 5.040, 5.670)
    u = t([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])

    out = AdaptiveRobustClipping(f=1).transform(u, t([1.0, 1.0, 2.0]), [3, 4, 5])

    scale = math.sqrt(77 / 194)
    torch.testing.assert_close(out.updates[2], t([7 * scale, 8 * scale, 9 * scale]))
    assert [round(float(x), 3) for x in out.updates[2]] == [4.41, 5.04, 5.67]
    assert out.updates[:2].tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert out.weights.tolist() == [1.0, 1.0, 2.0]
    assert out.client_ids == [3, 4, 5]


def test_hand_computed_three_clipped_of_ten():
    # Prepare: n=10, f=2 → k = ⌊2·0.2·8⌋ = 3; norms 1..10 along e → the 3 largest (8, 9, 10)
    # are clipped to the 4th largest, 7
    e = t([0.6, 0.8])
    u = torch.stack([float(r) * e for r in range(1, 11)])

    out = AdaptiveRobustClipping(f=2).transform(u, torch.ones(10), list(range(10)))

    norms = torch.linalg.vector_norm(out.updates, dim=1)
    torch.testing.assert_close(norms, t([1, 2, 3, 4, 5, 6, 7, 7, 7, 7]))


def test_clip_counts():
    assert [arc_clip_count(10, f) for f in range(6)] == [0, 1, 3, 4, 4, 5]
    assert arc_clip_count(3, 1) == 1
    assert arc_clip_count(100, 10) == 18  # ⌊2 · 0.1 · 90⌋


def test_f_zero_changes_nothing():
    u = t([[3.0, 4.0], [30.0, 40.0]])

    out = AdaptiveRobustClipping(f=0).transform(u, torch.ones(2), [0, 1])

    assert torch.equal(out.updates, u)


def test_round_with_n_not_above_f_is_refused():
    with pytest.raises(InvalidSettingError, match="arc needs n > f, got n=2, f=2"):
        AdaptiveRobustClipping(f=2).out_rows(2)


@pytest.mark.parametrize("bad", [-1, 0.5, "1", False])
def test_bad_f_names_the_stage(bad):
    with pytest.raises(InvalidSettingError, match="arc needs an integer f"):
        build_pre("arc", f=bad)
