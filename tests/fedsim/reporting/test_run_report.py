"""``fedsim report RUN_DIR``: a run with an attack and the inversion probe, by threat direction."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fedsim.cli import main
from fedsim.reporting.run_report import write_run_report
from fedsim.reporting.scorecard import scorecard_rows
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
    assert sections == [
        "## Scorecard",
        "## Training",
        "## data→model",
        "## model→data",
        "## model→model",
        "## data→data",
    ]
    scorecard = _table(report, "## Scorecard")
    assert scorecard[0] == ["figure", "value", "section"]
    assert scorecard[1:] == [
        ["final accuracy (main task)", f"{summary['final_accuracy']:.4g}", "Training"],
        [
            "reconstruction PSNR (dB, mean over attacked updates)",
            f"{summary['psnr']:.4g}",
            "model→data › Probe: inversion",
        ],
    ]
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


def _table(report: str, heading: str) -> list[list[str]]:
    """The cells of the first Markdown table after ``heading`` (separator row left out)."""
    lines = report.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not all(set(c) <= set("-: ") for c in cells):
            table.append(cells)
    return table


SUMMARY = {
    "rounds": 3,
    "final_accuracy": 0.8123456,
    "final_asr": 0.75,
    "backdoor_lifespan": 2,
    "final_robust_accuracy": 0.25,
    "final_robust_accuracy_pgd-linf-0.1": 0.3,
    "final_certified_accuracy": {"r0.25": 0.5, "r0.5": 0.375},
    "final_epsilon": 3.5,
    "final_epsilon_lower_bound": 0.9,
    "final_mia_auc": 0.61,
    "final_mia_tpr_at_fpr_0.001": 0.004,
    "psnr": 17.25,
    "final_extraction_fidelity": 0.93,
    "final_watermark_accuracy": None,  # written as null: not finite
    "probes": [
        {"name": "robustness", "direction": "data→model", "figures": ["robust_accuracy"]},
        {"name": "certify", "direction": "data→model", "figures": ["certified_accuracy"]},
        {"name": "audit", "direction": "model→data", "figures": ["epsilon_lower_bound"]},
        {"name": "membership", "direction": "model→data", "figures": ["mia_auc"]},
        {"name": "extraction", "direction": "model→model", "figures": ["extraction_fidelity"]},
        {"name": "watermark", "direction": "data→data", "figures": ["watermark_accuracy"]},
    ],
}


def _run_dir(tmp_path: Path, summary: dict | None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "scenario.yaml").write_text("name: card\nrounds: 3\n")
    rows = [
        {"round": 1, "accuracy": 0.5, "loss": 1.0, "asr": 0.9, "mia_auc": 0.7},
        {"round": 2, "accuracy": 0.6, "loss": 0.8, "robust_accuracy": {"worst_case": 0.2}},
        {"round": 3, "accuracy": 0.7, "loss": 0.7, "asr": 0.4},
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def test_the_scorecard_has_a_row_per_headline_figure_with_its_section(tmp_path: Path) -> None:
    report = write_run_report(_run_dir(tmp_path, SUMMARY)).read_text()
    first_section = next(line for line in report.splitlines() if line.startswith("## "))
    assert first_section == "## Scorecard"
    assert report.index("## Scorecard") < report.index("## Training") < report.index("## data→")
    assert _table(report, "## Scorecard")[1:] == [
        ["final accuracy (main task)", "0.8123", "Training"],
        ["backdoor attack success rate", "0.75", "data→model › Poisoning"],
        [
            "backdoor lifespan (rounds after the last poisoned one)",
            "2",
            "data→model › Poisoning",
        ],
        ["worst-case robust accuracy", "0.25", "data→model › Probe: robustness"],
        ["certified accuracy (r0.25)", "0.5", "data→model › Probe: certify"],
        ["certified accuracy (r0.5)", "0.375", "data→model › Probe: certify"],
        ["ε (accounted)", "3.5", "model→data › Accounted privacy"],
        ["ε lower bound (privacy audit)", "0.9", "model→data › Probe: audit"],
        ["membership inference AUC", "0.61", "model→data › Probe: membership"],
        ["membership inference TPR at 0.1 % FPR", "0.004", "model→data › Probe: membership"],
        [
            "reconstruction PSNR (dB, mean over attacked updates)",
            "17.25",
            "model→data › Probe: inversion",
        ],
        [
            "extraction fidelity (agreement of the stolen model)",
            "0.93",
            "model→model › Probe: extraction",
        ],
        ["watermark accuracy", "–", "data→data › Probe: watermark"],
    ]


def test_an_interrupted_run_scores_its_last_recorded_figures(tmp_path: Path) -> None:
    report = write_run_report(_run_dir(tmp_path, None)).read_text()
    assert _table(report, "## Scorecard")[1:] == [
        ["final accuracy (main task)", "0.7", "Training"],
        ["backdoor attack success rate", "0.4", "data→model › Poisoning"],
        ["worst-case robust accuracy", "0.2", "data→model › Probe: robustness"],
        ["membership inference AUC", "0.7", "model→data › Probe: membership"],
    ]


def test_a_figure_written_as_null_shows_a_dash(tmp_path: Path) -> None:
    report = write_run_report(_run_dir(tmp_path, {"rounds": 3, "final_accuracy": None})).read_text()
    assert _table(report, "## Scorecard")[1:] == [["final accuracy (main task)", "–", "Training"]]


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


def test_the_scorecard_shows_task_and_personal_accuracies() -> None:
    summary = {
        "final_accuracy": 0.8,
        "final_task_accuracy": {"digit": 0.8, "parity": 0.9},
        "final_personalized_accuracy": 0.95,
        "final_personalized_task_accuracy": {"digit": 0.95, "parity": 0.99},
    }
    rows = scorecard_rows(summary, [])
    assert [r[:2] for r in rows] == [
        ["final accuracy (main task)", "0.8"],
        ["final accuracy per task (digit)", "0.8"],
        ["final accuracy per task (parity)", "0.9"],
        ["personalized accuracy (personal models, clients' own test splits)", "0.95"],
        ["personalized accuracy per task (digit)", "0.95"],
        ["personalized accuracy per task (parity)", "0.99"],
    ]
