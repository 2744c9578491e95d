"""From what the server sees (a client's update) to what an inversion attack needs (a gradient)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.inversion.base import differentiable

__all__ = ["model_gradients", "unflatten_like", "update_as_gradient"]


def update_as_gradient(
    delta_params: Sequence[torch.Tensor], lr: float, local_steps: int
) -> list[torch.Tensor]:
    r"""Treat a FedAvg update as the gradient of the client's averaged loss.

    .. math:: \hat g = -\frac{\Delta}{\eta\, T}

    where :math:`\Delta = w_T - w_0` is the client's update, :math:`\eta` its SGD learning
    rate and :math:`T` the number of local steps. Plain SGD gives
    :math:`\Delta = -\eta \sum_{t<T} g_t(w_t)`, so :math:`\hat g` is the mean of the minibatch
    gradients at the weights the client visited. It equals the true gradient at :math:`w_0`
    exactly for :math:`T = 1` (the attack then faces the minibatch of that one step); for
    :math:`T > 1` it is the usual approximation of the gradient of the loss averaged over every
    sample seen, good while :math:`\eta T` is small.
    Momentum, weight decay or DP noise make it worse.

    Parameters
    ----------
    delta_params : sequence of torch.Tensor
        The update, one tensor per parameter (see :func:`unflatten_like`).
    lr : float
        The client's learning rate :math:`\eta > 0`.
    local_steps : int
        Number of local SGD steps :math:`T \ge 1`.

    Returns
    -------
    list of torch.Tensor
        :math:`\hat g`, one tensor per parameter.

    Raises
    ------
    InvalidSettingError
        ``lr`` or ``local_steps`` out of range.

    Examples
    --------
    >>> import torch
    >>> update_as_gradient([torch.tensor([-0.2, 0.4])], lr=0.1, local_steps=2)
    [tensor([ 1., -2.])]
    """
    if (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float))
        or not (math.isfinite(lr) and lr > 0)
    ):
        raise InvalidSettingError(f"update_as_gradient needs a finite lr > 0, got {lr!r}")
    if isinstance(local_steps, bool) or not isinstance(local_steps, int) or local_steps < 1:
        raise InvalidSettingError(
            f"update_as_gradient needs an integer local_steps ≥ 1, got {local_steps!r}"
        )
    scale = lr * local_steps
    return [-d.detach() / scale for d in delta_params]


def unflatten_like(vector: torch.Tensor, model: nn.Module) -> list[torch.Tensor]:
    """Split a flat update of length ``d`` into tensors shaped like ``model.parameters()``.

    The vector must list the parameters in ``model.parameters()`` order, each flattened
    row-major (``torch.cat([p.flatten() for p in model.parameters()])``). The pieces keep the
    vector's dtype and device.

    Raises
    ------
    InvalidSettingError
        The length differs from the model's parameter count.

    Examples
    --------
    >>> import torch
    >>> pieces = unflatten_like(torch.arange(3.0), torch.nn.Linear(2, 1))
    >>> [p.tolist() for p in pieces]
    [[[0.0, 1.0]], [2.0]]
    """
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    if vector.ndim != 1 or vector.numel() != total:
        raise InvalidSettingError(
            f"update has shape {tuple(vector.shape)}, the model {total} parameters; "
            f"pass a flat vector in model.parameters() order"
        )
    pieces = torch.split(vector, [p.numel() for p in params])
    return [piece.reshape(p.shape) for piece, p in zip(pieces, params, strict=True)]


def model_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    r"""Compute the true gradient of the mean cross-entropy of a batch.

    That is :math:`\nabla_W \frac1B \sum_b \ell(f(x_b), y_b)` with :math:`W` the parameters.

    Computed on the device and in the dtype of the model's parameters, for every parameter
    (whatever its ``requires_grad`` flag); ``model`` is left unchanged (no ``.grad`` is written,
    the flags are restored).

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    x : torch.Tensor
        Inputs, shape ``(B, C, H, W)``.
    y : torch.Tensor
        Integer labels, shape ``(B,)``.

    Returns
    -------
    list of torch.Tensor
        One detached gradient per parameter, in ``model.parameters()`` order (zeros for
        parameters that do not influence the loss).

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(2, 2)
    >>> grads = model_gradients(model, torch.zeros(1, 2), torch.tensor([0]))
    >>> [tuple(g.shape) for g in grads]
    [(2, 2), (2,)]
    """
    params = list(model.parameters())
    device = params[0].device if params else x.device
    with differentiable(params):
        x = x.to(device=device, dtype=params[0].dtype if params else x.dtype)
        loss = F.cross_entropy(model(x), y.to(device=device, dtype=torch.int64))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [
        torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads, strict=True)
    ]
