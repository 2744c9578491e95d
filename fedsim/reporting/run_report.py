"""``fedsim report RUN_DIR``: one run's ``report.md``, organised by the four threat directions.

Input is a run directory (``scenario.yaml``, ``metrics.jsonl``, ``summary.json``). The report
opens with what the run found: the ``## Scorecard`` (:mod:`fedsim.reporting.scorecard`), one
row per headline figure with the section it comes from; then ``## Training``, the run's
settings and the accuracy and loss curves; then one section per threat direction — data → model
(poisoning and backdoors; evasion at test time), model → data (gradient inversion, membership
inference, privacy audits, the accountant's ε), model → model (extraction), data → data
(watermark removal) — each with the attack the scenario ran
in it and every probe that ran in it (``summary.json``'s ``probes``: direction, threat model,
rounds, figure names), a table of the probe's figures per round and its pictures (PNGs the
probe wrote under ``RUN_DIR/<probe name>/``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from fedsim.reporting.plots import plot_run
from fedsim.reporting.scorecard import scorecard_section
from fedsim.reporting.tables import format_figure, markdown_table
from fedsim.results import finished_rounds
from fedsim.threats import DIRECTIONS

__all__ = ["write_run_report"]

ATTACK_FIGURES = ("asr", "detection_precision", "detection_recall")
"""Per-round figures of the attack section; one a probe of the run reports (the backdoor probe's
``asr``) is left to that probe's section, so no table repeats it."""


def write_run_report(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``RUN_DIR/report.md`` (and the accuracy/loss PNGs); return its path.

    Raises
    ------
    ScenarioError
        ``run_dir`` is not a run directory with at least one finished round.
    """
    run_dir = Path(run_dir)
    rows = finished_rounds(run_dir)
    scenario = _read(run_dir / "scenario.yaml", yaml.safe_load)
    summary = _read(run_dir / "summary.json", json.load)
    plot_run(run_dir)
    lines = [f"# Run report: {scenario.get('name', run_dir.name)}", ""]
    lines += scorecard_section(summary, rows)
    lines += ["## Training", ""]
    lines += _overview(scenario, summary, rows)
    lines += ["", "![test accuracy](accuracy.png) ![test loss](loss.png)", ""]
    probes = summary.get("probes") or []
    for direction in DIRECTIONS:
        lines += [f"## {direction}", ""]
        body = []
        if direction == "data→model":
            probed = {f for probe in probes for f in probe.get("figures") or []}
            body += _attack_section(scenario, summary, rows, probed)
        if direction == "model→data":
            body += _privacy_section(summary)
        for probe in probes:
            if probe.get("direction") == direction:
                body += _probe_section(run_dir, probe, rows)
        lines += body or ["Nothing in this run looks in this direction.", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def _read(path: Path, load: Any) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        data = load(f)
    return data if isinstance(data, dict) else {}


def _overview(scenario: dict, summary: dict, rows: list[dict]) -> list[str]:
    data, defense = scenario.get("data") or {}, scenario.get("defense") or {}
    cells = [
        ("seed", scenario.get("seed")),
        ("runtime", scenario.get("runtime")),
        ("rounds finished", f"{len(rows)} of {scenario.get('rounds', '?')}"),
        (
            "data",
            f"{data.get('dataset')} ({data.get('partition')}, {data.get('num_clients')} clients)",
        ),
        ("model", (scenario.get("model") or {}).get("name")),
        ("aggregator", defense.get("aggregator")),
        ("final accuracy", format_figure(rows[-1].get("accuracy"))),
        ("best accuracy", format_figure(summary.get("best_accuracy"))),
        ("wall time (s)", format_figure(summary.get("wall_s"))),
    ]
    return [markdown_table(["setting", "value"], [[k, str(v)] for k, v in cells])]


def _attack_section(scenario: dict, summary: dict, rows: list[dict], probed: set[str]) -> list[str]:
    attack = scenario.get("attack") or {}
    if attack.get("name", "none") == "none":
        return []
    lines = [
        f"### Poisoning: {attack['name']}",
        "",
        f"Malicious clients: {summary.get('malicious_clients', '?')}; "
        f"defence: {(scenario.get('defense') or {}).get('aggregator')}.",
        "",
    ]
    shown = [
        k for k in ATTACK_FIGURES if k not in probed and any(r.get(k) is not None for r in rows)
    ]
    if shown:
        lines += [_per_round_table(rows, shown), ""]
    return lines


def _privacy_section(summary: dict) -> list[str]:
    keys = [k for k in ("final_epsilon", "final_delta", "final_epsilon_central") if k in summary]
    if not keys:
        return []
    cells = [[k.removeprefix("final_"), format_figure(summary[k])] for k in keys]
    return ["### Accounted privacy", "", markdown_table(["figure", "value"], cells), ""]


def _probe_section(run_dir: Path, probe: dict, rows: list[dict]) -> list[str]:
    rounds = ", ".join(str(r) for r in probe.get("rounds") or [])
    lines = [
        f"### Probe: {probe.get('name')}",
        "",
        f"Threat model: {probe.get('threat_model')}; rounds: {rounds or 'none'}.",
        "",
    ]
    rows = [_flatten(r, probe.get("figures") or []) for r in rows]
    named = {k for r in rows for k in r}
    figures = [
        f
        for name in probe.get("figures") or []
        for f in sorted(k for k in named if k == name or k.startswith(f"{name}."))
        if any(isinstance(r.get(f), int | float) and not isinstance(r.get(f), bool) for r in rows)
    ]
    probed = [r for r in rows if any(f in r for f in figures)]
    if probed:
        lines += [_per_round_table(probed, figures), ""]
    else:
        lines += ["No round recorded a figure.", ""]
    pictures = sorted((run_dir / str(probe.get("name"))).glob("*.png"))
    lines += [f"![{p.stem}]({p.relative_to(run_dir).as_posix()})" for p in pictures]
    return lines + ([""] if pictures else [])


def _flatten(row: dict, figures: list[str]) -> dict:
    """``row`` with each mapping figure's entries as ``<figure>.<key>`` (robust accuracy)."""
    out = dict(row)
    for name in figures:
        value = row.get(name)
        if isinstance(value, dict):
            out.update({f"{name}.{key}": v for key, v in value.items()})
    return out


def _per_round_table(rows: list[dict], keys: list[str]) -> str:
    body = [[str(r["round"]), *(format_figure(r.get(k)) for k in keys)] for r in rows]
    return markdown_table(["round", *keys], body)
