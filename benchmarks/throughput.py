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

The large workload (``--workload large``, issue #11: synthetic 28×28 data, LeNet-5 and a
1M-parameter CNN, 100 and 1,000 clients, FLOPs and share of the device) is :mod:`large_workload`'s.

An execution that fails (its child process exits with an error, or runs past an hour) is
reported as ``failed: <its error's last line>`` in the table and the JSON (``status``), and
the others still run.

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
    python benchmarks/throughput.py --workload large --device cuda   # the GPU workload
    python benchmarks/throughput.py --workload large --models lenet5 --clients 10 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]  # fedsim, and the modules next to this file

from harness import measure, ok, ratios  # noqa: E402
from large_workload import (  # noqa: E402
    LARGE_DEFAULTS,
    LARGE_EXECUTIONS,
    LARGE_MODELS,
    large_scenario_dict,
    run_large,
)
from training_setup import BATCH_SIZE, LR, MOMENTUM, SEED, clients_block  # noqa: E402

EXECUTIONS = ("flower", "ray", "inline", "bare", "vectorized")
EXTRA_EXECUTIONS = ("flower-inline",)
RATIOS = (
    ("ray", "flower"),
    ("inline", "bare"),
    ("ray", "bare"),
    ("vectorized", "ray"),
    ("vectorized", "bare"),
)


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
        "clients": clients_block(num_clients),
        "attack": {"name": "none"},
        "defense": {"aggregator": "fedavg"},
    }


def workload_scenario(
    runtime: str,
    num_clients: int,
    rounds: int,
    device: str,
    model: str | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """The digits workload's scenario (``model`` None), else the large one's with ``model``."""
    if model is None:
        return scenario_dict(num_clients, rounds, runtime, device)
    return large_scenario_dict(model, num_clients, rounds, runtime, device, chunk_size)


# --------------------------------------------------------------------------------------------
# The executions (each runs in a child process and returns its round seconds and accuracy).
# --------------------------------------------------------------------------------------------


def run_fedsim(raw: dict[str, Any]) -> dict[str, Any]:
    """fedsim's own runtime on the scenario ``raw``; seconds as measured by its ServerApp."""
    import tempfile

    from fedsim.data import federated_data
    from fedsim.results import read_metrics
    from fedsim.run.logs import quiet_flower
    from fedsim.run.runner import run_scenario
    from fedsim.scenario import parse_scenario

    quiet_flower()
    scenario = parse_scenario(raw)
    with tempfile.TemporaryDirectory() as out:
        _, summary = run_scenario(scenario, out, show_progress=False)
        round_seconds = [row["time_s"] for row in read_metrics(out)]
    parts = federated_data(scenario.data, scenario.seed).partitions  # cached in this process
    return {
        "round_seconds": round_seconds,
        "accuracy": summary["final_accuracy"],
        "train_examples": sum(len(p) for p in parts),
    }


def run_bare(raw: dict[str, Any]) -> dict[str, Any]:
    """Sequential clients in one process on tensors: the practical limit."""
    import torch
    import torch.nn.functional as F

    from fedsim.federation import federation_for
    from fedsim.params import flat_params, load_flat_params
    from fedsim.scenario import parse_scenario
    from fedsim.training import evaluate

    num_clients, rounds = raw["data"]["num_clients"], raw["rounds"]
    fed = federation_for(parse_scenario(raw))
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
    examples = sum(len(y) for _, y in clients)
    return {"round_seconds": round_seconds, "accuracy": accuracy, "train_examples": examples}


def run_flower(num_clients: int, rounds: int, device: str, on_ray: bool) -> dict[str, float]:
    """The vanilla Flower app (see :mod:`flower_baseline`) on Ray or on fedsim's inline Grid."""
    import flower_baseline

    timing: dict[str, Any] = {}
    server_app = flower_baseline.server_app(num_clients, rounds, device, timing)
    client_app = flower_baseline.client_app(num_clients, device)
    if on_ray:
        from fedsim.run.logs import quiet_flower

        quiet_flower()
        # Ray's workers import the baseline by name: put this folder on their path.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), str(HERE), os.environ.get("PYTHONPATH")])
        )
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        from flwr.simulation import run_simulation

        from fedsim.run.runtimes.ray import backend_config
        from fedsim.scenario import parse_scenario

        scenario = parse_scenario(scenario_dict(num_clients, rounds, "ray", device))
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_clients,
            backend_config=backend_config(scenario),
        )
    else:
        from fedsim.run.runtimes.inline import run_inline

        run_inline(server_app, client_app, num_clients, SEED)
    return timing


