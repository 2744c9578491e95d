"""Client-update throughput: vanilla Flower vs fedsim ``ray`` vs fedsim ``inline`` vs a bare loop.

One workload — digits, the ``cnn`` model, N IID clients, each 1 local epoch of SGD (batch 32,
lr 0.05, momentum 0.9), R rounds of FedAvg with the global model evaluated on the test set
after each round — measured on four executions, each in its own fresh Python process:

``flower``
    The peer: a Flower app written in the benchmark the way Flower's quickstart-pytorch example
    writes one (stock ``FedAvg``; in every train call a new model, the weights loaded from a
    state-dict ``ArrayRecord``, the partition turned into a ``TensorDataset`` and a shuffling
    ``DataLoader``), on Flower's Ray simulation engine with one CPU per client.
``ray``
    fedsim's ``ray`` runtime (Flower's simulation engine, fedsim's ClientApp and ServerApp).
``inline``
    fedsim's ``inline`` runtime (the same apps, driven in-process without Ray).
``bare``
    A bare PyTorch loop: the same clients trained one after another in one process, data
    already tensors, one model object — the practical limit of sequential training.
``vectorized``
    fedsim's ``vectorized`` runtime: the same ServerApp, each round's clients trained together
    with ``torch.func`` (issue #11).
``flower-inline``
    The ``flower`` app on fedsim's in-process Grid (no Ray): used by the smoke test so the
    baseline's code cannot rot; not part of the default table.

Throughput is steady-state client updates per second: N·(R−1) / (seconds of rounds 2..R),
each round timed inside its process from the start of training to the end of the central
evaluation. Round 1, which pays one-off costs (Ray actors importing torch and the apps,
building partitions), is shown apart as ``round 1 s``; Ray's start-up is in neither (a run
with one round is timed whole). Peak memory is the largest resident set
of the process and all its descendants (Ray's workers and daemons included), sampled from
``/proc`` every 50 ms. Everything uses the GPU when one is visible (Ray clients then share it
in fractions).

Usage::

    python benchmarks/throughput.py                      # N in {10, 50}, 5 rounds
    python benchmarks/throughput.py --large              # adds N = 200
    python benchmarks/throughput.py --clients 10 --rounds 3 --executions inline,bare
    python benchmarks/throughput.py --json out.json      # also write the results as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # fedsim, and the baseline next to this file

EXECUTIONS = ("flower", "ray", "inline", "bare", "vectorized")
EXTRA_EXECUTIONS = ("flower-inline",)
RATIOS = (
    ("ray", "flower"),
    ("inline", "bare"),
    ("ray", "bare"),
    ("vectorized", "ray"),
    ("vectorized", "bare"),
)
BATCH_SIZE, LR, MOMENTUM, SEED = 32, 0.05, 0.9, 0


def scenario_dict(num_clients: int, rounds: int, runtime: str, device: str) -> dict[str, Any]:
    """The workload as a fedsim scenario."""
    return {
        "name": f"throughput-{runtime}-{num_clients}",
        "seed": SEED,
        "rounds": rounds,
        "runtime": runtime,
        "device": device,
        "data": {"dataset": "digits", "partition": "iid", "num_clients": num_clients},
        "model": {"name": "cnn"},
        "clients": {
            "per_round": num_clients,
            "local_epochs": 1,
            "batch_size": BATCH_SIZE,
            "lr": LR,
            "momentum": MOMENTUM,
        },
        "attack": {"name": "none"},
        "defense": {"aggregator": "fedavg"},
    }


# --------------------------------------------------------------------------------------------
# The executions (each runs in a child process and returns {"seconds", "accuracy"}).
# --------------------------------------------------------------------------------------------


def run_fedsim(num_clients: int, rounds: int, runtime: str, device: str) -> dict[str, float]:
    """fedsim's own runtime on the workload; seconds as measured by its ServerApp."""
    import tempfile

    from fedsim.config import parse_scenario
    from fedsim.logs import quiet_flower
    from fedsim.results import read_metrics
    from fedsim.runner import run_scenario

    quiet_flower()
    scenario = parse_scenario(scenario_dict(num_clients, rounds, runtime, device))
    with tempfile.TemporaryDirectory() as out:
        _, summary = run_scenario(scenario, out, show_progress=False)
        round_seconds = [row["time_s"] for row in read_metrics(out)]
    return {"round_seconds": round_seconds, "accuracy": summary["final_accuracy"]}


