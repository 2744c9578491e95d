"""The membership probe's settings, audited sets and shadow data (no training)."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fedsim.cli import main
from fedsim.data.shadow import shadow_data
from fedsim.errors import UnknownNameError
from fedsim.federation import Federation, federation_for
from fedsim.reference_models import reference_fingerprint
from fedsim.run.references import reference_scenario
from fedsim.scenario import MembershipConfig
from server.parts import ServerParts
from server.probes.membership import MembershipProbe
from server.probes.membership_attacks import MEMBERSHIP_ATTACKS
from server.sampling import sampled_by
from tests.conftest import TINY, make_scenario

BAD = {
    "rounds past the end": ({"rounds": [3]}, "privacy.membership.rounds"),
    "more targets than held out": ({"targets": 5000}, "privacy.membership.targets"),
    "client level for an outsider": ({"level": "client"}, "privacy.membership.level"),
    "update attack for an outsider": ({"attack": "update"}, "privacy.membership.threat_model"),
    "lira for the server": ({"threat_model": "server"}, "privacy.membership.attack"),
    "gradients for an outsider": ({"attack": "gradient_norm"}, "privacy.membership.threat_model"),
    "one reference online": ({"references": 1}, "privacy.membership.references"),
    "unknown attack": ({"attack": "shadow"}, "privacy.membership.attack"),
    "unknown threat model": ({"threat_model": "god"}, "privacy.membership.threat_model"),
}


def _probe(fed: Federation) -> MembershipProbe:
    """The membership probe as the server builds it."""
    probe = ServerParts.build(fed).probes.find("membership")
    assert isinstance(probe, MembershipProbe)
    return probe


@pytest.mark.parametrize("block, key", BAD.values(), ids=BAD.keys())
def test_bad_settings_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], block: dict, key: str
) -> None:
    raw = {**TINY, "privacy": {"membership": {"targets": 20, **block}}}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert key in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_targets_are_seeded_members_of_sampled_clients_and_unseen_non_members() -> None:
    scenario = make_scenario(
        **{
            "data.num_clients": 5,
            "clients.per_round": 2,
            "rounds": 3,
            "privacy.membership": {"targets": 30, "rounds": [1, 3]},
        }
    )
    fed = federation_for(scenario)
    probe, again = (_probe(fed) for _ in range(2))
    t = probe.targets
    assert torch.equal(t.x, again.targets.x) and np.array_equal(t.home, again.targets.home)
    assert t.members.tolist() == [True] * 30 + [False] * 30
    sampled = set(sampled_by(scenario, 1))  # members: clients that trained by round 1
    assert set(t.home.tolist()) <= sampled and len(sampled) == 2
    for i, c in zip(t.train_index, t.home[:30], strict=True):
        assert i in fed.data.partitions[c]
    x_out, _ = ServerParts.build(fed).data.held_out
    train = fed.data.dataset.x_train.reshape(len(fed.data.dataset.y_train), -1)
    for row in t.x[30:].reshape(30, -1):  # non-members: held-out rows, never training rows
        assert (x_out.reshape(len(x_out), -1) == row).all(1).any()
        assert not (train == row).all(1).any()
    assert probe.threat_model == "query" and probe.rounds == [1, 3]
    assert probe.in_mask.shape == (4, 60) and (probe.in_mask.sum(0) == 2).all()


def test_client_threat_model_runs_every_round_and_server_sees_updates() -> None:
    client = _probe(
        federation_for(make_scenario(**{"privacy.membership": {"threat_model": "client"}}))
    )
    server = _probe(
        federation_for(
            make_scenario(**{"privacy.membership": {"threat_model": "server", "attack": "update"}})
        )
    )
    assert (client.threat_model, client.rounds, client.reference_rounds) == (
        "global_model",
        [1, 2],
        [1, 2],
    )
    assert (server.threat_model, server.reference_rounds) == ("update", [])


def test_shadow_data_drops_out_members_and_adds_in_non_members() -> None:
    fed = federation_for(make_scenario(**{"privacy.membership": {"targets": 10}}))
    probe = _probe(fed)
    t, mask = probe.targets, probe.in_mask[0]
    data = shadow_data(fed.data, t.train_index, mask[:10], t.extra, mask[10:], t.home[10:])
    kept = np.concatenate(data.partitions)
    assert set(t.train_index[~mask[:10]]).isdisjoint(kept)
    assert set(t.train_index[mask[:10]]) <= set(kept)
    base = len(fed.data.dataset.y_train)
    added = kept[kept >= base]
    assert len(added) == mask[10:].sum()
    assert torch.equal(data.dataset.x_train[torch.from_numpy(added)], t.extra[0][mask[10:]])
    others = np.setdiff1d(np.concatenate(fed.data.partitions), t.train_index)
    assert set(others) <= set(kept)  # every non-target example stays


def test_reference_scenarios_do_not_depend_on_the_main_runtime() -> None:
    inline = make_scenario(**{"privacy.membership": {}})
    vectorized = make_scenario(**{"privacy.membership": {}, "runtime": "vectorized"})
    assert reference_fingerprint(inline) == reference_fingerprint(vectorized)
    a, b = (reference_scenario(s, 1, 2, "inline") for s in (inline, vectorized))
    assert a == b and a.privacy.membership is None and a.seed != inline.seed
    assert reference_fingerprint(inline) != reference_fingerprint(make_scenario(seed=1))


def test_every_scenario_attack_name_is_a_registered_attack() -> None:
    names = typing.get_args(MembershipConfig.model_fields["attack"].annotation)
    assert MEMBERSHIP_ATTACKS.names() == sorted(names)
    with pytest.raises(UnknownNameError, match="known: gradient_norm, lira, loss, rmia, update"):
        MEMBERSHIP_ATTACKS.get("shadow")