def run_one(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    model: str | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Run ``execution`` in this process (on the large workload's ``model`` when given)."""
    if execution == "matmul-peak":
        from flops import matmul_peak

        return matmul_peak(device)
    raw = workload_scenario(
        execution if execution in ("ray", "inline", "vectorized") else "inline",
        num_clients,
        rounds,
        device,
        model,
        chunk_size,
    )
    if execution in ("ray", "inline", "vectorized"):
        return run_fedsim(raw)
    if execution == "bare":
        return run_bare(raw)
    if execution in ("flower", "flower-inline") and model is None:
        return run_flower(num_clients, rounds, device, on_ray=execution == "flower")
    raise SystemExit(f"unknown execution {execution!r}")


def print_table(rows: list[dict[str, Any]], found: list[dict[str, Any]], device: str) -> None:
    """The results and the ratios as plain-text tables."""
    print(f"\nthroughput on {device_name(device)} (digits, cnn, 1 local epoch, FedAvg)\n")
    print(
        f"{'execution':<14}{'N':>5}{'rounds':>8}{'round 1 s':>11}{'later s':>9}"
        f"{'updates/s':>11}{'peak MiB':>10}{'accuracy':>10}"
    )
    for r in rows:
        if not ok(r):
            print(f"{r['execution']:<14}{r['clients']:>5}{r['rounds']:>8}  {r['status']}")
            continue
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


def _parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workload",
        default="digits",
        choices=["digits", "large"],
        help="digits (default) or large: synthetic 28×28, lenet5 and cnn-1m, N = 100 and 1000",
    )
    parser.add_argument(
        "--clients",
        type=int,
        nargs="+",
        metavar="N",
        help="clients per round (default 10 50; large: 100 1000)",
    )
    parser.add_argument("--large", action="store_true", help="also N = 200 (digits workload)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--executions",
        help=f"comma-separated, from {', '.join(EXECUTIONS + EXTRA_EXECUTIONS)} (default: "
        f"{', '.join(EXECUTIONS)}); large: from {', '.join(LARGE_EXECUTIONS)} (default: "
        f"{LARGE_DEFAULTS['executions']})",
    )
    parser.add_argument(
        "--models",
        help=f"large workload: comma-separated, from {', '.join(LARGE_MODELS)} (default: all)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        metavar="K",
        help="large workload: the vectorized runtime's clients per chunk (default: automatic)",
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
    return parser


def _listed(
    parser: argparse.ArgumentParser, text: str, known: tuple[str, ...], what: str
) -> list[str]:
    """The comma-separated names in ``text``; a parser error names any unknown one."""
    names = [e.strip() for e in text.split(",") if e.strip()]
    unknown = set(names) - set(known)
    if unknown:
        parser.error(f"unknown {what}: {', '.join(sorted(unknown))}")
    return names


def _run_child(args: argparse.Namespace) -> list[dict[str, Any]]:
    """In a child process: run one measurement and print its result as one JSON line."""
    if args.child in ("bare", "flower-inline"):
        import torch

        torch.set_num_threads(args.threads)
    model = args.models if args.workload == "large" else None
    result = run_one(args.child, args.clients[0], args.rounds, args.device, model, args.chunk_size)
    print(json.dumps(result))
    return []


def _run_digits(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The digits workload: every (N, execution) in a child process, then the tables."""
    if args.models or args.chunk_size is not None:
        parser.error("--models and --chunk-size are for --workload large")
    clients = args.clients or [10, 50]
    executions = _listed(
        parser, args.executions or ",".join(EXECUTIONS), EXECUTIONS + EXTRA_EXECUTIONS, "executions"
    )
    sizes = list(clients) + ([200] if args.large and 200 not in clients else [])
    rows = []
    for n in sizes:
        for e in executions:
            rows.append(measure(e, n, args.rounds, args.device, args.threads))
            if not ok(rows[-1]):  # reported in the table; the other executions still run
                print(f"{e} with N={n}: {rows[-1]['status']}", file=sys.stderr, flush=True)
    found = ratios(rows, RATIOS)
    print_table(rows, found, args.device)
    if args.json:
        report = {"device": device_name(args.device), "rows": rows, "ratios": found}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return rows


def _run_large(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The large workload: its command line checked, then :func:`large_workload.run_large`."""
    if args.large:
        parser.error("--large adds N = 200 to the digits workload; use --clients here")
    executions = _listed(
        parser, args.executions or LARGE_DEFAULTS["executions"], LARGE_EXECUTIONS, "executions"
    )
    models = _listed(parser, args.models or LARGE_DEFAULTS["models"], tuple(LARGE_MODELS), "models")
    sizes = args.clients or LARGE_DEFAULTS["clients"]
    return run_large(
        models,
        sizes,
        executions,
        rounds=args.rounds,
        device=args.device,
        threads=args.threads,
        chunk_size=args.chunk_size,
        json_path=args.json,
    )


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the benchmark; return its rows."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.child:
        return _run_child(args)
    if args.workload == "large":
        return _run_large(parser, args)
    return _run_digits(parser, args)


if __name__ == "__main__":
    main()
