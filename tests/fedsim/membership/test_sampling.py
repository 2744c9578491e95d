import numpy as np
import pytest

from fedsim.errors import InvalidSettingError
from fedsim.membership import canary_inclusion, membership_split, reference_masks


def test_membership_split_is_seeded_disjoint_and_balanced():
    split = membership_split(range(100), np.arange(100, 150), 20, seed=7)
    again = membership_split(range(100), np.arange(100, 150), 20, seed=7)
    other = membership_split(range(100), np.arange(100, 150), 20, seed=8)

    assert split.members.size == split.non_members.size == 20
    assert len(set(split.members)) == 20 and len(set(split.non_members)) == 20
    assert split.members.max() < 100 <= split.non_members.min()
    np.testing.assert_array_equal(split.members, again.members)
    np.testing.assert_array_equal(split.non_members, again.non_members)
    assert not np.array_equal(split.members, other.members)
    indices, labels = split.indices_and_labels()
    assert labels.sum() == 20 and indices[labels].tolist() == split.members.tolist()


@pytest.mark.parametrize(
    ("members", "held_out", "size", "match"),
    [
        (range(10), range(5, 15), 3, "disjoint pools"),
        (range(10), range(10, 12), 3, "held_out_pool, it has 2"),
        (range(10), range(10, 20), 0, "size >= 1"),
        ([0.5, 1.5], range(10, 20), 1, "integer indices"),
    ],
)
def test_membership_split_errors(members, held_out, size, match):
    with pytest.raises(InvalidSettingError, match=match):
        membership_split(members, held_out, size, seed=0)


def test_reference_masks_put_each_example_in_half_the_models():
    masks = reference_masks(8, 200, seed=3)

    assert masks.shape == (8, 200)
    assert np.all(masks.sum(axis=0) == 4)
    assert np.all(np.abs(masks.sum(axis=1) - 100) < 30)  # each model sees about half
    np.testing.assert_array_equal(masks, reference_masks(8, 200, seed=3))
    assert np.all(reference_masks(5, 10, seed=0).sum(axis=0) == 2)  # odd R: floor(R/2)


def test_canary_inclusion_is_seeded_fair_coins():
    bits = canary_inclusion(10_000, seed=1)

    assert bits.dtype == bool
    assert abs(bits.mean() - 0.5) < 0.02
    np.testing.assert_array_equal(bits, canary_inclusion(10_000, seed=1))
    assert not np.array_equal(bits, canary_inclusion(10_000, seed=2))
    with pytest.raises(InvalidSettingError, match="n_canaries >= 1"):
        canary_inclusion(0, seed=1)
