"""The malformed-scenario corpus: every file is refused with exit 2, one line, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedsim.cli import main

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.yaml"))


def test_the_corpus_is_large_enough() -> None:
    assert len(CORPUS) >= 30


def refused(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    out = tmp_path / "run"
    if path.stem.startswith("sweep_"):  # a bad sweep point is checked by `fedsim sweep`
        code = main(["sweep", str(path), "--out", str(out)])
    else:
        code = main(["run", str(path), "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert not out.exists(), "nothing may be written for a refused scenario"
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1 and err.startswith("fedsim: error: ")
    return err


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_scenario_exits_2_with_one_line(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refused(path, tmp_path, capsys)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("missing_rounds", "rounds"),
        ("unknown_nested_key", "clients.per_rnd"),
        ("more_malicious_than_clients", "attack.count"),
        ("per_round_over_clients", "clients.per_round"),
        ("bulyan_too_few_clients", "bulyan"),
        ("python_object_tag", "YAML"),
        ("yaml_is_list", "mapping"),
        ("empty", "empty"),
        ("sweep_bad_point", "sweep point"),
        ("rounds_negative", "rounds"),
    ],
)
def test_messages_name_the_problem(
    name: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert fragment in refused(
        Path(__file__).parent / "malformed" / f"{name}.yaml", tmp_path, capsys
    )


def test_a_10_mb_scenario_is_refused_before_parsing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\nrounds: 2\n" + "# padding\n" * 1_000_000)
    assert big.stat().st_size >= 10_000_000
    assert "bytes" in refused(big, tmp_path, capsys)
