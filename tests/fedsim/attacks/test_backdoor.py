import pytest
import torch

from fedsim.attacks.backdoor import BadNets, backdoor_asr
from fedsim.errors import InvalidSettingError


def _images(n=10, c=3, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, c, h, w, generator=g) * 0.5  # max < 0.5
    y = torch.arange(n) % 4
    return x, y


def _poison(attack, x, y, seed=0, index=0, count=1):
    g = torch.Generator().manual_seed(seed)
    return attack.poison(x, y, attacker_index=index, num_attackers=count, generator=g)


def test_default_trigger_is_bottom_right_with_one_pixel_margin():
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[5:7, 5:7] = True  # rows/cols H-h-1 = 5 and 6
    assert torch.equal(BadNets().trigger_mask(8, 8), expected)


def test_trigger_is_stamped_exactly_where_configured():
    attack = BadNets(trigger_size=[2, 3], trigger_position=[1, 2], trigger_value=0.7)
    x, _ = _images(n=2)
    stamped = attack.stamp(x)
    expected = x.clone()
    for i in range(2):
        for ch in range(3):
            for r in (1, 2):
                for c in (2, 3, 4):
                    expected[i, ch, r, c] = 0.7
    assert torch.equal(stamped, expected)


def test_default_trigger_value_is_the_data_max():
    x, _ = _images(n=3)
    stamped = BadNets().stamp(x)
    assert torch.all(stamped[:, :, 5:7, 5:7] == x.max())


@pytest.mark.parametrize("n, fraction, expected", [(10, 0.3, 3), (5, 0.5, 3), (10, 1.0, 10)])
def test_poison_fraction_selects_the_right_samples(n, fraction, expected):
    attack = BadNets(target=3, trigger_value=1.0, poison_fraction=fraction)
    x, y = _images(n=n)
    xp, yp = _poison(attack, x, y)
    stamped = (xp != x).flatten(1).any(dim=1)
    assert int(stamped.sum()) == expected
    mask = attack.trigger_mask(8, 8)
    assert torch.all(xp[stamped][:, :, mask] == 1.0)
    assert torch.equal(xp[~stamped], x[~stamped])
    assert torch.all(yp[stamped] == 3)
    assert torch.equal(yp[~stamped], y[~stamped])


def test_poison_does_not_modify_inputs_and_is_deterministic():
    attack = BadNets(poison_fraction=0.4, trigger_value=1.0)
    x, y = _images()
    x0, y0 = x.clone(), y.clone()
    first = _poison(attack, x, y, seed=5)
    second = _poison(attack, x, y, seed=5)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = _poison(attack, x, y, seed=6)
    assert not torch.equal(first[0], other[0])


def test_trigger_that_does_not_fit_raises():
    with pytest.raises(InvalidSettingError, match="does not fit a 8×8 image"):
        BadNets(trigger_size=3, trigger_position=[6, 0]).trigger_mask(8, 8)


def test_boost_scales_the_update():
    delta = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float32)
    out = BadNets(boost=12.5).transform_update(delta)
    assert out.dtype == torch.float64
    assert out.tolist() == [6.25, -12.5, 25.0]


def test_neurotoxin_keeps_exactly_the_bottom_fraction_by_reference():
    reference = torch.tensor([0.9, -0.1, 0.5, 0.05, -0.7, 0.3, 0.2, -0.8, 0.6, 0.4])
    delta = torch.arange(1.0, 11.0, dtype=torch.float64)
    attack = BadNets(neurotoxin=0.3, boost=2.0)
    assert attack.uses_reference
    out = attack.transform_update(delta, reference=reference)
    kept = {1, 3, 6}  # |ref| = 0.1, 0.05, 0.2 are the three smallest
    for j in range(10):
        assert out[j].item() == (2.0 * delta[j].item() if j in kept else 0.0)


def test_neurotoxin_without_reference_leaves_the_update_unmasked():
    delta = torch.tensor([1.0, 2.0])
    assert BadNets(neurotoxin=0.5).transform_update(delta, reference=None).tolist() == [1.0, 2.0]
    with pytest.raises(InvalidSettingError, match="reference"):
        BadNets(neurotoxin=0.5).transform_update(delta, reference=torch.zeros(3))


def test_asr_counts_only_non_target_samples():
    attack = BadNets(target=2, trigger_size=1, trigger_position=[0, 0], trigger_value=9.0)
    n = 8
    x = torch.zeros(n, 1, 4, 4)
    x[:, 0, 3, 3] = torch.arange(n, dtype=torch.float32)  # sample id in a corner pixel
    y = torch.tensor([2, 0, 1, 2, 3, 0, 1, 2])  # samples 0, 3, 7 are of the target class
    fooled = {0, 1, 3, 4, 7}  # ids the "model" maps to the target when triggered
    seen = []

    def predict(batch):
        assert torch.all(batch[:, 0, 0, 0] == 9.0)  # the trigger is on every input
        ids = batch[:, 0, 3, 3].long().tolist()
        seen.extend(ids)
        return torch.tensor([2 if i in fooled else 0 for i in ids])

    asr = backdoor_asr(predict, x, y, attack, batch_size=2)
    assert sorted(seen) == [1, 2, 4, 5, 6]  # the target-class samples were never asked
    assert asr == pytest.approx(2 / 5)  # ids 1 and 4


def test_asr_accepts_logits():
    attack = BadNets(target=1, trigger_size=1, trigger_position=[0, 0], trigger_value=1.0)
    x = torch.zeros(3, 1, 2, 2)
    logits = lambda batch: torch.stack([1 - batch[:, 0, 0, 0], batch[:, 0, 0, 0]], dim=1)  # noqa: E731
    assert backdoor_asr(logits, x, torch.tensor([0, 1, 2]), attack) == 1.0


def test_asr_without_non_target_samples_raises():
    attack = BadNets(target=0)
    with pytest.raises(InvalidSettingError, match="target class 0"):
        backdoor_asr(lambda b: b, torch.zeros(2, 1, 4, 4), torch.tensor([0, 0]), attack)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"target": -1}, "target"),
        ({"trigger_size": 0}, "trigger_size"),
        ({"trigger_size": [2, 2, 2]}, "trigger_size"),
        ({"trigger_position": [-1, 0]}, "trigger_position"),
        ({"trigger_value": float("nan")}, "trigger_value"),
        ({"poison_fraction": 0.0}, "poison_fraction"),
        ({"poison_fraction": 1.5}, "poison_fraction"),
        ({"boost": 0.0}, "boost"),
        ({"neurotoxin": 1.2}, "neurotoxin"),
    ],
)
def test_invalid_settings(params, message):
    with pytest.raises(InvalidSettingError, match=message):
        BadNets(**params)


def test_invalid_attacker_index_raises():
    x, y = _images(n=2)
    with pytest.raises(InvalidSettingError, match="attacker_index"):
        _poison(BadNets(), x, y, index=2, count=2)
