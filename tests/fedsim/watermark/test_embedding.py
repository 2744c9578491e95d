"""WaffleEmbedding: built from the scenario, a pure function of the aggregate and the round."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fedsim.errors import ScenarioError
from fedsim.federation import federation_for
from fedsim.params import flat_params, load_flat_params
from fedsim.seeding import Stream, torch_generator
from fedsim.watermark import WaffleEmbedding, WaffleSettings, embed, run_trigger_set
from tests.conftest import make_scenario


def test_built_only_when_the_scenario_embeds() -> None:
    assert WaffleEmbedding.from_scenario(federation_for(make_scenario())) is None
    unmarked = federation_for(make_scenario(watermark={"trigger_set": 20, "embed": False}))
    assert WaffleEmbedding.from_scenario(unmarked) is None


def test_each_round_embeds_from_its_own_generator_and_keeps_the_dtype() -> None:
    fed = federation_for(make_scenario(watermark={"trigger_set": 20, "max_steps": 5}))
    embedding = WaffleEmbedding.from_scenario(fed)
    assert embedding is not None
    weights = fed.initial_weights().double()
    marked = embedding(weights, server_round=3)
    assert marked.dtype == torch.float64 and embedding.last_steps == 5
    assert torch.equal(embedding(weights, server_round=3), marked)  # nothing carried over
    assert not torch.equal(embedding(weights, server_round=4), marked)
    # the same as WAFFLE's embed on the run's trigger set with the round's generator
    model = fed.build_model()
    load_flat_params(model, weights)
    trigger = run_trigger_set(fed)
    generator = torch_generator(fed.scenario.seed, Stream.WATERMARK, 3)
    embed(model, trigger.x, trigger.y, WaffleSettings(max_steps=5), generator)
    assert torch.equal(flat_params(model).double(), marked)


def test_settings_waffle_refuses_name_the_watermark_key() -> None:
    fed = federation_for(make_scenario(watermark={"trigger_set": 20}))
    config = fed.scenario.watermark.model_copy(update={"momentum": 1.5})  # past the schema
    bad = dataclasses.replace(fed, scenario=fed.scenario.model_copy(update={"watermark": config}))
    with pytest.raises(ScenarioError, match="watermark.*momentum"):
        WaffleEmbedding.from_scenario(bad)
