"""The run report's opening section: what the run found, one row per headline figure.

Each threat direction has its headline figures (:data:`HEADLINES`): the main task's final
accuracy (per task with ``data.tasks``; the personal models' with
``clients.personalization``); data → model: the backdoor's attack success rate and lifespan,
the worst-case robust accuracy, the certified accuracy (smoothing, CRFL); model → data: the
accounted ε, the audit's ε lower bound, membership inference's AUC and TPR at 0.1 % FPR, the
reconstruction PSNR and a malicious server's recovered share, property inference's AUC, class
inference's fidelity, a text model's canary exposure; model → model: the extraction fidelity;
data → data: the watermark accuracy. A row is written only for a figure the run has, read
from ``summary.json`` (its ``final_*`` key, or the run-wide key a probe summarises into) or,
for a run without a summary (interrupted), from the last round of ``metrics.jsonl`` that
holds it. Each row names the report section the figure comes from.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from fedsim.reporting.tables import format_figure, markdown_table

__all__ = ["HEADLINES", "Headline", "scorecard_rows", "scorecard_section"]


class Headline(NamedTuple):
    """One headline figure of a run.

    ``key`` is its ``summary.json`` key, ``figure`` its name in ``metrics.jsonl`` (and in a
    probe's figure list), ``section`` the report section it comes from when no probe listed
    in ``summary.json`` claims ``figure``; a ``per_label`` figure is a mapping (label →
    value), shown one row per label.
    """

    key: str
    figure: str
    label: str
    section: str
    per_label: bool = False


HEADLINES = (
    Headline("final_accuracy", "accuracy", "final accuracy (main task)", "Training"),
    Headline("final_task_accuracy", "task_accuracy", "final accuracy per task", "Training", True),
    Headline(
        "final_personalized_accuracy",
        "personalized_accuracy",
        "personalized accuracy (personal models, clients' own test splits)",
        "Training",
    ),
    Headline(
        "final_personalized_task_accuracy",
        "personalized_task_accuracy",
        "personalized accuracy per task",
        "Training",
        per_label=True,
    ),
    Headline("final_asr", "asr", "backdoor attack success rate", "data→model › Poisoning"),
    Headline(
        "backdoor_lifespan",
        "backdoor_lifespan",
        "backdoor lifespan (rounds after the last poisoned one)",
        "data→model › Poisoning",
    ),
    Headline(
        "final_robust_accuracy",
        "robust_accuracy",
        "worst-case robust accuracy",
        "data→model › Probe: robustness",
    ),
    Headline(
        "final_certified_accuracy",
        "certified_accuracy",
        "certified accuracy",
        "data→model › Probe: robustness",
        per_label=True,
    ),
    Headline(
        "final_crfl_certified_accuracy",
        "crfl_certified_accuracy",
        "CRFL certified accuracy (parameter radius)",
        "data→model › Probe: crfl",
        per_label=True,
    ),
    Headline("final_epsilon", "epsilon", "ε (accounted)", "model→data › Accounted privacy"),
    Headline(
        "final_epsilon_central",
        "epsilon_central",
        "ε of central DP (accounted)",
        "model→data › Accounted privacy",
    ),
    Headline(
        "final_epsilon_lower_bound",
        "epsilon_lower_bound",
        "ε lower bound (privacy audit)",
        "model→data › Probe: audit",
    ),
    Headline(
        "final_mia_auc", "mia_auc", "membership inference AUC", "model→data › Probe: membership"
    ),
    Headline(
        "final_mia_tpr_at_fpr_0.001",
        "mia_tpr_at_fpr_0.001",
        "membership inference TPR at 0.1 % FPR",
        "model→data › Probe: membership",
    ),
    Headline(
        "psnr",
        "psnr",
        "reconstruction PSNR (dB, mean over attacked updates)",
        "model→data › Probe: inversion",
    ),
    Headline(
        "final_inversion_recovered",
        "inversion_recovered",
        "images recovered at PSNR ≥ 30 dB (malicious server)",
        "model→data › Probe: inversion",
    ),
    Headline(
        "property_auc_pooled",
        "property_auc",
        "property inference AUC",
        "model→data › Probe: property_inference",
    ),
    Headline(
        "final_class_inference_fidelity",
        "class_inference_fidelity",
        "class inference: fakes a reference classifier reads as the target",
        "model→data › Probe: class_inference",
    ),
    Headline(
        "final_canary_exposure",
        "canary_exposure",
        "canary exposure (bits, per repeat count)",
        "model→data › Probe: memorization",
        per_label=True,
    ),
    Headline(
        "final_extraction_fidelity",
        "extraction_fidelity",
        "extraction fidelity (agreement of the stolen model)",
        "model→model › Probe: extraction",
    ),
    Headline(
        "final_watermark_accuracy",
        "watermark_accuracy",
        "watermark accuracy",
        "data→data › Probe: watermark",
    ),
)
"""The headline figures, in report order (directions as in :data:`fedsim.threats.DIRECTIONS`)."""


def scorecard_rows(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[list[str]]:
    """``[figure, value, section]`` for each headline figure the run has.

    Examples
    --------
    >>> summary = {"final_accuracy": 0.91234, "final_asr": 0.5, "final_mia_auc": None,
    ...            "probes": [{"name": "mia", "direction": "model→data",
    ...                        "figures": ["mia_auc"]}]}
    >>> for row in scorecard_rows(summary, [{"round": 1, "accuracy": 0.9}]):
    ...     print(row)
    ['final accuracy (main task)', '0.9123', 'Training']
    ['backdoor attack success rate', '0.5', 'data→model › Poisoning']
    ['membership inference AUC', '–', 'model→data › Probe: mia']
    """
    out = []
    for headline in HEADLINES:
        section = _section(headline, summary)
        for suffix, value in _values(headline, summary, rows):
            out.append([headline.label + suffix, format_figure(value), section])
    return out


def scorecard_section(summary: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    """The ``## Scorecard`` section's lines (its table, or a line saying nothing was measured)."""
    lines = ["## Scorecard", ""]
    body = scorecard_rows(summary, rows)
    if body:
        lines += [markdown_table(["figure", "value", "section"], body)]
    else:
        lines += ["No headline figure was measured."]
    return [*lines, ""]


def _values(
    headline: Headline, summary: dict[str, Any], rows: list[dict[str, Any]]
) -> list[tuple[str, Any]]:
    """``(label suffix, value)`` pairs of ``headline`` in this run (empty when it has none)."""
    if headline.key in summary:
        return _expand(headline, summary[headline.key])
    if headline.per_label:
        prefix = headline.key + "_"
        found = [
            (f" ({k.removeprefix(prefix)})", v) for k, v in summary.items() if k.startswith(prefix)
        ]
        if found:
            return found
    elif summary:  # a finished run's summary holds its scalar figures: none there, no row
        return []
    last = next((r[headline.figure] for r in reversed(rows) if headline.figure in r), None)
    return [] if last is None else _expand(headline, last)


def _expand(headline: Headline, value: Any) -> list[tuple[str, Any]]:
    """One pair for a number; one per label for a mapping (robust accuracy: its worst case)."""
    if not isinstance(value, dict):
        return [("", value)]
    if headline.per_label:
        return [(f" ({k})", v) for k, v in value.items()]
    return [("", value["worst_case"])] if "worst_case" in value else []


def _section(headline: Headline, summary: dict[str, Any]) -> str:
    """The report section of ``headline``: the probe that lists its figure, else its default."""
    for probe in summary.get("probes") or []:
        if headline.figure in (probe.get("figures") or []):
            return f"{probe.get('direction')} › Probe: {probe.get('name')}"
    return headline.section
