"""robustness.certify in runs: certify_round<r>.json, radii, figures, seeding, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from scipy.stats import beta, norm

from fedsim.certify import certified_accuracy
from fedsim.cli import main
from fedsim.errors import ScenarioError
from tests.conftest import make_scenario
from tests.fedsim.run.test_runner import run_scenario_in_memory

CERTIFY = {"sigma": 0.25, "n0": 10, "n": 60, "alpha": 0.01, "samples": 12}
ROBUSTNESS = {
    "samples": 16,
    "rounds": [2],
    "attacks": [{"name": "fgsm", "eps": 0.1}],
    "certify": CERTIFY,
    "save_plots": False,
}


def test_certify_writes_the_records_and_reports_certified_accuracy(
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    scenario = make_scenario(rounds=2, robustness=ROBUSTNESS)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "certified_accuracy" not in rows[0]
    records = json.loads((run_dir / "robustness" / "certify_round2.json").read_text())
    assert len(records) == CERTIFY["samples"]
    for row in records:
        assert set(row) == {"label", "prediction", "count", "n", "radius"}
        assert row["n"] == CERTIFY["n"] and 0 <= row["count"] <= row["n"]
        k, n = row["count"], row["n"]
        p_lower = beta.ppf(CERTIFY["alpha"], k, n - k + 1) if k else 0.0
        if p_lower <= 0.5:
            assert (row["prediction"], row["radius"]) == (-1, 0.0)
        else:
            assert row["prediction"] >= 0
            assert row["radius"] == pytest.approx(CERTIFY["sigma"] * norm.ppf(p_lower))
    assert any(row["prediction"] == row["label"] for row in records)  # a trained model
    figure = rows[1]["certified_accuracy"]
    assert set(figure) == {"r0.25", "r0.5", "r1"}
    assert figure == certified_accuracy(records, [0.25, 0.5, 1.0])
    assert figure["r0.25"] >= figure["r0.5"] >= figure["r1"]
    assert rows[1]["certify_s"] > 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_certified_accuracy"] == figure
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    assert "certified accuracy (r0.25)" in (run_dir / "report.md").read_text()


def test_same_seed_same_certificates() -> None:
    scenario = make_scenario(rounds=1, robustness={**ROBUSTNESS, "rounds": None})
    first, _ = run_scenario_in_memory(scenario)
    second, _ = run_scenario_in_memory(scenario)
    assert first[0]["certified_accuracy"] == second[0]["certified_accuracy"]


@pytest.mark.parametrize(
    ("certify", "path", "words"),
    [
        ({"sigma": 0}, "robustness.certify.sigma", "greater than 0"),
        ({"n": 0}, "robustness.certify.n", "greater than or equal to 1"),
        ({"alpha": 1.0}, "robustness.certify.alpha", "less than 1"),
        ({"denoiser": "dncnn"}, "robustness.certify.denoiser", "'none' or 'diffusion'"),
        ({"radii": [-0.5]}, "robustness.certify.radii", ">= 0"),
        ({"radii": []}, "robustness.certify.radii", "at least 1"),
        ({"level": 3}, "robustness.certify.level", "unknown key"),
    ],
)
def test_bad_certify_settings_name_the_key(certify: dict, path: str, words: str) -> None:
    with pytest.raises(ScenarioError) as info:
        make_scenario(rounds=1, robustness={"certify": certify})
    assert info.value.path == path
    assert words in str(info.value)


def test_bad_certify_settings_exit_2(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    raw = make_scenario(rounds=1).model_dump(mode="json")
    raw["robustness"] = {"certify": {"sigma": -1}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    assert "robustness.certify.sigma" in capsys.readouterr().err
