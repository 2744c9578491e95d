"""The active class-inference attacker's data in a train round: its own, then its fakes."""

from __future__ import annotations

import torch

from clients.train_round import _with_fakes
from fedsim.federation import federation_for
from tests.conftest import make_scenario


def test_fakes_follow_the_attackers_data_and_a_nan_model_gives_none() -> None:
    scenario = make_scenario(
        **{"privacy.class_inference": {"mode": "active", "steps": 2, "fakes": 3}}
    )
    fed = federation_for(scenario)
    x, y = fed.data.client(fed.class_inference.client_id)
    weights = fed.initial_weights()
    x2, y2 = _with_fakes(fed, 1, weights, None)
    assert torch.equal(x2[: len(x)], x) and y2[len(y) :].tolist() == [4, 4, 4]
    assert not (y2 == 3).any()
    weights[0] = float("nan")
    x3, y3 = _with_fakes(fed, 1, weights, None)
    assert torch.equal(x3, x) and torch.equal(y3, y)
