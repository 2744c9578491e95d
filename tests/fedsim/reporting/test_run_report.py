"""``fedsim report RUN_DIR``: a run with an attack and the inversion probe, by threat direction."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedsim.cli import main
from fedsim.reporting.run_report import write_run_report
from tests.conftest import make_scenario
from tests.server.probes.test_inversion import ONE_IMAGE_CLIENTS, PROBE


def test_report_of_a_run_with_inversion_and_a_backdoor(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    scenario = make_scenario(
        rounds=2,
        runtime="inline",
        **ONE_IMAGE_CLIENTS,
        **{
            "privacy.inversion": {**PROBE, "rounds": [2]},
            "attack": {"name": "sign_flip", "count": 20},
        },
    )
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario.model_dump(mode="json")))
    run_dir = tmp_path / "run"
    assert main(["run", str(path), "--out", str(run_dir), "--no-progress"]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    (probe,) = summary["probes"]
    assert probe["name"] == "inversion" and probe["direction"] == "model→data"
    assert probe["threat_model"] == "update" and probe["rounds"] == [2]
    assert {"psnr", "ssim"} <= set(probe["figures"])
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert "psnr" not in rows[0] and summary["final_psnr"] == rows[1]["psnr"]

    assert main(["report", str(run_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "report.md")
    report = (run_dir / "report.md").read_text()
    sections = [line for line in report.splitlines() if line.startswith("## ")]
    assert sections == ["## data→model", "## model→data", "## model→model", "## data→data"]
    data_model, model_data = report.split("## model→data")
    assert "### Poisoning: sign_flip" in data_model
    assert "### Probe: inversion" in model_data.split("## model→model")[0]
    assert "| round | psnr | ssim |" in model_data
    images = list((run_dir / "inversion").glob("*.png"))
    assert images and f"inversion/{images[0].name}" in report
    assert report.count("Nothing in this run looks in this direction.") == 2
    assert (run_dir / "accuracy.png").stat().st_size > 0


def test_report_refuses_a_directory_that_is_neither(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fedsim: error") and "results.csv" in err


def test_a_backdoors_asr_is_tabled_once_under_its_probe(tmp_path: Path) -> None:
    rows = [
        {"round": r, "accuracy": 0.5, "loss": 1.0, "asr": a, "detection_precision": 1.0}
        for r, a in ((1, 0.25), (2, 0.75))
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "scenario.yaml").write_text(yaml.safe_dump({"attack": {"name": "backdoor"}}))
    probe = {
        "name": "backdoor",
        "direction": "data→model",
        "threat_model": "global_model",
        "rounds": [1, 2],
        "figures": ["asr"],
    }
    (tmp_path / "summary.json").write_text(json.dumps({"final_asr": 0.75, "probes": [probe]}))
    report = write_run_report(tmp_path).read_text()
    data_model = report.split("## model→data")[0]
    assert "### Poisoning: backdoor" in data_model and "### Probe: backdoor" in data_model
    assert "| round | detection_precision |" in data_model and "| round | asr |" in data_model
    assert data_model.count("| asr") == 1  # not also in the poisoning table
