r"""WAFFLE's embedding: the server retrains the aggregated model on its trigger set.

After each round's aggregation the server runs SGD on the cross-entropy of the trigger set,

.. math:: \theta \leftarrow \theta - \eta \nabla_\theta \frac{1}{|B|}\sum_{i \in B}
          \ell(f_\theta(x_i), y_i), \qquad (x_i, y_i) \in \text{trigger set},

epoch by epoch (:func:`fedsim.training.sgd_steps`, fedsim's one SGD loop), until the trigger
accuracy reaches the threshold (checked before each epoch) or the step budget is spent.
Clients never see the triggers; the watermark persists in the model every client receives
(and any copy that leaks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.training import TrainSettings, minibatches, sgd_steps
from fedsim.validation import require_int, require_real
from fedsim.watermark.trigger import TriggerSet, watermark_accuracy

__all__ = ["WaffleSettings", "embed"]


@dataclass(frozen=True)
class WaffleSettings:
    """The server's retraining procedure.

    Attributes
    ----------
    threshold : float
        Stop once trigger accuracy is at least this, in (0, 1] (WAFFLE uses 0.98).
    max_steps : int
        At most this many SGD steps per call (per round), at least 1.
    batch_size, lr, momentum :
        The SGD of the retraining (``batch_size`` >= 1, ``lr`` > 0, 0 <= ``momentum`` < 1).

    Examples
    --------
    >>> WaffleSettings(max_steps=0)
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: waffle needs an integer max_steps >= 1, got 0
    """

    threshold: float = 0.98
    max_steps: int = 100
    batch_size: int = 50
    lr: float = 0.01
    momentum: float = 0.9

    def __post_init__(self) -> None:
        require_real("waffle", "threshold", self.threshold, low=0.0, high=1.0, low_open=True)
        require_int("waffle", "max_steps", self.max_steps, minimum=1)
        require_int("waffle", "batch_size", self.batch_size, minimum=1)
        require_real("waffle", "lr", self.lr, low=0.0, low_open=True)
        require_real("waffle", "momentum", self.momentum, low=0.0, high=1.0, high_open=True)


def embed(
    model: nn.Module,
    trigger_x: torch.Tensor,
    trigger_y: torch.Tensor,
    settings: WaffleSettings,
    generator: torch.Generator,
) -> int:
    r"""Retrain ``model`` in place on the trigger set until it is watermarked; return the steps.

    Before each epoch (a seeded shuffle of the triggers into batches) the trigger accuracy is
    measured; the loop stops when it is at least ``settings.threshold`` or after
    ``settings.max_steps`` SGD steps, whichever comes first (0 steps when the model already
    carries the watermark). A fresh SGD optimizer each call (the server keeps no momentum
    across rounds).

    Parameters
    ----------
    model : nn.Module
        The aggregated global model, retrained in place.
    trigger_x, trigger_y : Tensor
        The trigger set (:func:`~fedsim.watermark.trigger.trigger_set`).
    settings : WaffleSettings
        Threshold, step budget and SGD.
    generator : torch.Generator
        The source of the shuffles.

    Returns
    -------
    int
        SGD steps taken.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.eye(4), torch.tensor([0, 1, 2, 0])
    >>> model = nn.Linear(4, 3)
    >>> steps = embed(model, x, y, WaffleSettings(threshold=1.0, max_steps=500, lr=0.5), g)
    >>> 0 < steps <= 500, model(x).argmax(dim=1).tolist()
    (True, [0, 1, 2, 0])

    References
    ----------
    Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021.
    """
    if len(trigger_x) != len(trigger_y) or len(trigger_x) == 0:
        raise InvalidSettingError(
            f"waffle needs a non-empty trigger set with one label per image, got "
            f"{len(trigger_x)} images and {len(trigger_y)} labels"
        )
    trigger = TriggerSet(trigger_x, trigger_y)
    device = next(model.parameters()).device
    x, y = trigger_x.to(device), trigger_y.to(device)
    epoch = TrainSettings(
        epochs=1, batch_size=settings.batch_size, lr=settings.lr, momentum=settings.momentum
    )
    optimizer = epoch.optimizer(model)  # one per call: momentum carries across epochs only

    def batch_loss(batch: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x[batch]), y[batch])

    steps = 0
    while steps < settings.max_steps and watermark_accuracy(model, trigger) < settings.threshold:
        batches = minibatches(len(y), epoch, generator)
        left = settings.max_steps - steps
        steps += len(sgd_steps(model, optimizer, batches, batch_loss, max_steps=left))
    return steps
