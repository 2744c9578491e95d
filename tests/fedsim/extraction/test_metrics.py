"""Fidelity and accuracy from hand-made predictions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.extraction import accuracy, extraction_metrics, fidelity, predict


def test_fidelity_counts_top1_agreement_of_labels_and_scores() -> None:
    surrogate = torch.tensor([3, 1, 4, 1, 5])
    victim = torch.tensor([3, 1, 4, 0, 0])
    assert fidelity(surrogate, victim) == pytest.approx(3 / 5)
    scores = torch.nn.functional.one_hot(surrogate, 6).float() * 0.7 + 0.05
    assert fidelity(scores, victim) == pytest.approx(3 / 5)
    assert fidelity(victim, victim) == 1.0


def test_accuracy_against_true_labels() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0], [1.0, 3.0, 2.0], [0.0, 1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 2, 2, 0])) == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (torch.tensor([0, 1]), torch.tensor([0, 1, 2])),
        (torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)),
    ],
)
def test_mismatched_or_empty_predictions_are_refused(a: torch.Tensor, b: torch.Tensor) -> None:
    with pytest.raises(InvalidSettingError, match="same length"):
        fidelity(a, b)


def test_extraction_metrics_of_models_use_their_argmax() -> None:
    victim = nn.Linear(2, 3, bias=False)
    surrogate = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        victim.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        surrogate.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.0, 0.5]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -2.0]])  # victim: 0, 1, 2; surrogate: 0, 2, 1
    y = torch.tensor([0, 2, 2])
    assert predict(victim, x).tolist() == [0, 1, 2]
    m = extraction_metrics(surrogate, victim, x, y)
    assert (m.fidelity, m.accuracy, m.victim_accuracy) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
