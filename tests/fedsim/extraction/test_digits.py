"""Extraction of a digits CNN: measured fidelity, the cost of label-only answers, ART's reference.

The victim is fedsim's ``cnn`` (width 8) trained for 10 epochs on half of digits (898 images;
test accuracy 0.958 measured); the attacker's public data is 450 of the other half's images,
the remaining 449 are the held-out set.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from fedsim.data import load_dataset
from fedsim.extraction import (
    Copycat,
    KnockoffNets,
    Victim,
    build_surrogate,
    extraction_curve,
    extraction_metrics,
    public_split,
    train_surrogate,
)
from fedsim.training import TrainSettings, train_local

SETTINGS = TrainSettings(epochs=20, batch_size=32, lr=0.05, momentum=0.9)


class Setup(NamedTuple):
    victim: nn.Module
    x_train: torch.Tensor
    pool: torch.Tensor
    x_eval: torch.Tensor
    y_eval: torch.Tensor


@pytest.fixture(scope="module")
def digits() -> Setup:
    ds = load_dataset("digits", seed=0, test_fraction=0.5)
    victim = build_surrogate("cnn", ds.input_shape, 10, seed=1, width=8)
    settings = TrainSettings(epochs=10, batch_size=32, lr=0.05, momentum=0.9)
    train_local(victim, ds.x_train, ds.y_train, settings, torch.Generator().manual_seed(0))
    a, e = public_split(len(ds.y_test), 450, torch.Generator().manual_seed(0))
    return Setup(victim, ds.x_train, ds.x_test[a], ds.x_test[e], ds.y_test[e])


def surrogate(seed: int) -> nn.Module:
    return build_surrogate("cnn", (1, 8, 8), 10, seed=seed, width=8)


def test_surrogate_on_the_victims_own_data_with_probabilities_is_faithful(digits: Setup) -> None:
    # the strongest attacker: the victim's training images, full probability vectors
    victim = Victim(digits.victim, answers="probabilities")
    model = surrogate(7)
    answers = victim.query(digits.x_train)
    train_surrogate(model, digits.x_train, answers, SETTINGS, torch.Generator().manual_seed(0))
    m = extraction_metrics(model, digits.victim, digits.x_eval, digits.y_eval)
    # measured: fidelity 0.973, accuracy 0.971 (victim 0.962)
    assert m.fidelity >= 0.85
    assert m.accuracy >= m.victim_accuracy - 0.1
    assert victim.queries == len(digits.x_train)


def test_top1_answers_learn_the_victim_and_do_not_beat_probabilities(digits: Setup) -> None:
    # Knockoff Nets from the public split, fidelity averaged over two seeds at 450 and 1000
    # queries (30 epochs each). Measured (probabilities 450, 1000; top-1 450, 1000), every seed
    # shifted by 1000·k: k = 0: 0.949 0.968 0.924 0.938; k = 1: 0.941 0.964 0.942 0.951;
    # k = 2: 0.959 0.971 0.948 0.959 (0.953 0.967 0.926 0.937 on another machine). Probabilities
    # lead by −0.001..0.03 at equal queries, about the s.d. of a two-seed mean on 449 images
    # (≈ 0.01): "top-1 needs more queries" is the usual outcome, not one a test can hold at
    # this size (it failed at k = 1 and 2). What holds with margin: every surrogate is faithful
    # (lowest 0.924), and top-1 answers are never clearly better (top-1 − probabilities ≤
    # +0.012 measured; 0.03 is about 3 s.d. of the difference above its mean, −0.013).
    settings = TrainSettings(epochs=30, batch_size=32, lr=0.05, momentum=0.9)

    def mean_fidelity(answers: str) -> dict[int, float]:
        sums = {450: 0.0, 1000: 0.0}
        for seed in (0, 1):
            points = extraction_curve(
                KnockoffNets(1000, settings),
                Victim(digits.victim, answers=answers),
                lambda seed=seed: surrogate(7 + seed),
                digits.pool,
                list(sums),
                digits.x_eval,
                digits.y_eval,
                torch.Generator().manual_seed(seed),
            )
            for p in points:
                sums[p.queries] += p.fidelity / 2
        return sums

    probabilities, top1 = mean_fidelity("probabilities"), mean_fidelity("top1")
    print(f"mean fidelity: probabilities {probabilities}, top1 {top1}")
    assert min(*probabilities.values(), *top1.values()) >= 0.88
    assert all(top1[q] <= probabilities[q] + 0.03 for q in (450, 1000))


def test_copycat_matches_arts_copycat_cnn(digits: Setup) -> None:
    """ART's CopycatCNN as the reference: the same top-1 labels, a fidelity within 0.05."""
    from art.attacks.extraction import CopycatCNN
    from art.estimators.classification import PyTorchClassifier

    def wrap(model: nn.Module) -> PyTorchClassifier:
        return PyTorchClassifier(
            model=model,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.SGD(model.parameters(), lr=SETTINGS.lr, momentum=0.9),
            input_shape=(1, 8, 8),
            nb_classes=10,
            clip_values=(0.0, 1.0),
            device_type="cpu",
        )

    pool = digits.pool
    art_attack = CopycatCNN(
        wrap(digits.victim),
        batch_size_fit=SETTINGS.batch_size,
        batch_size_query=256,
        nb_epochs=SETTINGS.epochs,
        nb_stolen=len(pool),
    )
    # the transfer set's labels: ART's one-hot top-1 equals fedsim's Copycat targets
    ours = Copycat(len(pool), SETTINGS)
    labels = ours.targets(Victim(digits.victim, answers="probabilities").query(pool))
    np.testing.assert_array_equal(art_attack._query_label(pool.numpy()), labels.numpy())

    # the surrogates trained on the whole pool (ART draws from NumPy's global RNG: seeded here)
    np.random.seed(0)
    torch.manual_seed(0)
    art_model = surrogate(7)
    art_attack.extract(pool.numpy(), thieved_classifier=wrap(art_model))
    art = extraction_metrics(art_model, digits.victim, digits.x_eval, digits.y_eval)

    model = surrogate(7)
    ours(Victim(digits.victim, answers="top1"), model, pool, torch.Generator().manual_seed(0))
    mine = extraction_metrics(model, digits.victim, digits.x_eval, digits.y_eval)
    print(f"copycat fidelity: fedsim {mine.fidelity:.3f}, ART {art.fidelity:.3f}")
    assert abs(mine.fidelity - art.fidelity) <= 0.05
