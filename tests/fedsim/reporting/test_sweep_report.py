"""``fedsim report``: mean ± sample std tables from a hand-made results.csv, figures, fallbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fedsim.cli import main
from fedsim.reporting.sweep_report import (
    Stat,
    determined_keys,
    figure_columns,
    format_stat,
    group_stats,
    key_columns,
    mean_std,
    pivot,
    read_results,
    worst_case,
    write_report,
)

# Two aggregators × two attacks; fedavg/backdoor seed 2 failed. Hand-computed below.
RESULTS = """\
point,defense.aggregator,attack.name,attack.params,seed,final_accuracy,best_accuracy,final_asr,final_loss,wall_s,status
p1,fedavg,none,{},0,0.80,0.85,,0.5,10,ok
p2,fedavg,none,{},1,0.90,0.90,,0.4,12,ok
p3,fedavg,none,{},2,1.00,1.00,,0.3,14,ok
p4,fedavg,backdoor,"{""target"":0}",0,0.70,0.75,0.9,0.6,11,ok
p5,fedavg,backdoor,"{""target"":0}",1,0.60,0.80,0.7,0.7,11,ok
p6,fedavg,backdoor,"{""target"":0}",2,,,,,,failed: RuntimeError: disk on fire
p7,krum,none,{},0,0.50,0.60,,0.9,20,ok
p8,krum,none,{},1,0.70,0.70,,0.8,22,ok
p9,krum,backdoor,"{""target"":0}",0,0.40,0.50,0.1,1.0,21,ok
p10,krum,backdoor,"{""target"":0}",1,0.60,0.60,0.3,0.9,23,ok
"""
SQRT_2 = math.sqrt(2)


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    (tmp_path / "results.csv").write_text(RESULTS)
    return tmp_path


def test_columns_are_split_into_keys_and_figures(sweep_dir: Path) -> None:
    columns, rows = read_results(sweep_dir / "results.csv")
    keys = key_columns(columns)

    assert keys == ["defense.aggregator", "attack.name", "attack.params"]
    assert determined_keys(rows, keys) == {"attack.params": "attack.name"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert figure_columns(columns, ok) == ["final_accuracy", "best_accuracy", "final_asr", "wall_s"]


def test_groups_have_the_hand_computed_mean_and_sample_std(sweep_dir: Path) -> None:
    _, rows = read_results(sweep_dir / "results.csv")
    groups = group_stats(
        rows, ["defense.aggregator", "attack.name"], ["final_accuracy", "final_asr"]
    )

    assert [tuple(g.values.values()) for g in groups] == [
        ("fedavg", "none"),
        ("fedavg", "backdoor"),
        ("krum", "none"),
        ("krum", "backdoor"),
    ]
    fedavg_none, fedavg_backdoor, krum_none, krum_backdoor = (g.stats for g in groups)
    # (0.8, 0.9, 1.0): mean 0.9, s² = (0.01 + 0 + 0.01) / 2 → s = 0.1
    assert fedavg_none["final_accuracy"].mean == pytest.approx(0.9)
    assert fedavg_none["final_accuracy"].std == pytest.approx(0.1)
    assert fedavg_none["final_accuracy"].n == 3
    assert fedavg_none["final_asr"] == Stat(None, None, 0)
    # (0.7, 0.6) — the failed seed is left out: mean 0.65, s = 0.05·√2
    assert fedavg_backdoor["final_accuracy"].n == 2
    assert fedavg_backdoor["final_accuracy"].mean == pytest.approx(0.65)
    assert fedavg_backdoor["final_accuracy"].std == pytest.approx(0.05 * SQRT_2)
    assert fedavg_backdoor["final_asr"].mean == pytest.approx(0.8)
    assert fedavg_backdoor["final_asr"].std == pytest.approx(0.1 * SQRT_2)
    assert krum_none["final_accuracy"].mean == pytest.approx(0.6)
    assert krum_none["final_accuracy"].std == pytest.approx(0.1 * SQRT_2)
    assert krum_backdoor["final_asr"].mean == pytest.approx(0.2)
    assert groups[1].points == ["p4", "p5"]


def test_pivot_and_worst_case(sweep_dir: Path) -> None:
    _, rows = read_results(sweep_dir / "results.csv")
    groups = group_stats(rows, ["defense.aggregator", "attack.name"], ["final_accuracy"])
    row_values, col_values, cells = pivot(
        groups, "defense.aggregator", "attack.name", "final_accuracy"
    )

    assert row_values == ["fedavg", "krum"] and col_values == ["none", "backdoor"]
    assert cells["krum", "backdoor"].mean == pytest.approx(0.5)
    worst = worst_case(row_values, col_values, cells)
    assert worst["fedavg"][0] == "backdoor" and worst["fedavg"][1].mean == pytest.approx(0.65)
    assert worst["krum"][0] == "backdoor" and worst["krum"][1].mean == pytest.approx(0.5)


def test_mean_std_matches_numpy_with_ddof_1() -> None:
    values = np.random.default_rng(0).random(7)
    stat = mean_std(values.tolist())
    assert stat.mean == pytest.approx(values.mean())
    assert stat.std == pytest.approx(values.std(ddof=1))
    assert mean_std([0.3]) == Stat(0.3, None, 1)
    assert mean_std([]) == Stat(None, None, 0)


def test_format_stat() -> None:
    assert format_stat(Stat(0.9, 0.1, 3)) == "0.900 ± 0.100"
    assert format_stat(Stat(0.9, 0.1, 2), expected_n=3) == "0.900 ± 0.100 (n=2)"
    assert format_stat(Stat(12.34, None, 1), digits=1) == "12.3"
    assert format_stat(Stat(None, None, 0)) == "–"


def write_metrics(run_dir: Path, accuracies: list[float]) -> None:
    run_dir.mkdir(parents=True)
    lines = [json.dumps({"round": i + 1, "accuracy": a}) for i, a in enumerate(accuracies)]
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_report_for_an_aggregator_attack_sweep(sweep_dir: Path) -> None:
    for point in ("p1", "p2", "p4", "p7", "p9"):
        write_metrics(sweep_dir / point, [0.3, 0.6])

    assert main(["report", str(sweep_dir)]) == 0

    report = (sweep_dir / "report.md").read_text()
    assert "9 of 10 runs finished ok, 1 failed" in report
    assert "## Defences: worst case over attacks and strengths" in report
    assert (
        "| fedavg | 0.900 ± 0.100 | +0.000 | 0.650 ± 0.071 — backdoor | 0.800 ± 0.141 — backdoor "
        "| – | – | – | – |" in report
    )
    assert "| krum | 0.600 ± 0.141 | -0.300 | 0.500 ± 0.141 — backdoor |" in report
    assert "| aggregator | none | backdoor | worst case |" in report
    assert "| fedavg | 0.900 ± 0.100 | 0.650 ± 0.071 (n=2) | 0.650 ± 0.071 (backdoor) |" in report
    assert "| krum | 0.600 ± 0.141 (n=2) | 0.500 ± 0.141 (n=2) | 0.500 ± 0.141 (backdoor) |" in (
        report
    )
    assert "| aggregator | backdoor |" in report and "| krum | 0.200 ± 0.141 (n=2) |" in report
    assert "| p6 | failed: RuntimeError: disk on fire |" in report
    for name in (
        "final_accuracy_heatmap",
        "worst_case_accuracy",
        "final_asr_heatmap",
        "accuracy_per_round",
    ):
        assert f"(figures/{name}.png)" in report
        assert (sweep_dir / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


def test_report_without_aggregator_and_attack_axes(tmp_path: Path) -> None:
    """A privacy sweep: a table per setting (with ε), accuracy per round and against ε."""
    (tmp_path / "results.csv").write_text(
        "point,privacy.local_dp.noise_multiplier,seed,final_accuracy,best_accuracy,final_asr,"
        "final_epsilon,wall_s,status\n"
        "a0,0.5,0,0.90,0.91,,8.0,5,ok\n"
        "a1,0.5,1,0.80,0.85,,8.5,5,ok\n"
        "b0,1.0,0,0.70,0.75,,2.0,5,ok\n"
        "b1,1.0,1,0.60,0.75,,3.0,5,ok\n"
    )
    for point, acc in (("a0", 0.9), ("a1", 0.8), ("b0", 0.7), ("b1", 0.6)):
        write_metrics(tmp_path / point, [acc / 2, acc])

    path = write_report(tmp_path)

    report = path.read_text()
    assert "aggregator × attack" not in report and "heatmap" not in report
    assert (
        "| privacy.local_dp.noise_multiplier | runs | final accuracy | best accuracy | final ε "
        "| wall s |" in report
    )
    assert "| 1.0 | 2 | 0.650 ± 0.071 | 0.750 ± 0.000 | 2.500 ± 0.707 | 5.0 ± 0.0 |" in report
    assert (tmp_path / "figures" / "accuracy_per_round.png").is_file()
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "accuracy_per_round.png",
        "privacy_utility.png",  # final accuracy against ε
    ]


def test_the_runtime_column_is_a_key_only_where_runs_differ_in_it(tmp_path: Path) -> None:
    """``fedsim sweep`` writes the runtime each run used: named once, or a key when it varies."""
    header = "point,seed,runtime,final_accuracy,best_accuracy,final_asr,wall_s,status\n"
    (tmp_path / "results.csv").write_text(
        header + "s0,0,inline,0.90,0.91,,5,ok\ns1,1,inline,0.80,0.85,,5,ok\n"
    )
    report = write_report(tmp_path).read_text()
    assert "Same in every run: `runtime` = inline." in report and "Swept:" not in report
    assert "| runs | final accuracy |" in report  # one group of both seeds

    (tmp_path / "results.csv").write_text(
        header + "v0,0,vectorized,0.90,0.91,,5,ok\ni0,0,inline,0.80,0.85,,5,ok\n"
    )
    report = write_report(tmp_path).read_text()
    assert "Swept: `runtime`." in report and "Same in every run" not in report
    assert "| runtime | runs | final accuracy |" in report


def test_report_of_a_directory_without_results_exits_2(tmp_path: Path) -> None:
    assert main(["report", str(tmp_path)]) == 2


def test_a_third_varying_key_splits_the_aggregator_attack_tables(tmp_path: Path) -> None:
    lines = ["defense.aggregator,attack.name,data.alpha,seed,final_accuracy"]
    for alpha, offset in (("0.1", 0.0), ("1.0", 0.2)):
        for agg, attack, acc in (("fedavg", "none", 0.7), ("fedavg", "ipm", 0.3)):
            lines += [f"{agg},{attack},{alpha},{s},{acc + offset + s / 100}" for s in (0, 2)]
    (tmp_path / "results.csv").write_text("\n".join(lines) + "\n")

    report = write_report(tmp_path).read_text()

    assert "## Final accuracy: aggregator × attack (data.alpha = 0.1)" in report
    assert "## Final accuracy: aggregator × attack (data.alpha = 1.0)" in report
    # (0.5, 0.52): mean 0.51, s = 0.01·√2
    assert "| fedavg | 0.910 ± 0.014 | 0.510 ± 0.014 | 0.510 ± 0.014 (ipm) |" in report
    for index in (1, 2):
        assert (tmp_path / "figures" / f"final_accuracy_heatmap-{index}.png").is_file()
    assert not (tmp_path / "figures" / "accuracy_per_round.png").exists()  # no run dirs


def test_privacy_sweep_report_plots_accuracy_and_leakage_against_epsilon(tmp_path: Path) -> None:
    sigma, clip = "privacy.local_dp.noise_multiplier", "privacy.local_dp.max_grad_norm"
    rows = [
        f"point,{sigma},{clip},seed,final_accuracy,best_accuracy,final_epsilon,psnr,ssim,status"
    ]
    for c in ("0.5", "2.0"):
        for s, acc, eps, psnr in (
            ("0.0", 0.95, "", 80.0),
            ("1.0", 0.8, 6.0, 20.0),
            ("3.0", 0.5, 2.0, 8.0),
        ):
            rows.append(f"p{c}{s},{s},{c},0,{acc},{acc},{eps},{psnr},0.5,ok")
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    text = write_report(tmp_path).read_text()
    # the clip norm makes the families (lines); σ moves along them, so it is not a family
    assert "privacy_utility.png" in text and "leakage_vs_epsilon.png" in text
    assert "leakage_vs_accuracy.png" in text
    for name in ("privacy_utility", "leakage_vs_epsilon", "leakage_vs_accuracy"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    assert "PSNR (dB)" in text  # the mean PSNR column of the settings table


# Strength variants of one attack: the worst case names the variant and the chosen strength.
VARIANTS = """\
point,defense.aggregator,attack.name,attack.params,seed,final_accuracy,detection_precision,detection_recall,false_rejection_rate,attack_strength,status
a,fedavg,none,{},0,0.90,,,,,ok
b,krum,none,{},0,0.85,0.0,,0.1,,ok
c,krum,alie,"{""z_mode"":""paper""}",0,0.70,0.5,0.5,0.2,,ok
d,krum,alie,"{""strength"":""optimal""}",0,0.40,0.25,0.5,0.3,1.234,ok
e,krum,ipm,"{""epsilon"":0.1}",0,0.60,0.75,1.0,0.0,,ok
"""


def test_the_worst_case_ranges_over_attack_strengths(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text(VARIANTS)
    report = write_report(tmp_path).read_text()

    # krum: clean 0.85 (cost −0.05 against fedavg's 0.90); worst alie (optimal) at 0.40 with
    # mean z 1.23; detection means over the three attacked runs: precision 0.5, recall 2/3,
    # false rejections 0.1 without attack and (0.2 + 0.3 + 0) / 3 under attack.
    assert (
        "| krum | 0.850 | -0.050 | 0.400 — alie (optimal, z ≈ 1.23) | – | 0.500 | 0.667 | 0.100 "
        "| 0.167 |" in report
    )
    assert "| aggregator | none | alie (z_mode=paper) | alie (optimal) | ipm (epsilon=0.1) |" in (
        report
    )
