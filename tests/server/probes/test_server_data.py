"""The server's held-out set, built once: FLTrust's root examples reach no probe."""

from __future__ import annotations

import torch

from fedsim.evasion import to_pixel_space
from fedsim.federation import federation_for
from server.parts import ServerParts
from server.probes.backdoor import BackdoorProbe
from server.probes.extraction import ExtractionProbe
from server.probes.membership import MembershipProbe
from server.probes.robustness import RobustnessProbe
from server.probes.watermark import WatermarkProbe
from server.server_data import ServerData
from tests.conftest import make_scenario

PROBES = {
    "attack": {"name": "backdoor", "fraction": 0.2, "params": {"poison_fraction": 0.5}},
    "extraction": {"queries": 50},
    "watermark": {"trigger_set": 10, "removal": {"prune": [0.5]}},
    "robustness": {"samples": 100, "transfer": {"public_samples": 1000}},
    "privacy.membership": {"targets": 20, "attack": "rmia"},
}


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.contiguous()}


def test_with_fltrust_no_probe_evaluates_on_or_holds_a_root_example() -> None:
    scenario = make_scenario(
        rounds=1, defense={"aggregator": "fltrust", "params": {"root_size": 100}}, **PROBES
    )
    fed = federation_for(scenario)
    assert len(_rows(fed.data.dataset.x_test)) == len(fed.data.dataset.y_test)  # rows tell apart
    parts = ServerParts.build(fed)
    assert parts.data.root is not None and parts.root_update is not None
    root_x = parts.data.root[0]
    assert root_x is parts.root_update.x  # FLTrust trains on the same root set
    root, held_out = _rows(root_x), _rows(parts.data.held_out[0])
    assert len(root) == 100 and len(held_out) == len(fed.data.dataset.y_test) - 100
    assert not root & held_out
    found = {type(p): p for p in parts.probes.probes}
    backdoor, extraction = found[BackdoorProbe], found[ExtractionProbe]
    watermark, robustness = found[WatermarkProbe], found[RobustnessProbe]
    membership = found[MembershipProbe]
    sets = {
        "backdoor": backdoor.x,
        "extraction evaluation": extraction.x_eval,
        "extraction queries": extraction.pool,
        "watermark evaluation": watermark.split.eval_x,
        "watermark public": watermark.split.public_x,
        "robustness transfer public": robustness.held_out[0][robustness.public],
        "membership non-members": membership.targets.extra[0],
        "membership population": membership.targets.population[0],
    }
    for name, x in sets.items():
        assert len(x) and _rows(x) <= held_out, name
        assert not _rows(x) & root, name
    dataset = fed.data.dataset
    pixel_root = _rows(to_pixel_space(root_x, dataset.mean, dataset.std))
    assert not _rows(robustness.x) & pixel_root  # the attacked subset, in pixel space
    # the thief's split covers the whole held-out set, root set taken out
    split = watermark.split
    assert len(split.public_y) + len(split.eval_y) == len(held_out)


def test_without_a_root_set_the_probes_measure_on_the_whole_held_out_set() -> None:
    fed = federation_for(make_scenario(rounds=1, extraction={"queries": 50}))
    data = ServerParts.build(fed).data
    assert data.root is None
    assert data.held_out[0] is fed.data.dataset.x_test
    assert data.held_out[1] is fed.data.dataset.y_test


def test_the_root_split_is_seeded_and_keeps_the_held_out_order() -> None:
    x, y = torch.arange(20.0)[:, None], torch.arange(20)
    first, again = (ServerData.split(x, y, 5, seed=3) for _ in range(2))
    assert first.root is not None and again.root is not None
    assert torch.equal(first.root[1], again.root[1])
    assert first.held_out[1].tolist() == sorted(first.held_out[1].tolist())
    other = ServerData.split(x, y, 5, seed=4)
    assert other.root is not None and not torch.equal(other.root[1], first.root[1])
