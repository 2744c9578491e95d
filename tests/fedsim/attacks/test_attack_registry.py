import pytest
import torch

from fedsim.attacks import STAGES, accepts, attack_names, build_attack, is_attack
from fedsim.errors import InvalidSettingError, UnknownNameError

EXPECTED_STAGES = {
    "alie": "colluding",
    "backdoor": "data",
    "dba": "data",
    "fang": "colluding",
    "gaussian": "update",
    "ipm": "colluding",
    "label_flip": "data",
    "mimic": "colluding",
    "min_max": "colluding",
    "min_sum": "colluding",
    "scaling": "update",
    "sign_flip": "update",
    "text_backdoor": "data",
}


def test_every_attack_is_registered_with_its_stage():
    assert attack_names() == sorted(EXPECTED_STAGES)
    for name, stage in EXPECTED_STAGES.items():
        params = {"num_classes": 10} if name == "label_flip" else {}
        attack = build_attack(name, **params)
        assert attack.name == name and attack.stage == stage and stage in STAGES
        assert attack.describe().startswith(f"{name}(")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="unknown attack 'alei'; known: alie, backdoor"):
        build_attack("alei")


def test_none_is_not_an_attack():
    assert not is_attack("none")
    assert is_attack("min_max")
    assert not is_attack("nope")
    with pytest.raises(InvalidSettingError, match="no attack"):
        build_attack("none")


def test_unknown_parameter_lists_the_allowed_ones():
    message = "alie has no parameter 'zz'; allowed: unbiased, z, z_mode"
    with pytest.raises(InvalidSettingError, match=message):
        build_attack("alie", zz=1.0)


def test_missing_required_parameter_is_named():
    with pytest.raises(InvalidSettingError, match="label_flip needs parameter 'num_classes'"):
        build_attack("label_flip")


def test_accepts_lists_parameters():
    assert accepts("backdoor") == {
        "target",
        "trigger_size",
        "trigger_position",
        "trigger_value",
        "poison_fraction",
        "boost",
        "neurotoxin",
    }
    assert accepts("dba") == accepts("backdoor") | {"num_pieces"}


def test_invalid_values_are_reported_with_the_attack_name():
    with pytest.raises(InvalidSettingError, match="min_max needs direction"):
        build_attack("min_max", direction="up")


@pytest.mark.parametrize("name", ["backdoor", "dba", "label_flip"])
def test_data_attacks_are_deterministic_given_the_seed(name):
    params = {"num_classes": 4} if name == "label_flip" else {}
    attack = build_attack(name, **params)
    x = torch.rand(12, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(12) % 4

    def run():
        g = torch.Generator().manual_seed(3)
        return attack.poison(x, y, attacker_index=1, num_attackers=2, generator=g)

    (xa, ya), (xb, yb) = run(), run()
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("name", ["gaussian", "scaling", "sign_flip", "backdoor"])
def test_update_transforms_are_deterministic_given_the_seed(name):
    attack = build_attack(name)
    delta = torch.linspace(-1, 1, 50, dtype=torch.float64)
    a = attack.transform_update(delta, generator=torch.Generator().manual_seed(4))
    b = attack.transform_update(delta, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