def run_bare(num_clients: int, rounds: int, device: str) -> dict[str, float]:
    """Sequential clients in one process on tensors: the practical limit."""
    import torch
    import torch.nn.functional as F

    from fedsim.config import parse_scenario
    from fedsim.federation import federation_for
    from fedsim.params import flat_params, load_flat_params
    from fedsim.training import evaluate

    fed = federation_for(parse_scenario(scenario_dict(num_clients, rounds, "inline", device)))
    model = fed.build_model()
    dev = next(model.parameters()).device
    clients = [tuple(t.to(dev) for t in fed.data.client(c)) for c in range(num_clients)]
    x_test, y_test = fed.data.dataset.x_test.to(dev), fed.data.dataset.y_test.to(dev)
    generator = torch.Generator().manual_seed(SEED)
    global_weights = flat_params(model).clone()
    x, y = clients[0]
    F.cross_entropy(model(x[:BATCH_SIZE]), y[:BATCH_SIZE]).backward()  # warm-up, untimed
    round_seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        total, examples = torch.zeros_like(global_weights), 0
        for x, y in clients:
            load_flat_params(model, global_weights)
            optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
            model.train()
            order = torch.randperm(len(y), generator=generator).to(dev)
            for start in range(0, len(y), BATCH_SIZE):
                batch = order[start : start + BATCH_SIZE]
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(model(x[batch]), y[batch]).backward()
                optimizer.step()
            total += len(y) * flat_params(model)
            examples += len(y)
        global_weights = total / examples
        load_flat_params(model, global_weights)
        accuracy = evaluate(model, x_test, y_test).accuracy  # synchronises a GPU
        round_seconds.append(time.perf_counter() - started)
    return {"round_seconds": round_seconds, "accuracy": accuracy}


def run_flower(num_clients: int, rounds: int, device: str, on_ray: bool) -> dict[str, float]:
    """The vanilla Flower app (see :mod:`flower_baseline`) on Ray or on fedsim's inline Grid."""
    import flower_baseline

    timing: dict[str, Any] = {}
    server_app = flower_baseline.server_app(num_clients, rounds, device, timing)
    client_app = flower_baseline.client_app(num_clients, device)
    if on_ray:
        from fedsim.logs import quiet_flower

        quiet_flower()
        # Ray's workers import the baseline by name: put this folder on their path.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(HERE), os.environ.get("PYTHONPATH")])
        )
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        from flwr.simulation import run_simulation

        from fedsim.config import parse_scenario
        from fedsim.runtimes.ray import backend_config

        scenario = parse_scenario(scenario_dict(num_clients, rounds, "ray", device))
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_clients,
            backend_config=backend_config(scenario),
        )
    else:
        from fedsim.runtimes.inline import run_inline

        run_inline(server_app, client_app, num_clients, SEED)
    return timing


def run_one(execution: str, num_clients: int, rounds: int, device: str) -> dict[str, float]:
    """Run ``execution`` in this process."""
    if execution in ("ray", "inline", "vectorized"):
        return run_fedsim(num_clients, rounds, execution, device)
    if execution == "bare":
        return run_bare(num_clients, rounds, device)
    if execution in ("flower", "flower-inline"):
        return run_flower(num_clients, rounds, device, on_ray=execution == "flower")
    raise SystemExit(f"unknown execution {execution!r}")


# --------------------------------------------------------------------------------------------
# The parent: one child process per (execution, N), peak memory of its process tree.
# --------------------------------------------------------------------------------------------


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (Linux ``/proc``; 0 elsewhere)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1]) * page
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


