"""``fedsim report SWEEP_DIR``: ``report.md`` with mean ± std tables, and PNG figures.

Input is what :mod:`fedsim.run.sweep` writes: ``results.csv`` and, for the curves, each point's
``metrics.jsonl`` (the ``point`` column names its directory). Only rows with status ``ok`` (or
no status column) enter the statistics; failed ones are listed at the end.

Columns of ``results.csv`` are read by name, so a hand-made file works too: ``point``,
``seed``, ``status`` and ``wall_s`` are bookkeeping, ``final_*``/``best_*`` are figures, and
every other column is a swept key; ``runtime`` is one only when the runs differ in it (else the
report names it once). Runs are grouped by every swept key except ``seed``; each
group gets, for each figure, the mean and the *sample* standard deviation (n − 1) over its
runs (a run with an empty cell is left out of that figure only). A swept key whose value is
determined by another one (a zip partner, or a key with a single value) adds no groups and is
not shown as a column; the report says so. ``attack.params`` is folded into ``attack.name`` as
an attack *variant* naming its strength settings (``alie (optimal)``, ``ipm (epsilon=0.1)``).

What the report holds:

- always: a table of every group (runs, final and best accuracy, final ASR, ε, PSNR/SSIM where
  present, wall time) and accuracy per round (mean over seeds, ± std band), one line per group
  (one panel per attack when ``attack.name`` varies);
- when both ``defense.aggregator`` and ``attack.name`` vary: the defence table of
  :mod:`fedsim.reporting.sweep_defences` (worst case over attacks and their strengths, the
  clean cost against FedAvg, detection and false rejections), an aggregator × attack table and
  heatmap of final accuracy with each aggregator's worst case over attacks (and a bar chart
  of it), and the same table and heatmap for final ASR where backdoor runs recorded it. Other
  varying keys split these into one set per combination of their values.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from fedsim.errors import ScenarioError
from fedsim.reporting.plots import (
    Curve,
    plot_bars,
    plot_curves,
    plot_heatmap,
    plot_panels,
    plot_tradeoff,
)
from fedsim.reporting.sweep_defences import (
    defence_section,
    merge_attack_variants,
    merge_defence_variants,
)
from fedsim.reporting.tables import (
    AGGREGATOR,
    ATTACK,
    Group,
    Stat,
    format_stat,
    markdown_table,
    mean_std,
)
from fedsim.results import is_summary_figure, read_metrics

__all__ = [
    "Group",
    "Stat",
    "determined_keys",
    "figure_columns",
    "format_stat",
    "group_stats",
    "key_columns",
    "markdown_table",
    "mean_std",
    "pivot",
    "read_results",
    "worst_case",
    "write_report",
]

BOOKKEEPING = ("point", "seed", "status", "wall_s")
RUNTIME = "runtime"
"""The runtime a run used (``fedsim sweep`` writes it): a key only where runs differ in it."""
LABELS = {
    "final_accuracy": "final accuracy",
    "best_accuracy": "best accuracy",
    "final_asr": "final ASR",
    "final_epsilon": "final ε",
    "final_epsilon_lower_bound": "audit ε lower bound",
    "final_epsilon_estimate": "audit ε estimate",
    "final_mia_tpr_at_fpr_0.001": "MIA TPR at 0.1% FPR",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "best_psnr": "best PSNR (dB)",
    "wall_s": "wall s",
}
NOT_IN_TABLES = ("final_loss",)


def read_results(path: str | os.PathLike[str]) -> tuple[list[str], list[dict[str, str]]]:
    """The columns and rows of a ``results.csv``."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError("SWEEP_DIR", str(path.parent), "a sweep directory with results.csv")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def key_columns(columns: list[str]) -> list[str]:
    """The swept keys among ``columns`` (everything but bookkeeping and figures), not ``seed``."""
    return [c for c in columns if c not in BOOKKEEPING and not is_summary_figure(c)]


def figure_columns(columns: list[str], rows: list[dict[str, str]]) -> list[str]:
    """The figures worth a table column: ``final_*``/``best_*`` with a value, then ``wall_s``."""
    found = [
        c
        for c in columns
        if is_summary_figure(c)
        and c not in NOT_IN_TABLES
        and any(_number(r.get(c)) is not None for r in rows)
    ]
    return [*found, "wall_s"] if "wall_s" in columns else found


