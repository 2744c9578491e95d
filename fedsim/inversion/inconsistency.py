r"""Model inconsistency (Pasquini et al., "Eluding Secure Aggregation", ACM CCS 2022).

Secure aggregation reveals only :math:`\sum_{i} n_i \Delta_i / \sum_i n_i`. A server that sends
every client but a target :math:`t` a model whose updates vanish gets
:math:`n_t \Delta_t / \sum_i n_i`: the target's update, scaled by a factor it knows (the
example counts travel in the clear), so every attack on single updates runs on the sum.

:func:`kill` makes such a model from any model whose head (the last linear layer) is fed
through a ReLU by a layer with a weight and a bias (fedsim's ``mlp`` and ``cnn``): that
layer's weights become 0 and its bias −1, so the ReLU's input is −1 for every input, its
output and derivative 0. Every parameter before and in the dead layer then gets a zero
gradient, and so does the head's weight (:math:`\nabla W = \delta h^\top = 0`). Only the
head's bias still moves (:math:`\nabla b = p - y`, with :math:`p` the softmax of the bias
alone): :func:`moving_parameters` finds what moves, numerically, and the attacks leave it
out of their matching (``ignore``). Zero gradients stay zero over any number of local steps
of SGD with momentum (no weight decay), so the split is exact whatever the clients' epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError

__all__ = ["kill", "moving_parameters"]


def kill(model: nn.Module) -> None:
    """Make ``model``'s gradients vanish but for its head's bias, in place.

    The last layer with both a weight and a bias before the head (the last ``nn.Linear``)
    gets weight 0 and bias −1. Whether that kills the model is for
    :func:`moving_parameters` to check (a sigmoid or a skip connection lets gradients through).

    Raises
    ------
    InvalidSettingError
        The model's last parameterised layer is not a linear head with a bias, or nothing
        with a weight and a bias comes before it.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layers = [nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)]
    >>> model = nn.Sequential(*layers)
    >>> kill(model)
    >>> moving_parameters(model, torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1]))
    [5]
    """
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    head = layers[-1] if layers else None
    if not (isinstance(head, nn.Linear) and head.bias is not None):
        raise InvalidSettingError(
            "model inconsistency needs a model whose last layer is a linear head with a bias, "
            f"got {type(head).__name__ if head is not None else 'no parameters'}"
        )
    feeders = [
        m
        for m in layers[:-1]
        if isinstance(getattr(m, "weight", None), torch.Tensor)
        and isinstance(getattr(m, "bias", None), torch.Tensor)
    ]
    if not feeders:
        raise InvalidSettingError(
            "model inconsistency needs a layer with a weight and a bias before the head"
        )
    with torch.no_grad():
        feeders[-1].weight.zero_()
        feeders[-1].bias.fill_(-1.0)


def moving_parameters(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[int]:
    """Indices of the parameters whose cross-entropy gradient on ``(x, y)`` is not zero.

    Indices follow ``model.parameters()`` order.
    """
    params = list(model.parameters())
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [i for i, g in enumerate(grads) if g is not None and bool(g.abs().max() > 0)]
