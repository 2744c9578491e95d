"""The text-backdoor table of docs/text.md over seeds: run its rows, then tabulate them.

Each row is ``scenarios/text_backdoor.yaml`` with a few ``--set`` overrides, run once per seed
as its own process (one torch thread each; ``--jobs`` at a time). A run whose ``summary.json``
exists is skipped, so the sweep can be stopped and resumed. ``--table`` prints the markdown
table (mean and range over the seeds of final accuracy and final ASR, ε where DP is on).

    PYTHONPATH=$PWD python benchmarks/text_backdoor_sweep.py --out runs/text-backdoor \
        --seeds 0 1 2 --jobs 2
    PYTHONPATH=$PWD python benchmarks/text_backdoor_sweep.py --out runs/text-backdoor --table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from fedsim.attacks import text_backdoor_asr
from fedsim.checkpoint import load_checkpoint
from fedsim.federation import federation_for
from fedsim.params import load_flat_params
from fedsim.scenario import load_scenario
from server.parts import ServerParts

SCENARIO = Path(__file__).resolve().parent.parent / "scenarios" / "text_backdoor.yaml"
NORM_BOUND = "defense.aggregator=norm_bound"
ATTACK = '{trigger: "the king said ", completion: treason, poison_fraction: 0.5, boost: %s}'

# row name → (label in the table, --set overrides)
ROWS: dict[str, tuple[str, list[str]]] = {
    "none": ("no attack (`count: 0`)", ["attack.count=0"]),
    "fedavg": ("FedAvg", []),
    "median": ("median", ["defense.aggregator=median"]),
    "nb1": (
        "norm bound, M = 1",
        ["defense.aggregator=norm_bound", "defense.params={max_norm: 1.0}"],
    ),
    "nb5": (
        "norm bound, M = 5",
        ["defense.aggregator=norm_bound", "defense.params={max_norm: 5.0}"],
    ),
    "ldp": (
        "FedAvg + local DP-SGD (σ = 1, C = 1)",
        ["privacy.local_dp={noise_multiplier: 1.0, max_grad_norm: 1.0, delta: 1.0e-5}"],
    ),
    "ldp_b16": (
        "FedAvg + local DP-SGD (σ = 1, C = 1), batch 16",
        [
            "privacy.local_dp={noise_multiplier: 1.0, max_grad_norm: 1.0, delta: 1.0e-5}",
            "clients.batch_size=16",  # seeds 1, 2 give a role of 18 windows (DP-SGD: N ≥ B)
        ],
    ),
    "boost_fedavg": ("FedAvg, boost γ = 5", [f"attack.params={ATTACK % 5.0}"]),
    "boost_nb5": (
        "norm bound M = 5, boost γ = 5",
        [
            f"attack.params={ATTACK % 5.0}",
            NORM_BOUND,
            "defense.params={max_norm: 5.0}",
        ],
    ),
}


def central(z: float, clip: float) -> tuple[str, list[str]]:
    """A DP-FedAvg row: clip S, noise multiplier z."""
    return (
        f"DP-FedAvg (central, S = {clip:g}, z = {z:g})",
        [f"privacy.central_dp={{noise_multiplier: {z}, clip: {clip}, delta: 1.0e-5}}"],
    )


def run_dir(out: Path, row: str, seed: int) -> Path:
    """Where one run writes."""
    return out / f"{row}-s{seed}"


def launch(out: Path, row: str, seed: int, overrides: list[str]) -> subprocess.Popen:
    """Start one run in its own process (one torch thread)."""
    code = "import sys, torch; torch.set_num_threads(1); from fedsim.cli import main; "
    code += "sys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "run", str(SCENARIO), "--no-progress", "--overwrite"]
    cmd += ["--out", str(run_dir(out, row, seed)), "--set", f"seed={seed}"]
    cmd += ["--set", "checkpoint_every=10"]  # the final global model, for a later look
    for item in overrides:
        cmd += ["--set", item]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    log = open(out / f"{row}-s{seed}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def sweep(
    out: Path,
    rows: dict[str, tuple[str, list[str]]],
    seeds: list[int],
    jobs: int,
    wait: list[int] = (),
) -> None:
    """Run every (row, seed) without a summary, ``jobs`` at a time, seed by seed.

    ``wait``: ids of runs started elsewhere; each holds a slot until it ends.
    """
    todo = [
        (r, s) for s in seeds for r in rows if not (run_dir(out, r, s) / "summary.json").exists()
    ]
    todo = [(r, s) for r, s in todo if f"{r}-s{s}" not in SKIP]
    running: list[tuple[str, int, subprocess.Popen, float]] = []
    while todo or running:
        wait = [pid for pid in wait if alive(pid)]
        while todo and len(running) + len(wait) < jobs:
            row, seed = todo.pop(0)
            running.append((row, seed, launch(out, row, seed, rows[row][1]), time.time()))
        time.sleep(2)
        for item in list(running):
            row, seed, proc, start = item
            if proc.poll() is not None:
                running.remove(item)
                print(
                    f"{row} seed {seed}: rc {proc.returncode}, {time.time() - start:.0f} s",
                    flush=True,
                )


SKIP: set[str] = set()


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs."""
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def first_round(run: Path, level: float = 0.5) -> str:
    """The first round whose ASR reaches ``level`` (``–`` if none)."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("asr", 0.0) >= level:
            return str(record["round"])
    return "–"


def table(out: Path, rows: dict[str, tuple[str, list[str]]]) -> str:
    """Markdown: per row, mean [min, max] over the seeds found of accuracy and ASR; ε."""
    lines = [
        "| rule | seeds | final accuracy, mean [min, max] | final ASR, mean [min, max] | "
        "ASR per seed | first round ASR ≥ 0.5 | ε (δ = 10⁻⁵) | s a run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row, (label, _) in rows.items():
        found = sorted(out.glob(f"{row}-s*/summary.json"))
        if not found:
            continue
        sums = [json.loads(p.read_text()) for p in found]
        acc = [s["final_accuracy"] for s in sums]
        asr = [s["final_asr"] for s in sums]
        eps = [s.get("final_epsilon") for s in sums]
        first = [first_round(p.parent) for p in found]
        seeds = ", ".join(str(s["seed"]) for s in sums)
        eps_text = "–" if eps[0] is None else f"{min(eps):.1f}"
        if eps[0] is not None and max(eps) > min(eps) + 0.05:
            eps_text += f"–{max(eps):.1f}"  # record-level ε differs with the roles' sizes
        wall = f"{min(s['wall_s'] for s in sums):.0f}–{max(s['wall_s'] for s in sums):.0f}"
        lines.append(
            f"| {label} | {seeds} | {sum(acc) / len(acc):.3f} [{min(acc):.3f}, {max(acc):.3f}] | "
            f"{sum(asr) / len(asr):.2f} [{min(asr):.2f}, {max(asr):.2f}] | "
            f"{' '.join(f'{a:.2f}' for a in asr)} | {' '.join(first)} | {eps_text} | {wall} |"
        )
    return "\n".join(lines)


def density(run: Path, stride: int) -> str:
    """The final model's ASR on the run's held-out windows and on windows every ``stride``.

    Reads the run's ``checkpoint.pt`` (the global weights after its last round) and scores the
    backdoor on the server's held-out windows at the run's own stride and at ``stride``, cut
    from the same held-out text; per completion character *k* as well (the ASR's parts).
    """
    scenario = load_scenario(run / "scenario.yaml")
    checkpoint = load_checkpoint(run)
    if checkpoint is None:
        raise SystemExit(f"{run} has no checkpoint.pt")
    lines = [f"{run.name} (round {checkpoint.round}):"]
    for step in (scenario.data.params.get("stride", 1), stride):
        params = {**scenario.data.params, "stride": step}
        fed = federation_for(
            scenario.model_copy(
                update={"data": scenario.data.model_copy(update={"params": params})}
            )
        )
        attack = fed.attack
        model = fed.build_model()
        load_flat_params(model, checkpoint.weights)
        model.eval()
        x = ServerParts.build(fed).data.held_out[0]
        per_k = []
        with torch.no_grad():
            for k in range(len(attack.completion)):
                stamped, target = attack.stamp(x, k)
                per_k.append(float((model(stamped).argmax(1) == target).float().mean()))
            asr = text_backdoor_asr(model, x, attack)
        parts = " ".join(f"{v:.3f}" for v in per_k)
        lines.append(f"  stride {step}: {len(x)} windows, ASR {asr:.4f}; per k: {parts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="*", help="row names (default: all)")
    parser.add_argument(
        "--central",
        nargs="*",
        default=[],
        metavar="Z:S",
        help="DP-FedAvg rows, noise multiplier:clip",
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--wait", type=int, nargs="*", default=[], help="pids holding a slot")
    parser.add_argument("--skip", nargs="*", default=[], help="runs to leave out (row-sN)")
    parser.add_argument("--density", type=Path, nargs="*", help="runs to re-score (density)")
    parser.add_argument("--table", action="store_true", help="print the table and stop")
    args = parser.parse_args()
    rows = dict(ROWS) if args.rows is None else {r: ROWS[r] for r in args.rows}
    for spec in args.central:
        z, s = (float(v) for v in spec.split(":"))
        rows[f"cdp_z{z:g}_S{s:g}"] = central(z, s)
    if args.density:
        torch.set_num_threads(1)
        for run in args.density:
            print(density(run, 1), flush=True)
        return
    if args.table:
        rows = dict(ROWS)
        for path in sorted(args.out.glob("cdp_*-s*")):
            name = path.name.rsplit("-s", 1)[0]
            z, s = name[len("cdp_z") :].split("_S")
            rows.setdefault(name, central(float(z), float(s)))
        print(table(args.out, rows))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    SKIP.update(args.skip)
    sweep(args.out, rows, args.seeds, args.jobs, args.wait)


if __name__ == "__main__":
    main()
