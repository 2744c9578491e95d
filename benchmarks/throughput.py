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

The large workload (``--workload large``, issue #11) is the vectorized runtime's: synthetic
28×28 grey images in 10 classes (the ``synthetic`` dataset, 80·N samples of which a fifth is
held out for the server's evaluation, so 64 training examples per client when 5 divides N),
N ∈ {100, 1000} clients per round, each 1 local epoch of the same SGD (batch 32: 2 steps), on
two models: ``lenet5`` (LeNet-5, 61,706 parameters) and ``cnn-1m`` (fedsim's ``cnn`` with
width 208: 986,346 parameters). Executions ``ray`` and ``vectorized`` (``inline`` and
``bare`` on request). Each row also has the training FLOPs of one client update (counted with
``FlopCounterMode``), the achieved FLOP/s (FLOPs per update × updates/s) and its share of the
device's float32 matmul throughput, measured in a process of its own (see :mod:`flops`).

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
import itertools
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
LARGE_RATIOS = (
    ("vectorized", "ray"),
    ("vectorized", "inline"),
    ("vectorized", "bare"),
    ("ray", "bare"),
    ("inline", "bare"),
)
BATCH_SIZE, LR, MOMENTUM, SEED, LOCAL_EPOCHS = 32, 0.05, 0.9, 0, 1

LARGE_MODELS: dict[str, dict[str, Any]] = {
    "lenet5": {"name": "lenet5"},
    "cnn-1m": {"name": "cnn", "params": {"width": 208}},
}
"""The large workload's models: label → the scenario's ``model`` block."""
LARGE_EXECUTIONS = ("ray", "inline", "vectorized", "bare")
LARGE_DEFAULTS = {"clients": [100, 1000], "executions": "ray,vectorized", "models": "lenet5,cnn-1m"}
EXAMPLES_PER_CLIENT, IMAGE_SHAPE, NUM_CLASSES = 64, (1, 28, 28), 10


def _training(num_clients: int) -> dict[str, Any]:
    """The scenario's ``clients`` block: every client, 1 epoch of SGD with momentum."""
    return {
        "per_round": num_clients,
        "local_epochs": LOCAL_EPOCHS,
        "batch_size": BATCH_SIZE,
        "lr": LR,
        "momentum": MOMENTUM,
    }


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
        "clients": _training(num_clients),
        "attack": {"name": "none"},
        "defense": {"aggregator": "fedavg"},
    }


def large_scenario_dict(
    model: str,
    num_clients: int,
    rounds: int,
    runtime: str,
    device: str,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """The large workload as a fedsim scenario (``model``: a :data:`LARGE_MODELS` label).

    The synthetic dataset has 80·N samples; a fifth is the test set, the other 64·N are split
    IID into N near-equal parts (64 examples each when 5 divides N).
    """
    c, h, _ = IMAGE_SHAPE
    return {
        "name": f"throughput-large-{model}-{runtime}-{num_clients}",
        "seed": SEED,
        "rounds": rounds,
        "runtime": runtime,
        "device": device,
        "data": {
            "dataset": "synthetic",
            "partition": "iid",
            "num_clients": num_clients,
            "test_fraction": 0.2,
            "params": {
                "num_samples": EXAMPLES_PER_CLIENT * num_clients * 5 // 4,
                "image_size": h,
                "channels": c,
                "num_classes": NUM_CLASSES,
            },
        },
        "model": LARGE_MODELS[model],
        "clients": _training(num_clients),
        "attack": {"name": "none"},
        "defense": {"aggregator": "fedavg"},
        "vectorized": {"chunk_size": chunk_size},
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

    from fedsim.config import parse_scenario
    from fedsim.data import federated_data
    from fedsim.logs import quiet_flower
    from fedsim.results import read_metrics
    from fedsim.runner import run_scenario

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

    from fedsim.config import parse_scenario
    from fedsim.federation import federation_for
    from fedsim.params import flat_params, load_flat_params
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


def _child_command(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    threads: int,
    model: str | None,
    chunk_size: int | None,
) -> list[str]:
    """The command line of the child process that runs one measurement."""
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
    if model is not None:
        command += ["--workload", "large", "--models", model]
    if chunk_size is not None:
        command += ["--chunk-size", str(chunk_size)]
    return command


def measure(
    execution: str,
    num_clients: int,
    rounds: int,
    device: str,
    threads: int = 1,
    *,
    model: str | None = None,
    chunk_size: int | None = None,
) -> dict[str, Any]:
    """Run one execution in a child process; its result plus the tree's peak RSS.

    With ``model`` (a :data:`LARGE_MODELS` label) it runs the large workload, and the row
    also names the workload and model and has the mean training examples per client.
    """
    command = _child_command(execution, num_clients, rounds, device, threads, model, chunk_size)
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
    large = {}
    if model is not None:
        examples = result["train_examples"] / num_clients
        large = {"workload": "large", "model": model, "examples_per_client": examples}
    return {
        **large,
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


def ratios(
    rows: list[dict[str, Any]], pairs: tuple[tuple[str, str], ...] = RATIOS
) -> list[dict[str, Any]]:
    """Ratios of client-updates/s (``pairs``), per model and N, where both were measured.

    Rows without a ``model`` (the digits workload) are grouped by N alone, and their ratios
    name no model.
    """
    out = []
    groups = {(r.get("model"), r["clients"]) for r in rows}
    for model, n in sorted(groups, key=lambda g: (g[0] or "", g[1])):
        speed = {
            r["execution"]: r["updates_per_s"]
            for r in rows
            if r["clients"] == n and r.get("model") == model
        }
        named = {} if model is None else {"model": model}
        for top, bottom in pairs:
            if top in speed and bottom in speed:
                value = speed[top] / speed[bottom]
                out.append({**named, "clients": n, "ratio": f"{top}/{bottom}", "value": value})
    return out


# --------------------------------------------------------------------------------------------
# The large workload's FLOPs and device share (see flops.py).
# --------------------------------------------------------------------------------------------


def measure_peak(device: str) -> dict[str, Any]:
    """The device's float32 matmul throughput (:func:`flops.matmul_peak`), in a child process."""
    command = _child_command("matmul-peak", 1, 1, device, 1, None, None)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"measuring the matmul throughput failed:\n{tail}")
    return json.loads(lines[-1])


def model_flops(model: str) -> dict[str, float]:
    """Parameters of the large workload's ``model`` and its training FLOPs per example (f)."""
    from flops import training_flops_per_example

    from fedsim.models import build_model

    spec = LARGE_MODELS[model]
    net = build_model(spec["name"], IMAGE_SHAPE, NUM_CLASSES, **spec.get("params", {}))
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "flops_per_example": training_flops_per_example(net, IMAGE_SHAPE, BATCH_SIZE),
    }


def add_flops(row: dict[str, Any], counted: dict[str, float], peak: dict[str, Any]) -> None:
    r"""Add the row's FLOPs per update, achieved FLOP/s and shares of the matmul peak.

    :math:`F_u = E \cdot \bar n \cdot f`, achieved :math:`= F_u \cdot U`, share = achieved / Π
    (``share``: Π at torch's default float32 precision; ``share_tf32``: Π with TF32).
    """
    per_update = LOCAL_EPOCHS * row["examples_per_client"] * counted["flops_per_example"]
    achieved = per_update * row["updates_per_s"]
    row.update(
        params=counted["params"],
        flops_per_update=per_update,
        achieved_flop_s=achieved,
        share=achieved / peak["flop_s"],
        share_tf32=achieved / peak["flop_s_tf32"],
    )


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


def print_large_table(
    rows: list[dict[str, Any]], found: list[dict[str, Any]], peak: dict[str, Any]
) -> None:
    """The large workload's results, FLOPs, shares and ratios as plain-text tables."""
    print(
        f"\nthroughput on {peak_device(peak)} (large: synthetic 28×28, "
        f"{EXAMPLES_PER_CLIENT} examples per client, 1 local epoch, batch {BATCH_SIZE}, FedAvg)"
    )
    matmul = (
        f"float32 matmul {peak['matrix']}²: {peak['flop_s'] / 1e9:.1f} GFLOP/s at precision "
        f"{peak['float32_matmul_precision']!r}"
    )
    if peak["kind"] == "cuda":
        matmul += (
            f", {peak['flop_s_tf32'] / 1e9:.1f} GFLOP/s with TF32; cuDNN convolutions: "
            f"{peak['cudnn_conv_fp32_precision']}"
        )
    print(matmul)
    models = {r["model"]: r["params"] for r in rows}
    print(", ".join(f"{m}: {p:,} parameters" for m, p in models.items()) + "\n")
    print(
        f"{'model':<8}{'execution':<12}{'N':>6}{'round 1 s':>11}{'later s':>9}{'updates/s':>11}"
        f"{'GFLOP/upd':>11}{'GFLOP/s':>10}{'share':>9}{'TF32':>9}{'peak MiB':>10}"
        f"{'accuracy':>10}"
    )
    for r in rows:
        rss = f"{r['peak_rss_mib']:.0f}" if r["peak_rss_mib"] is not None else "-"
        print(
            f"{r['model']:<8}{r['execution']:<12}{r['clients']:>6}{r['first_round_s']:>11.2f}"
            f"{r['seconds']:>9.2f}{r['updates_per_s']:>11.1f}{r['flops_per_update'] / 1e9:>11.3f}"
            f"{r['achieved_flop_s'] / 1e9:>10.1f}{_percent(r['share']):>9}"
            f"{_percent(r['share_tf32']):>9}{rss:>10}{r['accuracy']:>10.4f}"
        )
    if found:
        print(f"\n{'model':<8}{'ratio of updates/s':<20}{'N':>6}{'value':>9}")
        for q in found:
            print(f"{q['model']:<8}{q['ratio']:<20}{q['clients']:>6}{q['value']:>9.2f}")


def peak_device(peak: dict[str, Any]) -> str:
    """What the large workload ran on, in words, without touching CUDA in this process."""
    if peak["kind"] == "cuda":
        return f"GPU {peak['device']}, {os.cpu_count()} CPU cores"
    return f"CPU ({os.cpu_count()} cores)"


def _percent(share: float) -> str:
    """``share`` as a percentage: one decimal from 1 %, two significant digits below."""
    return f"{100 * share:.1f}%" if share >= 0.01 else f"{100 * share:.2g}%"


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
    rows = [
        measure(e, n, args.rounds, args.device, args.threads) for n in sizes for e in executions
    ]
    found = ratios(rows)
    print_table(rows, found, args.device)
    if args.json:
        report = {"device": device_name(args.device), "rows": rows, "ratios": found}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return rows


def _run_large(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The large workload: the matmul peak, then every (model, N, execution), then the tables.

    With ``--json`` the report is rewritten after every measurement, so a run cut short
    keeps what it measured.
    """
    if args.large:
        parser.error("--large adds N = 200 to the digits workload; use --clients here")
    executions = _listed(
        parser, args.executions or LARGE_DEFAULTS["executions"], LARGE_EXECUTIONS, "executions"
    )
    models = _listed(parser, args.models or LARGE_DEFAULTS["models"], tuple(LARGE_MODELS), "models")
    sizes = args.clients or LARGE_DEFAULTS["clients"]
    peak = measure_peak(args.device)
    counted = {m: model_flops(m) for m in models}
    rows: list[dict[str, Any]] = []
    for model, n, e in itertools.product(models, sizes, executions):
        row = measure(
            e, n, args.rounds, args.device, args.threads, model=model, chunk_size=args.chunk_size
        )
        add_flops(row, counted[model], peak)
        rows.append(row)
        share = _percent(row["share"])
        print(f"{model} N={n} {e}: {row['updates_per_s']:.1f} updates/s, share {share}", flush=True)
        if args.json:
            _write_large_report(args, peak, rows)
    print_large_table(rows, ratios(rows, LARGE_RATIOS), peak)
    if args.json:
        _write_large_report(args, peak, rows)
    return rows


def _write_large_report(
    args: argparse.Namespace, peak: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    """The large workload's JSON report: device, matmul peak, rows and ratios."""
    report = {
        "device": peak_device(peak),
        "workload": "large",
        "matmul_peak": peak,
        "rows": rows,
        "ratios": ratios(rows, LARGE_RATIOS),
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


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
