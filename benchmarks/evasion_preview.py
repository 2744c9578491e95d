"""Preview of issue #20: a digits model trained normally vs. with PGD-AT, attacked in pixel space.

Trains the registry model centrally on digits (pixels already in [0, 1]), once with plain
cross-entropy and once with PGD adversarial training (Madry et al.), then reports per ε clean,
FGSM, PGD and AutoAttack accuracy, the per-sample worst case, clean and adversarial ECE, and the
evaluation cost in seconds per 500 samples.

    python benchmarks/evasion_preview.py                       # cnn, 20 epochs, Square 1000
    python benchmarks/evasion_preview.py --square-queries 5000 # AutoAttack's full budget
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from fedsim.data import load_dataset
from fedsim.evasion import FGSM, PGD, AdversarialTraining, AutoAttack, robust_accuracy
from fedsim.models import build_model

EPSILONS = (0.05, 0.1, 0.2)


def train(data, args, adversarial: AdversarialTraining | None) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(args.seed)
    model = build_model(args.model, data.input_shape, data.num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    g = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for idx in torch.randperm(len(data.y_train), generator=g).split(args.batch_size):
            x, y = data.x_train[idx], data.y_train[idx]
            opt.zero_grad()
            if adversarial is None:
                loss = F.cross_entropy(model(x), y)
            else:
                loss = adversarial(model, x, y, g)
            loss.backward()
            opt.step()
    return model.eval(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--train-eps", type=float, default=0.1)
    parser.add_argument("--train-steps", type=int, default=7)
    parser.add_argument("--pgd-steps", type=int, default=20)
    parser.add_argument("--square-queries", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("digits", seed=args.seed, test_fraction=0.25)
    x, y = data.x_test[: args.samples], data.y_test[: args.samples]
    n = len(y)
    at = AdversarialTraining(
        "pgd",
        eps=args.train_eps,
        steps=args.train_steps,
        alpha=2.5 * args.train_eps / args.train_steps,
    )
    print(
        f"digits, model {args.model}, {args.epochs} epochs (SGD lr {args.lr}, momentum 0.9, "
        f"batch {args.batch_size}); PGD-AT: {at!r}"
    )
    print(
        f"eval on {n} test samples; PGD: linf, {args.pgd_steps} steps, alpha 2.5 eps/steps, "
        f"1 random start; AutoAttack (ART): APGD-CE, APGD-DLR (100 it.), "
        f"Square ({args.square_queries} queries)\n"
    )
    header = (
        f"{'training':<9} {'eps':>5} {'clean':>6} {'fgsm':>6} {'pgd':>6} {'autoatt':>7} "
        f"{'worst':>6} {'ece':>6} {'ece_adv':>7} {'pgd s/500':>9} {'aa s/500':>8}"
    )
    for name, adversarial in (("normal", None), ("pgd-at", at)):
        model, seconds = train(data, args, adversarial)
        print(f"[{name}] trained in {seconds:.1f} s")
        print(header)
        for eps in EPSILONS:
            attacks = [
                FGSM(eps),
                PGD(eps, steps=args.pgd_steps),
                AutoAttack(eps, square_queries=args.square_queries),
            ]
            r = robust_accuracy(model, x, y, attacks, torch.Generator().manual_seed(args.seed))
            acc = list(r.per_attack.values())
            cost = [r.seconds[a.label] * 500 / n for a in attacks]
            print(
                f"{name:<9} {eps:>5.2f} {r.clean:>6.3f} {acc[0]:>6.3f} {acc[1]:>6.3f} "
                f"{acc[2]:>7.3f} {r.worst_case:>6.3f} {r.ece:>6.3f} {r.ece_adversarial:>7.3f} "
                f"{cost[1]:>9.2f} {cost[2]:>8.1f}"
            )
        print()


if __name__ == "__main__":
    main()
