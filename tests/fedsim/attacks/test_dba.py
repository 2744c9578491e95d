import pytest
import torch

from fedsim.attacks.dba import DBA
from fedsim.errors import InvalidSettingError


@pytest.mark.parametrize(
    "size, pieces", [([2, 4], 4), ([2, 4], 3), ([2, 4], 8), ([3, 3], 4), (2, 1)]
)
def test_pieces_are_disjoint_and_cover_the_global_trigger(size, pieces):
    attack = DBA(trigger_size=size, num_pieces=pieces)
    masks = [attack.trigger_mask(10, 12, piece=i) for i in range(pieces)]
    total = torch.stack(masks).sum(dim=0)
    assert int(total.max()) == 1  # disjoint
    assert torch.equal(total.bool(), attack.trigger_mask(10, 12))  # union = global
    assert all(m.any() for m in masks)


def test_default_pieces_are_the_four_quarters_of_a_2x4_trigger():
    attack = DBA(trigger_position=[0, 0])
    expected = [(0, [0, 1]), (0, [2, 3]), (1, [0, 1]), (1, [2, 3])]
    for piece, (row, cols) in enumerate(expected):
        mask = attack.trigger_mask(4, 6, piece=piece)
        assert mask.nonzero().tolist() == [[row, c] for c in cols]


def test_attacker_stamps_its_piece_and_stamp_uses_the_whole_trigger():
    attack = DBA(target=5, trigger_value=1.0, poison_fraction=1.0)
    x = torch.zeros(3, 2, 8, 8)
    y = torch.tensor([0, 1, 2])
    for index in range(6):
        g = torch.Generator().manual_seed(0)
        xp, yp = attack.poison(x, y, attacker_index=index, num_attackers=6, generator=g)
        piece = attack.trigger_mask(8, 8, piece=index % 4)
        assert torch.equal(xp != 0, piece.expand_as(xp))
        assert yp.tolist() == [5, 5, 5]
    assert torch.equal(attack.stamp(x) != 0, attack.trigger_mask(8, 8).expand_as(x))
    assert torch.equal(x, torch.zeros(3, 2, 8, 8))


def test_dba_boosts_like_badnets():
    out = DBA(boost=4.0).transform_update(torch.tensor([1.0, -0.25]))
    assert out.tolist() == [4.0, -1.0]


def test_too_many_pieces_raise():
    with pytest.raises(InvalidSettingError, match="num_pieces"):
        DBA(trigger_size=[2, 2], num_pieces=5)
