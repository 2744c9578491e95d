"""The sweep report's privacy-leakage figure: accuracy, ε and the audit's ε_lb against σ."""

from __future__ import annotations

import csv
from pathlib import Path

from fedsim.reporting.sweep_report import write_report

COLUMNS = [
    "point",
    "privacy.local_dp",
    "privacy.central_dp",
    "seed",
    "final_accuracy",
    "final_epsilon",
    "final_epsilon_lower_bound",
    "wall_s",
    "status",
]


def test_leakage_figure_against_sigma_for_local_and_central_dp(tmp_path: Path) -> None:
    rows = []
    for i, sigma in enumerate([0.0, 0.5, 1.0]):
        block = f'{{"max_grad_norm":1.0,"noise_multiplier":{sigma}}}'
        eps = "" if sigma == 0 else str(10 / sigma)
        rows.append([f"l{i}", block, "null", "0", "0.9", eps, "1.5", "3", "ok"])
        rows.append([f"c{i}", "null", block, "0", "0.8", eps, "0.5", "3", "ok"])
    with open(tmp_path / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    text = write_report(tmp_path).read_text(encoding="utf-8")
    assert "## Privacy leakage against the noise multiplier" in text
    assert (tmp_path / "figures" / "privacy_leakage.png").stat().st_size > 0
    assert "audit ε lower bound" in text  # the table's column label


def test_no_leakage_figure_without_an_audit_column(tmp_path: Path) -> None:
    with open(tmp_path / "results.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["point", "privacy.local_dp.noise_multiplier", "final_accuracy", "status"])
        writer.writerows([["a", "0.5", "0.9", "ok"], ["b", "1.0", "0.8", "ok"]])
    assert "Privacy leakage" not in write_report(tmp_path).read_text(encoding="utf-8")