def determined_keys(rows: list[dict[str, str]], keys: list[str]) -> dict[str, str]:
    """Keys whose value follows from another shown key's: hidden key → the key it follows.

    ``defense.aggregator`` and ``attack.name`` are considered first, then the others in order;
    a key is hidden when some key already kept determines it over ``rows`` (one value each).
    """
    order = [k for k in (AGGREGATOR, ATTACK) if k in keys] + [
        k for k in keys if k not in (AGGREGATOR, ATTACK)
    ]
    kept: list[str] = []
    hidden: dict[str, str] = {}
    for key in order:
        leader = next((k for k in kept if _determines(rows, k, key)), None)
        if leader is None:
            kept.append(key)
        else:
            hidden[key] = leader
    return hidden


def _determines(rows: list[dict[str, str]], a: str, b: str) -> bool:
    seen: dict[str, str] = {}
    return all(seen.setdefault(r.get(a, ""), r.get(b, "")) == r.get(b, "") for r in rows)


def group_stats(rows: list[dict[str, str]], keys: list[str], figures: list[str]) -> list[Group]:
    """Group the ``ok`` rows by ``keys`` (in order of first appearance); stats per figure."""
    groups: dict[tuple[str, ...], list[dict[str, str]]] = {}
    for row in rows:
        if _ok(row):
            groups.setdefault(tuple(row.get(k, "") for k in keys), []).append(row)
    result = []
    for combo, members in groups.items():
        stats = {}
        for figure in figures:
            numbers = [_number(r.get(figure)) for r in members]
            stats[figure] = mean_std(x for x in numbers if x is not None)
        points = [r.get("point", "") for r in members]
        result.append(Group(dict(zip(keys, combo, strict=True)), points, stats))
    return result


def _ok(row: dict[str, str]) -> bool:
    """A run that finished (a hand-made file may leave out the status column)."""
    return row.get("status", "ok") == "ok"


def _number(text: str | None) -> float | None:
    if text is None or text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def pivot(
    groups: list[Group], row_key: str, col_key: str, figure: str
) -> tuple[list[str], list[str], dict[tuple[str, str], Stat]]:
    """Row values, column values (first-appearance order) and the cell stats of one figure."""
    rows: list[str] = []
    cols: list[str] = []
    cells: dict[tuple[str, str], Stat] = {}
    for group in groups:
        r, c = group.values[row_key], group.values[col_key]
        rows += [r] if r not in rows else []
        cols += [c] if c not in cols else []
        if group.stats[figure].n:
            cells[r, c] = group.stats[figure]
    return rows, cols, cells


def worst_case(
    rows: list[str], cols: list[str], cells: dict[tuple[str, str], Stat]
) -> dict[str, tuple[str, Stat]]:
    """For each row, the column with the lowest mean and its stat (rows without cells left out)."""
    result = {}
    for r in rows:
        present = [(c, cells[r, c]) for c in cols if (r, c) in cells]
        if present:
            result[r] = min(present, key=lambda item: item[1].mean)
    return result


# ---------------------------------------------------------------------------- the report


