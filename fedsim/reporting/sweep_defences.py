r"""The defence table of ``fedsim report``: worst case over attacks and strengths, cost, detection.

For each defence (``defense.aggregator``, per combination of the other swept keys) it reports

- **clean accuracy** and its **cost**: final accuracy without attack (``attack.name: none``)
  and its difference to FedAvg's, :math:`\mathrm{acc}_{\text{rule}} -
  \mathrm{acc}_{\text{fedavg}}` (negative: what the defence costs when nobody attacks);
- the **worst-case accuracy**: the lowest mean final accuracy over every attack *variant* (an
  attack with its strength settings; a defence-aware ``strength: optimal`` run is its own
  variant and shows the mean strength it chose), naming the variant;
- the **worst-case ASR**: the highest mean final ASR over the variants that record one;
- **detection** under attack (selecting rules only): mean precision and recall, and the
  **false-rejection rate** of honest clients with and without attack.

Attack variants come from the ``attack.params`` column when the sweep varies it
(:func:`attack_variant`); :func:`merge_attack_variants` folds it into ``attack.name`` so the
report's other tables show variants too. Likewise :func:`merge_defence_variants` names a rule
behind pre-aggregation stages after them (``nnm → krum``).
"""

from __future__ import annotations

import json
from typing import Any

from fedsim.reporting.tables import AGGREGATOR, ATTACK, Group, format_stat, markdown_table

__all__ = [
    "PARAMS",
    "attack_variant",
    "defence_rows",
    "defence_section",
    "merge_attack_variants",
    "merge_defence_variants",
]

PARAMS = "attack.params"
PRE = "defense.pre"
NO_ATTACK = "none"
BASELINE = "fedavg"
STRENGTH_SETTINGS = ("strength", "z_mode", "z", "epsilon", "scale", "sigma", "factor", "boost")
"""Attack settings that set its strength and so name a variant."""
STRENGTH_SYMBOL = {"alie": "z", "ipm": "ε", "min_max": "γ×", "min_sum": "γ×"}
"""What a defence-aware attack's strength is, by attack (see ``ColludingAttack.tunable``)."""


def attack_variant(name: str, params: str) -> str:
    """An attack's label with the settings that set its strength.

    ``params`` is the ``attack.params`` cell of ``results.csv`` (compact JSON).

    Examples
    --------
    >>> attack_variant("alie", '{"strength":"optimal"}')
    'alie (optimal)'
    >>> attack_variant("ipm", '{"epsilon":0.1}')
    'ipm (epsilon=0.1)'
    >>> attack_variant("backdoor", '{"poison_fraction":0.5,"target":0}')
    'backdoor'
    """
    try:
        settings = json.loads(params) if params else {}
    except ValueError:
        settings = {}
    if not isinstance(settings, dict) or name == NO_ATTACK:
        return name
    if settings.get("strength") == "optimal":
        return f"{name} (optimal)"
    shown = [f"{k}={settings[k]}" for k in STRENGTH_SETTINGS if k in settings]
    return f"{name} ({', '.join(shown)})" if shown else name


def merge_attack_variants(
    rows: list[dict[str, str]], keys: list[str]
) -> tuple[list[dict[str, str]], list[str]]:
    """Fold ``attack.params`` into ``attack.name`` (as :func:`attack_variant`); drop the key."""
    if ATTACK not in keys or PARAMS not in keys:
        return rows, keys
    merged = [{**r, ATTACK: attack_variant(r.get(ATTACK, ""), r.get(PARAMS, ""))} for r in rows]
    return merged, [k for k in keys if k != PARAMS]


def merge_defence_variants(
    rows: list[dict[str, str]], keys: list[str]
) -> tuple[list[dict[str, str]], list[str]]:
    """Fold ``defense.pre`` into ``defense.aggregator`` (``nnm → krum``); drop the key.

    Examples
    --------
    >>> rows, keys = merge_defence_variants(
    ...     [{"defense.aggregator": "krum", "defense.pre": '["nnm"]'}],
    ...     ["defense.aggregator", "defense.pre"])
    >>> rows[0]["defense.aggregator"], keys
    ('nnm → krum', ['defense.aggregator'])
    """
    if AGGREGATOR not in keys or PRE not in keys:
        return rows, keys
    merged = []
    for row in rows:
        try:
            stages = json.loads(row.get(PRE) or "[]")
        except ValueError:
            stages = []
        names = [s if isinstance(s, str) else str(s.get("name")) for s in stages or []]
        label = " → ".join([*names, row.get(AGGREGATOR, "")])
        merged.append({**row, AGGREGATOR: label})
    return merged, [k for k in keys if k != PRE]


