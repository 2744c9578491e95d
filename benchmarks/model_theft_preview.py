"""Preview of issue #23 (model theft) on digits: extraction curves, watermark removal, inheritance.

Not a test: prints three tables measured on this machine.

Setup: digits split 50/50 (seed 0). The "global model" is fedsim's ``cnn`` (width 8) after 10
rounds' stand-in (one clean epoch on the training half each, lr 0.05, momentum 0.9) with WAFFLE
embedding after every round (100 WAFFLEPattern triggers, threshold 0.98). The other half is
split into the attacker's public data (450 images, disjoint from the training data) and a
held-out set (449) for fidelity and accuracy.

(a) Knockoff Nets (random strategy) against the query budget for each answer type
    (``rounded``: 1 decimal), a fresh ``cnn`` surrogate per budget, 30 epochs, batch 32, lr 0.05,
    momentum 0.9; budgets past 450 re-use the public images shifted by up to 1 pixel.
(b) Watermark accuracy and clean accuracy of the leaked global model after a thief's removal:
    fine-tuning on its 450 labelled public images, and global magnitude pruning.
(c) Whether an extracted surrogate inherits the watermark: its trigger accuracy.

Usage: ``PYTHONPATH=. python benchmarks/model_theft_preview.py``
"""

from __future__ import annotations

import time

import torch

from fedsim.data import load_dataset
from fedsim.extraction import (
    Copycat,
    KnockoffNets,
    Victim,
    build_surrogate,
    extraction_curve,
    extraction_metrics,
    noise_images,
    permuted_pixels,
    public_split,
)
from fedsim.training import TrainSettings, evaluate, train_local
from fedsim.watermark import WaffleSettings, embed, removal_curve, trigger_set, watermark_accuracy

BUDGETS = [100, 250, 500, 1000, 2000]
SURROGATE = TrainSettings(epochs=30, batch_size=32, lr=0.05, momentum=0.9)


def main() -> None:
    t0 = time.perf_counter()
    ds = load_dataset("digits", seed=0, test_fraction=0.5)
    shape = ds.input_shape
    trigger = trigger_set(100, shape, 10, torch.Generator().manual_seed(5))
    model = build_surrogate("cnn", shape, 10, seed=1, width=8)
    g = torch.Generator().manual_seed(0)
    steps = []
    for _ in range(10):
        train_local(model, ds.x_train, ds.y_train, TrainSettings(1, 32, 0.05, 0.9), g)
        steps.append(embed(model, trigger.x, trigger.y, WaffleSettings(), g))
    a, e = public_split(len(ds.y_test), 450, torch.Generator().manual_seed(0))
    pool, pool_y, x_eval, y_eval = ds.x_test[a], ds.y_test[a], ds.x_test[e], ds.y_test[e]
    clean = evaluate(model, x_eval, y_eval).accuracy
    print(
        f"global model: clean accuracy {clean:.3f}, watermark accuracy "
        f"{watermark_accuracy(model, trigger):.2f}, WAFFLE steps per round {steps}"
    )

    def make() -> torch.nn.Module:
        return build_surrogate("cnn", shape, 10, seed=7, width=8)

    print("\n(a) Knockoff Nets, public split: fidelity / accuracy against queries")
    print("| answers | " + " | ".join(str(b) for b in BUDGETS) + " |")
    print("|---|" + "---|" * len(BUDGETS))
    for answers in ("probabilities", "rounded", "top1"):
        victim = Victim(model, answers=answers, decimals=1, budget=max(BUDGETS))
        points = extraction_curve(
            KnockoffNets(1, SURROGATE), victim, make, pool, BUDGETS, x_eval, y_eval,
            torch.Generator().manual_seed(0),
        )  # fmt: skip
        cells = " | ".join(f"{p.fidelity:.3f} / {p.accuracy:.3f}" for p in points)
        print(f"| {answers} | {cells} |")

    print("\n(b) removal from the leaked global model (thief: 450 labelled public images)")
    print("| method | strength | watermark acc | clean acc |")
    print("|---|---|---|---|")
    tunes = [TrainSettings(ep, 32, lr, 0.9) for lr in (0.01, 0.05, 0.2) for ep in (1, 5, 20)]
    fractions = [0.2, 0.4, 0.6, 0.7, 0.8, 0.9]
    for p in removal_curve(
        model, trigger, (pool, pool_y), (x_eval, y_eval), tunes, fractions,
        torch.Generator().manual_seed(3),
    ):  # fmt: skip
        print(
            f"| {p.method} | {p.strength} | {p.watermark_accuracy:.2f} | {p.clean_accuracy:.3f} |"
        )

    print("\n(c) does an extracted surrogate inherit the watermark? (2000 queries)")
    print("| attack | query data | answers | fidelity | accuracy | watermark acc |")
    print("|---|---|---|---|---|---|")
    sources = {
        "public split": pool,
        "pixel-permuted public": permuted_pixels(pool, torch.Generator().manual_seed(1)),
        "uniform noise": noise_images(2000, shape, "uniform", torch.Generator().manual_seed(2)),
    }
    cases = [
        (KnockoffNets, "public split", "probabilities"),
        (KnockoffNets, "public split", "top1"),
        (Copycat, "pixel-permuted public", "probabilities"),
        (KnockoffNets, "pixel-permuted public", "probabilities"),
        (KnockoffNets, "uniform noise", "probabilities"),
    ]
    for attack_cls, source, answers in cases:
        surrogate = make()
        attack = attack_cls(2000, SURROGATE)
        attack(
            Victim(model, answers=answers),
            surrogate,
            sources[source],
            torch.Generator().manual_seed(0),
        )
        m = extraction_metrics(surrogate, model, x_eval, y_eval)
        wm = watermark_accuracy(surrogate, trigger)
        print(
            f"| {attack.name} | {source} | {answers} | {m.fidelity:.3f} | {m.accuracy:.3f} "
            f"| {wm:.2f} |"
        )
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