def measure(
    execution: str, num_clients: int, rounds: int, device: str, threads: int = 1
) -> dict[str, Any]:
    """Run one execution in a child process; its result plus the tree's peak RSS."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        execution,
        "--clients",
        str(num_clients),
        "--rounds",
        str(rounds),
        "--device",
        device,
        "--threads",
        str(threads),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, done = [0], threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], _tree_rss(child.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = child.communicate()
    done.set()
    sampler.join()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if child.returncode != 0 or not lines:
        tail = "\n".join(err.strip().splitlines()[-15:])
        raise RuntimeError(f"{execution} with N={num_clients} failed:\n{tail}")
    result = json.loads(lines[-1])
    timed = result["round_seconds"][1:] or result["round_seconds"]  # round 1 warms up
    updates = num_clients * len(timed)
    return {
        "execution": execution,
        "clients": num_clients,
        "rounds": rounds,
        "updates": updates,
        "seconds": sum(timed),
        "updates_per_s": updates / sum(timed),
        "first_round_s": result["round_seconds"][0],
        "accuracy": result["accuracy"],
        "peak_rss_mib": peak[0] / 2**20 if peak[0] else None,
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios of client-updates/s (:data:`RATIOS`), per N, where both were measured."""
    out = []
    for n in sorted({r["clients"] for r in rows}):
        speed = {r["execution"]: r["updates_per_s"] for r in rows if r["clients"] == n}
        for top, bottom in RATIOS:
            if top in speed and bottom in speed:
                out.append(
                    {"clients": n, "ratio": f"{top}/{bottom}", "value": speed[top] / speed[bottom]}
                )
    return out


def print_table(rows: list[dict[str, Any]], found: list[dict[str, Any]], device: str) -> None:
    """The results and the ratios as plain-text tables."""
    print(f"\nthroughput on {device_name(device)} (digits, cnn, 1 local epoch, FedAvg)\n")
    print(
        f"{'execution':<14}{'N':>5}{'rounds':>8}{'round 1 s':>11}{'later s':>9}"
        f"{'updates/s':>11}{'peak MiB':>10}{'accuracy':>10}"
    )
    for r in rows:
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "-"
        print(
            f"{r['execution']:<14}{r['clients']:>5}{r['rounds']:>8}{r['first_round_s']:>11.2f}"
            f"{r['seconds']:>9.2f}{r['updates_per_s']:>11.1f}{rss:>10}{r['accuracy']:>10.4f}"
        )
    if found:
        print(f"\n{'ratio of updates/s':<20}{'N':>5}{'value':>9}")
        for q in found:
            print(f"{q['ratio']:<20}{q['clients']:>5}{q['value']:>9.2f}")


def device_name(device: str) -> str:
    """What the benchmark ran on, in words."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}, {os.cpu_count()} CPU cores"
    return f"CPU ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 50], metavar="N")
    parser.add_argument("--large", action="store_true", help="also N = 200")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--executions",
        default=",".join(EXECUTIONS),
        help=f"comma-separated, from {', '.join(EXECUTIONS + EXTRA_EXECUTIONS)}",
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads of the bare loop and flower-inline (default 1: what "
        "fedsim's clients and Ray's one-CPU actors use)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows and ratios as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child in ("bare", "flower-inline"):
            import torch

            torch.set_num_threads(args.threads)
        result = run_one(args.child, args.clients[0], args.rounds, args.device)
        print(json.dumps(result))
        return []
    executions = [e.strip() for e in args.executions.split(",") if e.strip()]
    unknown = set(executions) - set(EXECUTIONS + EXTRA_EXECUTIONS)
    if unknown:
        parser.error(f"unknown executions: {', '.join(sorted(unknown))}")
    sizes = list(args.clients) + ([200] if args.large and 200 not in args.clients else [])
    rows = [
        measure(e, n, args.rounds, args.device, args.threads) for n in sizes for e in executions
    ]
    found = ratios(rows)
    print_table(rows, found, args.device)
    if args.json:
        report = {"device": device_name(args.device), "rows": rows, "ratios": found}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
