r"""How many examples of each class are behind a FedAvg update: read from the last layer's bias.

With softmax cross-entropy averaged over a batch, the gradient of the last layer's bias
:math:`b` is :math:`\frac{1}{|B|}\sum_{i \in B} (p_i - e_{y_i})`, with :math:`p_i` example
:math:`i`'s softmax and :math:`e_{y}` the one-hot label. A client that runs plain SGD (no
momentum or weight decay) at learning rate :math:`\eta` for :math:`E` epochs over its
:math:`N` examples in batches of :math:`B` changes the bias by

.. math::

    \Delta b = -\frac{\eta}{B} \sum_{t} \sum_{i \in B_t} (p_i^{(t)} - e_{y_i})
    \approx -\frac{\eta E}{B} \Big(N \bar p - n\Big),

so the label counts are :math:`n \approx N \bar p + \frac{B}{\eta E} \Delta b`, with
:math:`\bar p` the clients' softmax averaged over its examples *and its local steps*. The
attacker does not have the examples; it estimates :math:`\bar p` on inputs of its own
(auxiliary data, or noise) — with the global model only (``start``: the reading of the update
as one gradient, the model frozen at :math:`w`) or as the mean of the global model's and the
client's updated model's :math:`w + \Delta` (``mean``: Wainakh et al.'s estimate across the
local steps, which move :math:`\bar p` towards the client's label mix). The estimate is
rounded to non-negative integers summing to :math:`N` (largest remainders).

References
----------
Wainakh, Ventola, Müßig, Keim, Cordero, Zimmer, Grube, Kersting, Mühlhäuser. User-Level Label
Leakage from Gradients in Federated Learning. PoPETs 2022.
"""

from __future__ import annotations

import torch

from fedsim.errors import InvalidSettingError

__all__ = ["integer_counts", "label_counts"]


def label_counts(
    bias_delta: torch.Tensor,
    mean_probs: torch.Tensor,
    *,
    num_examples: int,
    batch_size: int,
    lr: float,
    epochs: int,
) -> torch.Tensor:
    r"""Estimated label counts :math:`N \bar p + \frac{B}{\eta E}\Delta b`, as integers.

    Parameters
    ----------
    bias_delta : torch.Tensor
        :math:`\Delta b`, the ``(K,)`` change of the last layer's bias in the update.
    mean_probs : torch.Tensor
        :math:`\bar p`, the ``(K,)`` estimated mean softmax of the client's examples.
    num_examples, batch_size, epochs : int
        :math:`N` (the reply's example count), :math:`B`, :math:`E`.
    lr : float
        :math:`\eta`.

    Returns
    -------
    torch.Tensor
        ``(K,)`` int64 non-negative counts summing to :math:`N`.

    Raises
    ------
    InvalidSettingError
        Shapes that differ, or a non-positive :math:`N, B, \eta, E`.

    Examples
    --------
    Two classes, 10 examples, one full batch, one step: 7 of class 0 and 3 of class 1 with a
    uniform softmax move the bias by :math:`-\eta (0.5 - 0.7, 0.5 - 0.3)`.

    >>> delta = -0.1 * torch.tensor([0.5 - 0.7, 0.5 - 0.3])
    >>> label_counts(delta, torch.tensor([0.5, 0.5]), num_examples=10, batch_size=10,
    ...              lr=0.1, epochs=1).tolist()
    [7, 3]
    """
    if bias_delta.shape != mean_probs.shape or bias_delta.ndim != 1:
        raise InvalidSettingError(
            f"label_counts needs a (K,) bias change and (K,) mean probabilities, got "
            f"{tuple(bias_delta.shape)} and {tuple(mean_probs.shape)}"
        )
    if min(num_examples, batch_size, epochs) < 1 or not lr > 0:
        raise InvalidSettingError(
            f"label_counts needs N, B, E >= 1 and lr > 0, got N={num_examples}, "
            f"B={batch_size}, E={epochs}, lr={lr}"
        )
    raw = num_examples * mean_probs.double() + batch_size / (lr * epochs) * bias_delta.double()
    return integer_counts(raw, num_examples)


def integer_counts(raw: torch.Tensor, total: int) -> torch.Tensor:
    """Round ``raw`` (clipped at 0) to non-negative integers summing to ``total``.

    Scaled to sum to ``total``, floored, then the remainder goes one each to the largest
    fractional parts (ties: lowest index); all-zero input is spread uniformly.

    Examples
    --------
    >>> integer_counts(torch.tensor([2.6, -1.0, 1.3]), 4).tolist()
    [3, 0, 1]
    """
    clipped = torch.nan_to_num(raw.double(), nan=0.0, posinf=0.0, neginf=0.0).clamp(min=0)
    if clipped.sum() <= 0:
        clipped = torch.ones_like(clipped)
    scaled = clipped * total / clipped.sum()
    counts = scaled.floor().long()
    short = total - int(counts.sum())
    order = torch.argsort(-(scaled - counts), stable=True)
    counts[order[:short]] += 1
    return counts
