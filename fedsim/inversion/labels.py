"""Analytic label recovery from the last layer's weight gradient (iDLG)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedsim.errors import InvalidSettingError

__all__ = ["last_layer_weight_grad", "recover_label", "recover_labels"]


def recover_label(last_weight_grad: torch.Tensor) -> int:
    r"""Recover the label of a single sample from the gradient of the last linear layer.

    With softmax cross-entropy on logits :math:`z = W h + b`, the gradient of the loss of one
    sample with label :math:`y` with respect to row :math:`c` of :math:`W` is

    .. math:: \nabla_{W_c} \ell = (p_c - \mathbb 1[c = y])\, h,

    where :math:`p = \mathrm{softmax}(z)` and :math:`h` the features entering the layer. Its row
    sum is :math:`(p_c - \mathbb 1[c = y]) \sum_j h_j`. When the features are non-negative
    (after ReLU or sigmoid) the sum :math:`\sum_j h_j \ge 0`, so the row of the true class is
    the only one with a negative sum, and the label is the argmin of the row sums. (If every
    feature is zero, every row is zero and the answer is class 0.)

    Parameters
    ----------
    last_weight_grad : torch.Tensor
        Gradient of the last linear layer's weight, shape ``(num_classes, h)``.

    Returns
    -------
    int
        The recovered label.

    Raises
    ------
    InvalidSettingError
        ``last_weight_grad`` is not a matrix.

    Examples
    --------
    >>> import torch
    >>> h = torch.tensor([0.5, 1.0, 0.2])
    >>> p = torch.tensor([0.2, 0.5, 0.3])
    >>> grad = torch.outer(p - torch.tensor([0.0, 0.0, 1.0]), h)   # label 2
    >>> recover_label(grad)
    2

    References
    ----------
    Zhao, Mopuri, Bilen. iDLG: Improved Deep Leakage from Gradients. arXiv:2001.02610, 2020.
    """
    if last_weight_grad.ndim != 2:
        raise InvalidSettingError(
            f"recover_label needs the (num_classes, h) weight gradient, got shape "
            f"{tuple(last_weight_grad.shape)}"
        )
    return int(last_weight_grad.sum(dim=1).argmin())


def recover_labels(last_weight_grad: torch.Tensor, batch_size: int) -> torch.Tensor:
    r"""Guess the labels of a batch with distinct labels: the ``batch_size`` lowest row sums.

    For a batch of :math:`B` samples the row sum of class :math:`c` is
    :math:`\frac1B \sum_b (p_{bc} - \mathbb 1[c = y_b]) \sum_j h_{bj}`: positive for classes not
    in the batch, usually negative for those in it. Taking the :math:`B` most negative rows is
    exact for :math:`B = 1` (:func:`recover_label`) and a heuristic beyond, valid only when the
    labels are distinct (the assumption of Yin et al., CVPR 2021) and reliable only while the
    model's predictions are far from confident (a confident wrong :math:`p_{bc}` can outweigh
    another sample's :math:`-1`). Pass known labels to the
    attack, or use DLG (which learns soft labels), for batches with repeated labels.

    Parameters
    ----------
    last_weight_grad : torch.Tensor
        Gradient of the last linear layer's weight, shape ``(num_classes, h)``.
    batch_size : int
        Number of samples, at most ``num_classes``.

    Returns
    -------
    torch.Tensor
        ``batch_size`` distinct labels, int64, most negative row sum first.

    Examples
    --------
    >>> import torch
    >>> grad = torch.tensor([[0.3, 0.1], [-0.4, -0.2], [0.2, 0.0], [-0.5, -0.1]])
    >>> recover_labels(grad, 2).tolist()
    [1, 3]
    """
    classes = last_weight_grad.shape[0] if last_weight_grad.ndim == 2 else 0
    if last_weight_grad.ndim != 2 or not 1 <= batch_size <= classes:
        raise InvalidSettingError(
            f"recover_labels needs a (num_classes, h) gradient and 1 ≤ batch_size ≤ num_classes, "
            f"got shape {tuple(last_weight_grad.shape)} and batch_size={batch_size}; pass the "
            f"labels or use dlg for batches with repeated labels"
        )
    sums = last_weight_grad.sum(dim=1)
    return torch.argsort(sums, stable=True)[:batch_size].to(torch.int64)


def last_layer_weight_grad(
    model: nn.Module, grads: Sequence[torch.Tensor], num_classes: int
) -> torch.Tensor:
    """Return the gradient of the last ``(num_classes, h)`` weight among ``model.parameters()``.

    Parameters
    ----------
    model : torch.nn.Module
        The attacked model; its last linear layer must map to ``num_classes`` logits.
    grads : sequence of torch.Tensor
        One gradient per parameter, in ``model.parameters()`` order.
    num_classes : int
        Number of logits.

    Raises
    ------
    InvalidSettingError
        ``grads`` does not have one entry per parameter, or no parameter has shape
        ``(num_classes, h)``.
    """
    params, grads = list(model.parameters()), list(grads)
    if len(grads) != len(params):
        raise InvalidSettingError(
            f"label recovery needs one gradient per model parameter ({len(params)}), "
            f"got {len(grads)}"
        )
    for p, g in zip(reversed(params), reversed(grads), strict=True):
        if p.ndim == 2 and p.shape[0] == num_classes:
            return g
    raise InvalidSettingError(
        f"label recovery needs a final linear layer with {num_classes} outputs; the model has "
        f"no ({num_classes}, h) weight. Pass the labels instead"
    )
