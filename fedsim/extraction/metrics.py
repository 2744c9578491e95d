r"""How well a stolen model copies its victim: fidelity (agreement) and accuracy.

For a held-out set :math:`\{(x_i, y_i)\}_{i=1}^n`, a surrogate :math:`f_s` and the victim
:math:`f_v`, with :math:`\hat y(x) = \arg\max_c f(x)_c`,

.. math:: \mathrm{fidelity} = \frac{1}{n} \sum_{i=1}^n [\hat y_s(x_i) = \hat y_v(x_i)],
   \qquad
   \mathrm{accuracy} = \frac{1}{n} \sum_{i=1}^n [\hat y_s(x_i) = y_i].

Fidelity is Jagielski et al.'s (USENIX Security 2020) top-1 agreement; Knockoff Nets and
Copycat report accuracy. The figures ``extraction_fidelity`` and ``extraction_accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.training import single_thread

__all__ = ["ExtractionMetrics", "accuracy", "extraction_metrics", "fidelity", "predict"]


def _labels(pred: torch.Tensor) -> torch.Tensor:
    return pred.argmax(dim=1) if pred.dim() == 2 else pred


def _agreement(name: str, a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = _labels(a), _labels(b)
    if a.shape != b.shape or a.dim() != 1 or len(a) == 0:
        raise InvalidSettingError(
            f"{name} needs two non-empty label vectors (n,) or score matrices (n, C) of the "
            f"same length, got shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return float((a == b).float().mean())


def fidelity(surrogate_pred: torch.Tensor, victim_pred: torch.Tensor) -> float:
    r"""Top-1 agreement :math:`\frac{1}{n}\sum_i [\hat y_s(x_i) = \hat y_v(x_i)]`.

    Each argument is a label vector ``(n,)`` or a score matrix ``(n, C)`` (logits,
    probabilities or one-hot answers; its row-wise argmax is taken).

    Examples
    --------
    >>> fidelity(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, 2]))
    0.75
    >>> fidelity(torch.tensor([[0.9, 0.1], [0.2, 0.8]]), torch.tensor([0, 0]))
    0.5

    References
    ----------
    Jagielski, Carlini, Berthelot, Kurakin, Papernot. High Accuracy and High Fidelity
    Extraction of Neural Networks. USENIX Security 2020.
    """
    return _agreement("fidelity", surrogate_pred, victim_pred)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    r"""Top-1 accuracy :math:`\frac{1}{n}\sum_i [\hat y(x_i) = y_i]` of labels or scores.

    Examples
    --------
    >>> accuracy(torch.tensor([[0.1, 0.9], [0.6, 0.4], [0.3, 0.7]]), torch.tensor([1, 1, 1]))
    0.6666666865348816
    """
    return _agreement("accuracy", pred, labels)


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """Top-1 labels of ``model`` on ``x`` (eval mode, no gradients, one CPU thread).

    The evaluator's own forward pass, outside any victim API: it costs no query budget.

    Examples
    --------
    >>> predict(nn.Linear(2, 2), torch.zeros(3, 2)).shape
    torch.Size([3])
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with single_thread(device), torch.no_grad():
        starts = range(0, len(x), batch_size) if len(x) else [0]
        out = torch.cat([model(x[s : s + batch_size].to(device)).argmax(1).cpu() for s in starts])
    model.train(was_training)
    return out


@dataclass(frozen=True)
class ExtractionMetrics:
    """``fidelity`` and ``accuracy`` of a surrogate, and the victim's own ``victim_accuracy``."""

    fidelity: float
    accuracy: float
    victim_accuracy: float


def extraction_metrics(
    surrogate: nn.Module, victim: nn.Module, x: torch.Tensor, y: torch.Tensor
) -> ExtractionMetrics:
    """Fidelity and accuracy of ``surrogate`` against ``victim`` on held-out ``(x, y)``.

    Examples
    --------
    >>> model, y = nn.Linear(2, 2), torch.zeros(4, dtype=torch.long)
    >>> extraction_metrics(model, model, torch.randn(4, 2), y).fidelity
    1.0
    """
    s, v = predict(surrogate, x), predict(victim, x)
    return ExtractionMetrics(fidelity(s, v), accuracy(s, y), accuracy(v, y))
