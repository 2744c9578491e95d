"""Scenario schema: defaults, overrides, and one clear error (exit 2) per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cli import main
from fedsim.errors import ScenarioError
from fedsim.scenario import apply_overrides, load_scenario, parse_scenario

GOOD = """\
name: ok
rounds: 2
runtime: inline
device: cpu
data: {dataset: digits, num_clients: 4}
model: {name: mlp}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_fill_everything_but_the_essentials() -> None:
    s = parse_scenario({"name": "x", "rounds": 3})
    assert (s.runtime, s.device, s.seed) == ("ray", "auto", 0)
    assert s.data.dataset == "digits" and s.data.partition == "iid"
    assert s.defense.aggregator == "fedavg" and s.attack.name == "none"
    assert s.clients_per_round == s.data.num_clients == 10


def test_overrides_are_parsed_as_yaml_and_create_missing_blocks() -> None:
    raw = apply_overrides(
        {"name": "x", "rounds": 1},
        ["rounds=5", "clients.lr=0.1", "data.partition=dirichlet", "defense.params={f: 1}"],
    )
    assert raw["rounds"] == 5 and raw["clients"]["lr"] == 0.1
    assert raw["data"] == {"partition": "dirichlet"} and raw["defense"]["params"] == {"f": 1}


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("rounds: 2\n", "name", "required"),
        ("name: x\n", "rounds", "required"),
        ("name: x\nrounds: 2\nbogus: 1\n", "bogus", "unknown key"),
        (
            "name: x\nrounds: 2\ndata: {datset: digits}\n",
            "data.datset",
            "allowed keys here: dataset",
        ),
        ("name: x\nrounds: two\n", "rounds", "integer"),
        ("name: x\nrounds: 0\n", "rounds", "greater than or equal to 1"),
        ("name: x\nrounds: 2\nclients: {lr: -1}\n", "clients.lr", "greater than 0"),
        ("name: x\nrounds: 2\nruntime: gpu\n", "runtime", "'ray', 'inline' or 'vectorized'"),
        ("name: x\nrounds: 2\ndata: {partition: random}\n", "data.partition", "iid"),
        (
            "name: x\nrounds: 2\nclients: {per_round: 11}\n",
            "clients.per_round",
            "at most data.num_clients = 10",
        ),
        (
            "name: x\nrounds: 2\nattack: {name: alie, fraction: 0.1, count: 1}\n",
            "attack",
            "not both",
        ),
        ("- name: x\n- rounds: 2\n", "scenario", "mapping"),
        ("", "scenario", "empty"),
        ("name: x\nrounds: [2\n", "scenario", "invalid YAML at line"),
        ("!!python/object/apply:os.system ['echo hacked']\n", "scenario", "invalid YAML"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(write(tmp_path, text))
    message = str(info.value)
    assert message.startswith(f"{key}:"), message
    assert fragment in message, message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("data.dataset=mnist-typo", "data.dataset"),
        ("model.name=transformer", "model.name"),
        ("defense.aggregator=nope", "defense.aggregator"),
        ("defense.params={bogus: 1}", "defense.params"),
        ("attack={name: nope, fraction: 0.1}", "attack.name"),
        ("model.params={depth: 3}", "model.params"),
        ("data.num_clients=5000", "data"),
    ],
)
def test_cli_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, key: str
) -> None:
    out = tmp_path / "run"
    code = main(
        ["run", str(write(tmp_path, GOOD)), "--out", str(out), "--set", change, "--no-progress"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"fedsim: error: {key}:"), err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_rejects_missing_file_and_malformed_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path / "missing.yaml")]) == 2
    assert "no such scenario file" in capsys.readouterr().err
    assert main(["run", str(write(tmp_path, GOOD)), "--set", "rounds"]) == 2
    assert "--set" in capsys.readouterr().err


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + "# " + "x" * 1_100_000 + "\n")
    with pytest.raises(ScenarioError, match="at most 1000000 bytes"):
        load_scenario(path)


def test_robustness_without_attacks_is_refused() -> None:
    """No attack would report the clean accuracy as ``final_robust_accuracy``."""
    with pytest.raises(ScenarioError) as info:
        parse_scenario({"name": "x", "rounds": 2, "robustness": {"attacks": []}})
    assert (info.value.path, info.value.value) == ("robustness.attacks", [])
    assert str(info.value).startswith("robustness.attacks: got []; at least one attack")
    default = parse_scenario({"name": "x", "rounds": 2, "robustness": {}}).robustness
    assert default is not None and [a.name for a in default.attacks] == ["fgsm", "pgd"]
