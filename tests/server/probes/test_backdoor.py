"""The backdoor probe: on for backdoor attacks only, ASR on the server's held-out set, lifespan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from fedsim.attacks import backdoor_asr, text_backdoor_asr
from fedsim.federation import federation_for
from server.parts import ServerParts
from server.probes import RoundView
from server.probes.backdoor import BackdoorProbe
from tests.conftest import make_scenario
from tests.fedsim.data.test_text import write_corpus
from tests.fedsim.run.test_text_preflight import text_scenario

BACKDOOR = {"name": "backdoor", "fraction": 0.2, "params": {"poison_fraction": 0.5}}


@pytest.mark.parametrize("attack", [{"name": "none"}, {"name": "sign_flip", "count": 1}])
def test_no_backdoor_no_probe(attack: dict[str, Any]) -> None:
    parts = ServerParts.build(federation_for(make_scenario(attack=attack)))
    assert parts.probes.find("backdoor") is None


def test_asr_every_round_on_the_servers_held_out_set() -> None:
    scenario = make_scenario(
        rounds=3, attack=BACKDOOR, defense={"aggregator": "fltrust", "params": {"root_size": 50}}
    )
    fed = federation_for(scenario)
    parts = ServerParts.build(fed)
    probe = parts.probes.find("backdoor")
    assert isinstance(probe, BackdoorProbe)
    assert list(probe.rounds) == [1, 2, 3]
    assert (probe.direction, probe.threat_model) == ("data→model", "global_model")
    weights = fed.initial_weights()
    figures = probe.observe(RoundView(1, weights, None, []))
    model = fed.build_model().eval()
    x, y = parts.data.held_out
    with torch.no_grad():
        expected = backdoor_asr(model, x, y, fed.attack)  # type: ignore[arg-type]
    assert figures == {"asr": expected}


def test_lifespan_after_the_window_and_through_a_checkpoint() -> None:
    window = {**BACKDOOR, "stop_round": 2}
    fed = federation_for(make_scenario(rounds=5, attack=window, **{"clients.per_round": 5}))
    probe = BackdoorProbe.from_scenario(fed, ServerParts.build(fed).data)
    assert probe is not None
    probe.load_state_dict({"asr": {"1": 0.9, "2": 0.95, "3": 0.7, "4": 0.4}, "last_poisoned": 2})
    assert probe.summary() == {"backdoor_lifespan": 2}  # round 4 is the first below 0.5
    again = BackdoorProbe.from_scenario(fed, ServerParts.build(fed).data)
    assert again is not None
    again.load_state_dict(probe.state_dict())
    assert again.summary() == probe.summary()
    again.load_state_dict({"asr": {"1": 0.9, "2": 0.95}, "last_poisoned": 2})
    assert again.summary() == {}  # the window has not closed before the last measured round


def test_text_backdoor_asr_on_the_held_out_windows(tmp_path: Path) -> None:
    attack = {"name": "text_backdoor", "count": 1, "params": {"trigger": "he said "}}
    fed = federation_for(text_scenario(write_corpus(tmp_path), attack=attack))
    parts = ServerParts.build(fed)
    probe = parts.probes.find("backdoor")
    assert isinstance(probe, BackdoorProbe)
    figures = probe.observe(RoundView(1, fed.initial_weights(), None, []))
    model = fed.build_model().eval()
    with torch.no_grad():
        expected = text_backdoor_asr(model, parts.data.held_out[0], fed.attack)  # type: ignore[arg-type]
    assert figures == {"asr": expected}
