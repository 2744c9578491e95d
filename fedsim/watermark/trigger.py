r"""WAFFLE's trigger set: the server's secret images with labels only it knows.

WAFFLEPattern (Tekgul et al., SRDS 2021): every class :math:`c` gets a random pattern
:math:`p_c \in \{l, h\}^{C \times H \times W}` (each pixel :math:`l` or :math:`h`, the ends of
the data range, with probability ½), and a trigger of label :math:`c` is
:math:`x = \mathrm{clip}(p_c + \sigma\varepsilon, l, h)` with :math:`\varepsilon \sim N(0, I)`.
The labels are a seeded, balanced assignment (``randperm(size) mod C``): unrelated to any
real content, so a model agrees with them far above chance only if it was trained on them.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.training import evaluate
from fedsim.validation import require_int, require_real

__all__ = ["TriggerSet", "trigger_set", "watermark_accuracy"]


class TriggerSet(NamedTuple):
    """The trigger images ``x`` ``(n, C, H, W)`` and their secret labels ``y`` ``(n,)``."""

    x: torch.Tensor
    y: torch.Tensor


def trigger_set(
    size: int,
    input_shape: tuple[int, int, int],
    num_classes: int,
    generator: torch.Generator,
    noise: float = 0.1,
    data_range: tuple[float, float] = (0.0, 1.0),
) -> TriggerSet:
    r"""Draw WAFFLEPattern triggers: class patterns plus Gaussian noise, balanced labels.

    Parameters
    ----------
    size : int
        Number of triggers (the scenario's ``watermark.trigger_set``), at least 1.
    input_shape : tuple of int
        ``(C, H, W)`` of one image.
    num_classes : int
        Number of classes :math:`\ge 2`.
    generator : torch.Generator
        The source of the patterns, labels and noise (seeded by the server).
    noise : float
        :math:`\sigma \ge 0`, relative to the data range :math:`h - l`.
    data_range : tuple of float
        :math:`(l, h)`.

    Returns
    -------
    TriggerSet
        Images in :math:`[l, h]` and int64 labels.

    Examples
    --------
    >>> t = trigger_set(4, (1, 2, 2), 2, torch.Generator().manual_seed(0))
    >>> tuple(t.x.shape), sorted(t.y.tolist())
    ((4, 1, 2, 2), [0, 0, 1, 1])

    References
    ----------
    Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021.
    """
    require_int("waffle", "trigger_set", size, minimum=1)
    require_int("waffle", "num_classes", num_classes, minimum=2)
    require_real("waffle", "noise", noise, low=0.0)
    low, high = data_range
    if not low < high:
        raise InvalidSettingError(f"waffle needs data_range low < high, got {data_range}")
    patterns = torch.rand((num_classes, *input_shape), generator=generator) < 0.5
    patterns = low + (high - low) * patterns.float()
    y = torch.randperm(size, generator=generator) % num_classes
    eps = torch.randn((size, *input_shape), generator=generator)
    x = (patterns[y] + noise * (high - low) * eps).clamp(low, high)
    return TriggerSet(x, y)


def watermark_accuracy(model: nn.Module, trigger: TriggerSet) -> float:
    r"""Trigger accuracy :math:`\frac{1}{n}\sum_i [\arg\max_c f(x_i)_c = y_i]` on the trigger set.

    WAFFLE's verification: the owner claims a model whose trigger accuracy exceeds a threshold
    (far above the :math:`1/C` of a model never trained on the triggers). The figure
    ``watermark_accuracy``.

    Examples
    --------
    >>> t = TriggerSet(torch.zeros(2, 3), torch.tensor([0, 1]))
    >>> model = nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = model.bias.copy_(torch.tensor([1.0, 0.0]))
    ...     _ = model.weight.zero_()
    >>> watermark_accuracy(model, t)
    0.5

    References
    ----------
    Tekgul, Xia, Marchal, Asokan. WAFFLE: Watermarking in Federated Learning. SRDS 2021.
    """
    was_training = model.training
    result = evaluate(model, trigger.x, trigger.y).accuracy
    model.train(was_training)
    return result