def defence_rows(groups: list[Group]) -> list[dict[str, Any]]:
    """One row per aggregator over ``groups`` (one facet): the figures the module lists.

    Each row holds ``aggregator``, ``clean`` and ``cost`` (Stat / float or None),
    ``worst`` (variant, Stat, mean strength or None), ``worst_asr`` (variant, Stat) and the
    detection means ``precision``, ``recall``, ``frr_clean``, ``frr_attack`` (float or None).
    """
    by_rule: dict[str, dict[str, Group]] = {}
    for group in groups:
        by_rule.setdefault(group.values[AGGREGATOR], {})[group.values[ATTACK]] = group
    baseline = _mean(by_rule.get(BASELINE, {}).get(NO_ATTACK), "final_accuracy")
    rows = []
    for rule, attacks in by_rule.items():
        clean = attacks.get(NO_ATTACK)
        clean_acc = _mean(clean, "final_accuracy")
        attacked = {a: g for a, g in attacks.items() if a != NO_ATTACK}
        scored = [(a, g) for a, g in attacked.items() if _mean(g, "final_accuracy") is not None]
        worst = min(scored, key=lambda item: _mean(item[1], "final_accuracy"), default=None)
        with_asr = [(a, g) for a, g in attacked.items() if _mean(g, "final_asr") is not None]
        worst_asr = max(with_asr, key=lambda item: _mean(item[1], "final_asr"), default=None)
        rows.append(
            {
                "aggregator": rule,
                "clean": clean.stats.get("final_accuracy") if clean else None,
                "cost": None if clean_acc is None or baseline is None else clean_acc - baseline,
                "worst": None
                if worst is None
                else (
                    worst[0],
                    worst[1].stats["final_accuracy"],
                    _mean(worst[1], "attack_strength"),
                ),
                "worst_asr": None
                if worst_asr is None
                else (worst_asr[0], worst_asr[1].stats["final_asr"]),
                "precision": _average(attacked.values(), "detection_precision"),
                "recall": _average(attacked.values(), "detection_recall"),
                "frr_clean": _mean(clean, "false_rejection_rate"),
                "frr_attack": _average(attacked.values(), "false_rejection_rate"),
            }
        )
    return rows


def defence_section(groups: list[Group], where: str = "") -> list[str]:
    """Markdown lines: the defence table of one facet (see the module docstring)."""
    rows = defence_rows(groups)
    if not rows:
        return []
    body = []
    for row in sorted(rows, key=_worst_key):
        worst = "–"
        if row["worst"] is not None:
            variant, stat, strength = row["worst"]
            name = variant.split(" ")[0]
            if strength is not None:
                symbol = STRENGTH_SYMBOL.get(name, "strength")
                variant = f"{variant[:-1]}, {symbol} ≈ {strength:.3g})"
            worst = f"{format_stat(stat)} — {variant}"
        asr = (
            "–"
            if row["worst_asr"] is None
            else (f"{format_stat(row['worst_asr'][1])} — {row['worst_asr'][0]}")
        )
        body.append(
            [
                row["aggregator"],
                format_stat(row["clean"]),
                _fmt(row["cost"], signed=True),
                worst,
                asr,
                _fmt(row["precision"]),
                _fmt(row["recall"]),
                _fmt(row["frr_clean"]),
                _fmt(row["frr_attack"]),
            ]
        )
    header = [
        "aggregator",
        "clean accuracy",
        "cost vs fedavg",
        "worst-case accuracy — attack (strength)",
        "worst-case ASR — attack",
        "detection precision",
        "detection recall",
        "false rejections (no attack)",
        "false rejections (attacked)",
    ]
    return [
        f"## Defences: worst case over attacks and strengths{where}",
        "",
        "Worst case over every attack variant (attack and strength settings; `optimal` is the "
        "defence-aware strength chosen each round, shown with its mean). Cost: clean accuracy "
        "minus FedAvg's without attack. Detection (selecting rules): means over attacked runs; "
        "false rejections: share of honest clients a rule left out per round.",
        "",
        markdown_table(header, body),
        "",
    ]


def _worst_key(row: dict[str, Any]) -> float:
    worst = row["worst"]
    return -(worst[1].mean or 0.0) if worst is not None and worst[1].mean is not None else 0.0


def _mean(group: Group | None, figure: str) -> float | None:
    if group is None or figure not in group.stats:
        return None
    return group.stats[figure].mean


def _average(groups: Any, figure: str) -> float | None:
    values = [v for g in groups if (v := _mean(g, figure)) is not None]
    return sum(values) / len(values) if values else None


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