def write_report(sweep_dir: str | os.PathLike[str]) -> Path:
    """Write ``report.md`` and ``figures/*.png`` into ``sweep_dir``; return the report's path.

    Raises
    ------
    ScenarioError
        ``sweep_dir`` holds no ``results.csv``.
    """
    sweep_dir = Path(sweep_dir)
    columns, rows = read_results(sweep_dir / "results.csv")
    keys = key_columns(columns)
    runtimes = sorted({r.get(RUNTIME, "") for r in rows} - {""})
    if RUNTIME in keys and len(runtimes) < 2:
        keys.remove(RUNTIME)  # bookkeeping, unless runs differ in it
    rows, keys = merge_attack_variants(rows, keys)  # an attack with its strength: one variant
    rows, keys = merge_defence_variants(rows, keys)  # a rule behind its pre-stages: one defence
    ok = [r for r in rows if _ok(r)]
    hidden = determined_keys(rows, keys)
    shown = [k for k in keys if k not in hidden]
    figures = figure_columns(columns, ok)
    groups = group_stats(rows, shown, figures)
    expected = max((g.stats["final_accuracy"].n for g in groups), default=0) or None
    fig_dir = sweep_dir / "figures"
    fig_dir.mkdir(exist_ok=True)
    for stale in fig_dir.glob("*.png"):  # figures of an earlier report of this directory
        stale.unlink()
    meta = _read_json(sweep_dir / "sweep.json")

    title = meta.get("name") or sweep_dir.name
    total = len(meta.get("points") or []) or len(rows)
    seeds = sorted({r.get("seed", "") for r in ok}, key=lambda s: (len(s), s))
    lines = [
        f"# Sweep report: {title}",
        "",
        f"{len(ok)} of {total} runs finished ok, {len(rows) - len(ok)} failed"
        + (f", {total - len(rows)} not run yet" if total > len(rows) else "")
        + (f"; seeds {', '.join(seeds)}" if seeds else "")
        + ". Cells are mean ± sample standard deviation over seeds.",
        "",
    ]
    if shown:
        lines.append("Swept: " + ", ".join(f"`{k}`" for k in shown) + ".")
    values = {k: {r.get(k, "") for r in rows} for k in hidden}
    fixed = [f"`{k}` = {next(iter(values[k]))}" for k in hidden if len(values[k]) == 1]
    follow = [k for k in hidden if len(values[k]) != 1]
    if RUNTIME not in keys and len(runtimes) == 1:
        fixed.append(f"`{RUNTIME}` = {runtimes[0]}")
    if fixed:
        lines.append("Same in every run: " + ", ".join(fixed) + ".")
    if follow:
        lines.append(
            "Not shown (determined by another key): "
            + ", ".join(f"`{k}` (by `{hidden[k]}`)" for k in follow)
            + "."
        )
    lines.append("")
    if AGGREGATOR in shown and ATTACK in shown and "final_accuracy" in figures:
        others = [k for k in shown if k not in (AGGREGATOR, ATTACK)]
        for facet, members in _facets(groups, others):
            lines += defence_section(members, f" ({facet})" if facet else "")
        lines += _robustness_sections(groups, shown, fig_dir, expected)
    lines += _groups_section(groups, shown, figures)
    lines += _tradeoff_section(groups, shown, figures, fig_dir)
    lines += _leakage_section(groups, shown, figures, fig_dir)
    lines += _curves_section(sweep_dir, groups, shown, fig_dir)
    failed = [r for r in rows if not _ok(r)]
    if failed:
        lines += ["## Failed runs", ""]
        lines.append(
            markdown_table(["point", "status"], [[r.get("point", ""), r["status"]] for r in failed])
        )
        lines.append("")
    path = sweep_dir / "report.md"
    tmp = path.with_name(".report.md.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _facets(groups: list[Group], others: list[str]) -> list[tuple[str, list[Group]]]:
    """Split groups by the values of ``others``: (heading suffix, groups) in order."""
    facets: dict[tuple[str, ...], list[Group]] = {}
    for group in groups:
        facets.setdefault(tuple(group.values[k] for k in others), []).append(group)
    return [
        (", ".join(f"{k} = {v}" for k, v in zip(others, combo, strict=True)), members)
        for combo, members in facets.items()
    ]


def _robustness_sections(
    groups: list[Group], shown: list[str], fig_dir: Path, expected: int | None
) -> list[str]:
    others = [k for k in shown if k not in (AGGREGATOR, ATTACK)]
    facets = _facets(groups, others)
    lines: list[str] = []
    for index, (facet, members) in enumerate(facets, 1):
        suffix = f"-{index}" if len(facets) > 1 else ""
        where = f" ({facet})" if facet else ""
        rows, cols, cells = pivot(members, AGGREGATOR, ATTACK, "final_accuracy")
        worst = worst_case(rows, cols, cells)
        lines += [f"## Final accuracy: aggregator × attack{where}", ""]
        body = [
            [r, *(format_stat(cells.get((r, c)), expected_n=expected) for c in cols)]
            + [f"{format_stat(worst[r][1])} ({worst[r][0]})" if r in worst else "–"]
            for r in rows
        ]
        lines += [markdown_table(["aggregator", *cols, "worst case"], body), ""]
        heat = plot_heatmap(
            [[_mean(cells.get((r, c))) for c in cols] for r in rows],
            rows,
            cols,
            fig_dir / f"final_accuracy_heatmap{suffix}.png",
            f"final accuracy{where}",
        )
        ranked = sorted(worst, key=lambda r: -(worst[r][1].mean or 0.0))
        bars = plot_bars(
            ranked,
            [worst[r][1].mean or 0.0 for r in ranked],
            [worst[r][1].std for r in ranked],
            fig_dir / f"worst_case_accuracy{suffix}.png",
            f"worst-case final accuracy over attacks{where}",
            "final accuracy",
            notes=[worst[r][0] for r in ranked],
        )
        lines += [_image(heat, "final accuracy heatmap"), _image(bars, "worst case"), ""]
        if "final_asr" in members[0].stats:
            rows_a, cols_a, cells_a = pivot(members, AGGREGATOR, ATTACK, "final_asr")
            cols_a = [c for c in cols_a if any((r, c) in cells_a for r in rows_a)]
            if cols_a:
                lines += [f"## Final attack success rate (backdoor){where}", ""]
                body = [
                    [r, *(format_stat(cells_a.get((r, c)), expected_n=expected) for c in cols_a)]
                    for r in rows_a
                ]
                lines += [markdown_table(["aggregator", *cols_a], body), ""]
                heat = plot_heatmap(
                    [[_mean(cells_a.get((r, c))) for c in cols_a] for r in rows_a],
                    rows_a,
                    cols_a,
                    fig_dir / f"final_asr_heatmap{suffix}.png",
                    f"final ASR (lower is better){where}",
                    higher_is_better=False,
                )
                lines += [_image(heat, "final ASR heatmap"), ""]
    return lines


def _groups_section(groups: list[Group], shown: list[str], figures: list[str]) -> list[str]:
    header = [*shown, "runs", *(LABELS.get(f, f) for f in figures)]
    body = [
        [
            *(group.values[k] for k in shown),
            str(len(group.points)),
            *(format_stat(group.stats[f], digits=1 if f == "wall_s" else 3) for f in figures),
        ]
        for group in groups
    ]
    heading = "## Every setting" if shown else "## All runs"
    return [heading, "", markdown_table(header, body), ""]


NOISE_KEYS = ("noise_multiplier", "target_epsilon", "clip")
"""Swept keys that move a run along a privacy trade-off curve rather than start a new line."""


def _tradeoff_section(
    groups: list[Group], shown: list[str], figures: list[str], fig_dir: Path
) -> list[str]:
    """Privacy–utility(–leakage) figures: accuracy and PSNR against ε, PSNR against accuracy.

    Each line is a *family*: the groups sharing every swept value except the noise settings
    (keys ending in ``noise_multiplier``, ``target_epsilon`` or ``clip``). Runs with ε = ∞
    (σ = 0) have no ε cell and are left out of the log-scale ε plots.
    """
    plots = [
        ("final_epsilon", "final_accuracy", "privacy_utility.png", True),
        ("final_epsilon", "psnr", "leakage_vs_epsilon.png", True),
        ("final_accuracy", "psnr", "leakage_vs_accuracy.png", False),
    ]
    family_keys = [k for k in shown if not k.endswith(NOISE_KEYS)]
    lines: list[str] = []
    for x_key, y_key, name, log_x in plots:
        if x_key not in figures or y_key not in figures:
            continue
        series: dict[str, list[tuple[float, float]]] = {}
        for group in groups:
            x, y = _mean(group.stats.get(x_key)), _mean(group.stats.get(y_key))
            if x is None or y is None or (log_x and not x > 0):
                continue
            label = ", ".join(f"{k}={group.values[k]}" for k in family_keys)
            series.setdefault(label, []).append((x, y))
        if not series:
            continue
        xlabel, ylabel = LABELS.get(x_key, x_key), LABELS.get(y_key, y_key)
        title = f"{ylabel} against {xlabel}" + (" (log scale)" if log_x else "")
        path = plot_tradeoff(series, fig_dir / name, xlabel, ylabel, title, log_x=log_x)
        lines += [
            f"## {ylabel[0].upper()}{ylabel[1:]} against {xlabel}",
            "",
            _image(path, name),
            "",
        ]
    return lines


LEAKAGE_PANELS = (
    ("final accuracy", ("final_accuracy",)),
    (
        "ε (accounted, audited)",
        ("final_epsilon", "final_epsilon_lower_bound", "final_epsilon_estimate"),
    ),
    ("MIA TPR at 0.1% FPR", ("final_mia_tpr_at_fpr_0.001",)),
)


def noise_of(group: Group, shown: list[str]) -> tuple[str, float] | None:
    """The DP noise multiplier σ a group ran with, and the swept key it came from.

    A swept ``…noise_multiplier`` key, or a swept DP block (``privacy.local_dp``) whose value
    holds ``noise_multiplier``; None when no swept key sets σ.

    Examples
    --------
    >>> g = Group({"privacy.local_dp": "null", "privacy.central_dp": '{"noise_multiplier":0.5}'},
    ...           [], {})
    >>> noise_of(g, ["privacy.local_dp", "privacy.central_dp"])
    ('privacy.central_dp', 0.5)
    """
    for key in shown:
        value = group.values.get(key, "")
        if key.endswith("noise_multiplier"):
            number = _number(value)
            if number is not None:
                return key.removesuffix(".noise_multiplier"), number
            continue
        try:
            block = json.loads(value)
        except ValueError:
            continue
        if isinstance(block, dict) and _number(str(block.get("noise_multiplier"))) is not None:
            return key, float(block["noise_multiplier"])
    return None


def _leakage_section(
    groups: list[Group], shown: list[str], figures: list[str], fig_dir: Path
) -> list[str]:
    """Accuracy, accounted ε, the audit's ε_lb (and estimate) and MIA TPR at 0.1% FPR against σ.

    One panel per kind of figure present (``final_epsilon_lower_bound`` must be); one line per
    DP mechanism swept (the key σ comes from, see :func:`noise_of`) and per value of the other
    swept keys. ε = ∞ (σ = 0) is left out of the log-scale ε panel.
    """
    if "final_epsilon_lower_bound" not in figures:
        return []
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for group in groups:
        noise = noise_of(group, shown)
        if noise is None:
            continue
        source, sigma = noise
        others = [
            k
            for k in shown
            if k != source and noise_of(Group({k: group.values[k]}, [], {}), [k]) is None
        ]
        family = ", ".join(
            [
                source.removeprefix("privacy."),
                *(f"{k}={group.values[k]}" for k in others if group.values[k] != "null"),
            ]
        )
        for title, keys in LEAKAGE_PANELS:
            for key in keys:
                y = _mean(group.stats.get(key)) if key in figures else None
                if y is None or not math.isfinite(y):
                    continue
                label = family if len(keys) == 1 else f"{LABELS.get(key, key)} ({family})"
                panels.setdefault(title, {}).setdefault(label, []).append((sigma, y))
    if not panels:
        return []
    path = plot_panels(
        panels,
        fig_dir / "privacy_leakage.png",
        "noise multiplier σ",
        log_y=("ε (accounted, audited)",),
    )
    return [
        "## Privacy leakage against the noise multiplier",
        "",
        "Accounted ε beside the audit's lower bound (it must stay below) and, where measured, "
        "the membership attack's TPR at 0.1% FPR.",
        "",
        _image(path, "privacy leakage against sigma"),
        "",
    ]


def _curves_section(
    sweep_dir: Path, groups: list[Group], shown: list[str], fig_dir: Path
) -> list[str]:
    panel_key = ATTACK if ATTACK in shown else None
    series_keys = [k for k in shown if k != panel_key]
    panels: dict[str, dict[str, Curve]] = {}
    for group in groups:
        curve = _mean_curve(sweep_dir, group.points)
        if curve is None:
            continue
        panel = f"{panel_key} = {group.values[panel_key]}" if panel_key else "accuracy per round"
        parts = [f"{k}={group.values[k]}" for k in series_keys]
        if len(parts) == 1:
            parts = [group.values[series_keys[0]]]
        label = ", ".join(parts) or "all runs"
        panels.setdefault(panel, {})[label] = curve
    if not panels:
        return []
    path = plot_curves(panels, fig_dir / "accuracy_per_round.png")
    return ["## Accuracy per round", "", _image(path, "accuracy per round"), ""]


def _mean_curve(sweep_dir: Path, points: list[str]) -> Curve | None:
    """Mean and std of test accuracy per round over the runs ``points`` (those on disk)."""
    by_round: dict[int, list[float]] = {}
    for point in points:
        try:
            records = read_metrics(sweep_dir / point)
        except (OSError, ValueError):
            continue
        for record in records:
            if isinstance(record.get("accuracy"), int | float):
                by_round.setdefault(int(record["round"]), []).append(float(record["accuracy"]))
    if not by_round:
        return None
    rounds = sorted(by_round)
    stats = [mean_std(by_round[r]) for r in rounds]
    return rounds, [s.mean for s in stats], [s.std for s in stats]


def _mean(stat: Stat | None) -> float | None:
    return None if stat is None else stat.mean


def _image(path: Path, alt: str) -> str:
    return f"![{alt}](figures/{path.name})"
