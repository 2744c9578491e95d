"""The class-inference attacker: who it is, and that it never holds the target class."""

from __future__ import annotations

import pytest
import torch

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.inference.attacker import without_class
from fedsim.run.runner import preflight
from tests.conftest import make_scenario

TARGET = 3


def _scenario(**block: object):  # noqa: ANN202
    return make_scenario(**{"privacy.class_inference": {"target_class": TARGET, **block}})


def test_the_attacker_holds_no_target_class_and_the_others_keep_theirs() -> None:
    fed, plain = federation_for(_scenario()), federation_for(make_scenario())
    held = [int((plain.data.client(c)[1] == TARGET).sum()) for c in range(5)]
    assert min(held) > 0  # IID: every client held some 3s, so the attacker's were taken out
    attacker = fed.class_inference.client_id
    assert attacker == held.index(min(held))  # the fewest, lowest id on ties
    x, y = fed.data.client(attacker)
    assert len(y) == len(plain.data.client(attacker)[1]) - min(held)
    assert not (y == TARGET).any()
    others = [c for c in range(5) if c != attacker]
    assert all(torch.equal(fed.data.client(c)[1], plain.data.client(c)[1]) for c in others)


def test_the_default_attacker_is_a_client_without_the_class_under_a_skewed_partition() -> None:
    scenario = make_scenario(
        **{
            "data.partition": "shards",
            "data.shards_per_client": 2,
            "data.num_clients": 10,
            "privacy.class_inference": {"target_class": TARGET},
        }
    )
    fed = federation_for(scenario)
    attacker = fed.class_inference.client_id
    unmodified = federation_for(scenario.model_copy(update={"privacy": make_scenario().privacy}))
    assert not (unmodified.data.client(attacker)[1] == TARGET).any()  # nothing had to be removed
    assert torch.equal(fed.data.client(attacker)[1], unmodified.data.client(attacker)[1])


def test_active_poison_appends_fakes_with_the_fake_label_and_never_the_target() -> None:
    fed = federation_for(_scenario(mode="active", fakes=5, steps=2))
    attacker = fed.class_inference
    x, y = fed.data.client(attacker.client_id)
    model = fed.build_model()
    x2, y2 = attacker.poison(model, 1, x, y)
    assert torch.equal(x2[: len(x)], x) and y2[len(y) :].tolist() == [TARGET + 1] * 5
    assert x2.shape[1:] == x.shape[1:] and not (y2 == TARGET).any()
    again = attacker.poison(model, 1, x, y)[0]
    assert torch.equal(again, x2)  # same round, same model: the probe draws the same fakes


def test_without_class_only_touches_the_named_client() -> None:
    fed = federation_for(make_scenario())
    out = without_class(fed.data, 2, TARGET)
    assert not (out.client(2)[1] == TARGET).any()
    assert torch.equal(out.client(1)[1], fed.data.client(1)[1])


@pytest.mark.parametrize(
    ("block", "word"),
    [
        ({"target_class": 10}, "target_class"),
        ({"fake_label": 3}, "fake_label"),
        ({"attacker": 9}, "attacker"),
        ({"params": {"depth": 2}}, "latent_dim"),
    ],
)
def test_bad_settings_are_scenario_errors_naming_the_block(block: dict, word: str) -> None:
    with pytest.raises(ScenarioError, match=rf"privacy\.class_inference.*{word}"):
        preflight(_scenario(**block))
