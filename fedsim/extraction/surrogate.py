r"""Training a surrogate on the victim's answers (the step Knockoff Nets and Copycat share).

The surrogate :math:`f_\theta` minimises the soft-label cross-entropy over the transfer set
:math:`\{(x_i, t_i)\}`,

.. math:: \mathcal{L}(\theta) = -\frac{1}{|B|} \sum_{i \in B} \sum_{c=1}^{C}
          t_{i,c} \log \mathrm{softmax}(f_\theta(x_i))_c,

with :math:`t_i = a_i / \sum_c a_{i,c}` the victim's answer :math:`a_i` normalised to sum to
one (a ``rounded`` answer need not; an all-zero row becomes the uniform :math:`1/C`). With
one-hot answers this is the ordinary cross-entropy on the victim's labels (Copycat); with
probabilities it is Knockoff Nets' soft-label loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.models import build_model
from fedsim.training import TrainResult, TrainSettings, minibatches, sgd_steps
from fedsim.validation import require_int, require_real

__all__ = ["build_surrogate", "check_train_settings", "soft_targets", "train_surrogate"]


def check_train_settings(owner: str, settings: TrainSettings) -> TrainSettings:
    """Return ``settings`` if every field is valid for ``owner``, else raise.

    Examples
    --------
    >>> check_train_settings("knockoff", TrainSettings(epochs=0, batch_size=8, lr=0.1))
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: knockoff needs an integer epochs >= 1, got 0
    """
    require_int(owner, "epochs", settings.epochs, minimum=1)
    require_int(owner, "batch_size", settings.batch_size, minimum=1)
    require_real(owner, "lr", settings.lr, low=0.0, low_open=True)
    require_real(owner, "momentum", settings.momentum, low=0.0, high=1.0, high_open=True)
    require_real(owner, "weight_decay", settings.weight_decay, low=0.0)
    return settings


def soft_targets(answers: torch.Tensor) -> torch.Tensor:
    r"""Normalise answers to distributions: :math:`t_i = a_i / \sum_c a_{i,c}` (zero rows: uniform).

    Examples
    --------
    >>> soft_targets(torch.tensor([[0.5, 0.3, 0.0], [0.0, 0.0, 0.0]])).tolist()
    [[0.625, 0.375, 0.0], [0.3333333432674408, 0.3333333432674408, 0.3333333432674408]]
    """
    if answers.dim() != 2 or bool((answers < 0).any()):
        raise InvalidSettingError(
            "soft_targets needs a non-negative (n, C) answer matrix, "
            f"got shape {tuple(answers.shape)}"
        )
    total = answers.sum(dim=1, keepdim=True)
    uniform = torch.full_like(answers, 1.0 / answers.shape[1])
    return torch.where(total > 0, answers / total.clamp_min(1e-12), uniform)


def train_surrogate(
    model: nn.Module,
    x: torch.Tensor,
    answers: torch.Tensor,
    settings: TrainSettings,
    generator: torch.Generator,
) -> TrainResult:
    r"""Fit ``model`` to the victim's answers by minibatch SGD on the soft-label loss, in place.

    The loss is the module docstring's :math:`\mathcal{L}`; the batches are
    :func:`fedsim.training.minibatches` of ``generator`` (seeded shuffles, nothing global),
    and the loop is fedsim's one SGD loop (:func:`fedsim.training.sgd_steps`, on one CPU
    thread). The reported loss is the mean of the steps' losses, summed in float64.

    Parameters
    ----------
    model : nn.Module
        The surrogate :math:`f_\theta`, trained in place.
    x : Tensor
        The transfer set's images ``(n, C, H, W)``.
    answers : Tensor
        The victim's answers ``(n, num_classes)`` (:class:`~fedsim.extraction.Victim`).
    settings : TrainSettings
        Epochs, batch size, learning rate, momentum, weight decay.
    generator : torch.Generator
        The source of the shuffles.

    Returns
    -------
    TrainResult
        Mean loss, steps and examples.

    Examples
    --------
    >>> model = nn.Linear(2, 2)
    >>> x, a = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.eye(2)
    >>> settings = TrainSettings(epochs=50, batch_size=2, lr=0.5)
    >>> train_surrogate(model, x, a, settings, torch.Generator().manual_seed(0)).steps
    50
    >>> model(x).argmax(dim=1).tolist()
    [0, 1]

    References
    ----------
    Orekondy, Schiele, Fritz. Knockoff Nets: Stealing Functionality of Black-Box Models.
    CVPR 2019. Correia-Silva, Berriel, Badue, de Souza, Oliveira-Santos. Copycat CNN: Stealing
    Knowledge by Persuading Confession with Random Non-Labeled Data. IJCNN 2018.
    """
    check_train_settings("train_surrogate", settings)
    if len(x) != len(answers) or len(x) == 0:
        raise InvalidSettingError(
            f"train_surrogate needs as many answers as images (at least one), "
            f"got {len(x)} images and {len(answers)} answers"
        )
    device = next(model.parameters()).device
    targets = soft_targets(answers).to(device)
    x = x.to(device)
    losses = sgd_steps(
        model,
        settings.optimizer(model),
        minibatches(len(x), settings, generator),
        lambda batch: F.cross_entropy(model(x[batch]), targets[batch]),
    )
    total = sum(float(loss) for loss in losses)
    return TrainResult(loss=total / max(len(losses), 1), steps=len(losses), num_examples=len(x))


def build_surrogate(
    name: str, input_shape: tuple[int, int, int], num_classes: int, seed: int, **params: Any
) -> nn.Module:
    """A fresh registry model (the attacker's choice of architecture) with seeded weights.

    The initial weights come from ``torch.manual_seed(seed)`` inside a forked RNG state (as
    :meth:`fedsim.federation.Federation.build_model` does), so global RNG state is untouched.

    Examples
    --------
    >>> a = build_surrogate("mlp", (1, 2, 2), 3, seed=0, hidden=4)
    >>> b = build_surrogate("mlp", (1, 2, 2), 3, seed=0, hidden=4)
    >>> all(p.equal(q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    require_int("build_surrogate", "seed", seed, minimum=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(name, input_shape, num_classes, **params)
