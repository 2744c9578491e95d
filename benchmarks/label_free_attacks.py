"""Generative transfer, task-agnostic and noise attacks on a multi-task digits federation.

Runs a small multi-task federation (digits, 5 IID clients, CNN width 8, 5 rounds, tasks digit,
parity and ge5) per seed and ε, and prints, from the robustness probe's last-round figures, the
transfer table (noise, generative with 1, 3 and 5 public-data agents, MI-FGSM on the same three
surrogates, generative with a client's agents, white-box PGD) and the per-task table (noise,
task_agnostic, task PGD). The numbers of docs/transfer-and-task-agnostic.md (about a minute of
probe time per run on one CPU thread).

    python benchmarks/label_free_attacks.py                      # seeds 0 1 2, eps 0.1 0.15 0.2
    python benchmarks/label_free_attacks.py --seeds 0 --eps 0.1
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
import yaml

from fedsim.cli import main


def scenario(seed: int, eps: float) -> dict:
    attacks = [
        {"name": "noise", "eps": eps},
        {"name": "pgd", "eps": eps, "steps": 20},
        {"name": "task_agnostic", "eps": eps},
        *({"name": "generative", "eps": eps, "agents": k} for k in (1, 3, 5)),
        {"name": "generative", "eps": eps, "agents": 3, "threat_model": "client"},
    ]
    return {
        "name": "label-free-attacks",
        "seed": seed,
        "rounds": 5,
        "runtime": "inline",
        "device": "cpu",
        "data": {
            "dataset": "digits",
            "partition": "iid",
            "num_clients": 5,
            "tasks": ["digit", "parity", "ge5"],
        },
        "model": {"name": "cnn", "params": {"width": 8}},
        "clients": {
            "per_round": 5,
            "local_epochs": 1,
            "batch_size": 32,
            "lr": 0.05,
            "momentum": 0.9,
        },
        "robustness": {
            "samples": 300,
            "attacks": attacks,
            "transfer": {"surrogates": ["mlp"] * 3, "eps": eps, "public_samples": 400},
            "save_plots": False,
        },
    }


def last_row(seed: int, eps: float, root: Path) -> dict:
    path = root / f"s{seed}_e{eps:g}.yaml"
    path.write_text(yaml.safe_dump(scenario(seed, eps)))
    out = root / path.stem
    if main(["run", str(path), "--out", str(out), "--no-progress", "--overwrite"]) != 0:
        raise SystemExit(f"run {path.stem} failed")
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def main_(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        for eps in args.eps:
            rows = [last_row(seed, eps, Path(tmp)) for seed in args.seeds]
            e = f"{eps:g}"
            print(f"\nε = {e}, seeds {args.seeds}")
            transfer = {
                "noise": f"noise-linf-{e}",
                **{f"generative, {k} agents": f"generative-linf-{e}-{k}agents" for k in (1, 3, 5)},
                "MI-FGSM, 3 surrogates": f"mifgsm-linf-{e}-transfer",
                "generative, 3 agents (client)": f"generative-linf-{e}-3agents-client",
                "PGD white-box": f"pgd-linf-{e}",
            }
            for name, label in transfer.items():
                accuracy = spread([r["robust_accuracy"]["digit"][label] for r in rows])
                success = spread([r["attack_success_rate"][label] for r in rows])
                print(f"| {name} | {accuracy} | {success} |")
            for task in ("digit", "parity", "ge5"):
                cells = [
                    spread([r["robust_accuracy"][task][f"{a}-linf-{e}"] for r in rows])
                    for a in ("noise", "task_agnostic", "pgd")
                ]
                clean = spread([r["task_accuracy"][task] for r in rows])
                print(f"| {task} | {clean} | " + " | ".join(cells) + " |")
            print("robustness_s", spread([r["robustness_s"] for r in rows]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.15, 0.2])
    main_(parser.parse_args())
