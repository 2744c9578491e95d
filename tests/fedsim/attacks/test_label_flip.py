import pytest
import torch

from fedsim.attacks.label_flip import LabelFlip
from fedsim.errors import InvalidSettingError


def _data():
    x = torch.arange(5 * 2 * 3 * 3, dtype=torch.float32).reshape(5, 2, 3, 3)
    y = torch.tensor([0, 1, 2, 3, 1])
    return x, y


def _poison(attack, x, y, seed=0):
    g = torch.Generator().manual_seed(seed)
    return attack.poison(x, y, attacker_index=0, num_attackers=1, generator=g)


def test_untargeted_mirrors_labels():
    x, y = _data()
    _, flipped = _poison(LabelFlip(num_classes=4), x, y)
    assert flipped.tolist() == [3, 2, 1, 0, 2]


def test_targeted_only_changes_source():
    x, y = _data()
    _, flipped = _poison(LabelFlip(num_classes=4, source=1, target=3), x, y)
    assert flipped.tolist() == [0, 3, 2, 3, 3]


def test_inputs_are_not_modified_and_outputs_are_copies():
    x, y = _data()
    x0, y0 = x.clone(), y.clone()
    xp, yp = _poison(LabelFlip(num_classes=4), x, y)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.equal(xp, x)
    xp += 1
    yp += 1
    assert torch.equal(x, x0) and torch.equal(y, y0)


def test_labels_outside_the_classes_raise():
    x, y = _data()
    with pytest.raises(InvalidSettingError, match=r"\[0, 3\)"):
        _poison(LabelFlip(num_classes=3), x, y)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"num_classes": 10, "source": 1}, "both source and target"),
        ({"num_classes": 10, "source": 1, "target": 10}, "target"),
        ({"num_classes": 10, "source": -1, "target": 2}, "source"),
        ({"num_classes": 10, "source": 2, "target": 2}, "source ≠ target"),
    ],
)
def test_invalid_settings(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        LabelFlip(**params)
