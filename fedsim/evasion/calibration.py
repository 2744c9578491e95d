"""Calibration: expected calibration error and reliability-diagram data (Guo et al., ICML 2017)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from fedsim.errors import InvalidSettingError
from fedsim.validation import require_int

__all__ = ["ReliabilityDiagram", "expected_calibration_error", "reliability_diagram"]


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin accuracy, mean confidence and count over equal-width confidence bins.

    Attributes
    ----------
    edges : list of float
        The ``M + 1`` bin edges ``0, 1/M, ..., 1``; bin b is ``(edges[b], edges[b + 1]]``.
    accuracy, confidence : list of float or None
        ``acc(B_b)`` and ``conf(B_b)``; ``None`` for an empty bin.
    count : list of int
        ``|B_b|``.
    """

    edges: list[float]
    accuracy: list[float | None]
    confidence: list[float | None]
    count: list[int]

    @property
    def ece(self) -> float:
        r""":math:`\sum_b \frac{|B_b|}{n} |\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|` (0 if n = 0)."""
        n = sum(self.count)
        total = 0.0
        for acc, conf, c in zip(self.accuracy, self.confidence, self.count, strict=True):
            if c:
                total += c / n * abs(acc - conf)  # type: ignore[operator]
        return total


def reliability_diagram(
    probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15
) -> ReliabilityDiagram:
    r"""Bin predictions by confidence (Guo, Pleiss, Sun & Weinberger, ICML 2017, §2).

    The confidence of sample i is :math:`\hat p_i = \max_k p_{ik}` and its prediction
    :math:`\hat y_i = \arg\max_k p_{ik}`; bin :math:`B_b` holds the samples with
    :math:`\hat p_i \in ((b-1)/M, b/M]` (a confidence of exactly 0 goes to the first bin), and

    .. math:: \mathrm{acc}(B_b) = \frac{1}{|B_b|}\sum_{i \in B_b} [\hat y_i = y_i], \qquad
        \mathrm{conf}(B_b) = \frac{1}{|B_b|}\sum_{i \in B_b} \hat p_i .

    Parameters
    ----------
    probs : Tensor
        Predicted class probabilities ``(n, K)`` (softmax outputs, not logits).
    y : Tensor
        True labels ``(n,)``.
    n_bins : int
        M ≥ 1 (15 in Guo et al.).

    Examples
    --------
    >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]])
    >>> d = reliability_diagram(probs, torch.tensor([0, 1, 1]), n_bins=2)
    >>> d.count, d.accuracy, d.confidence[0], round(d.confidence[1], 4)
    ([0, 3], [None, 0.6666666666666666], None, 0.7667)
    """
    m = require_int("reliability_diagram", "n_bins", n_bins, minimum=1)
    if probs.dim() != 2 or len(probs) != len(y):
        raise InvalidSettingError(
            "reliability_diagram needs probs of shape (n, K) and labels of shape (n,), "
            f"got {tuple(probs.shape)} and {tuple(y.shape)}"
        )
    probs = probs.detach().to(torch.float64).cpu()
    conf, pred = probs.max(dim=1)
    correct = (pred == y.detach().cpu()).to(torch.float64)
    edges = torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64)
    # bin b holds (edges[b], edges[b+1]]: bucketize with right=False returns b + 1 for those
    index = (torch.bucketize(conf, edges, right=False) - 1).clamp(0, m - 1)
    count = torch.bincount(index, minlength=m)
    acc_sum = torch.bincount(index, weights=correct, minlength=m)
    conf_sum = torch.bincount(index, weights=conf, minlength=m)
    accuracy = [float(a / c) if c else None for a, c in zip(acc_sum, count, strict=True)]
    confidence = [float(s / c) if c else None for s, c in zip(conf_sum, count, strict=True)]
    return ReliabilityDiagram(edges.tolist(), accuracy, confidence, count.tolist())


def expected_calibration_error(probs: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    r"""Expected calibration error (Guo et al., ICML 2017, eq. 3).

    .. math:: \mathrm{ECE} = \sum_{b=1}^{M} \frac{|B_b|}{n}\,
        \bigl|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\bigr|

    over M equal-width confidence bins (see :func:`reliability_diagram`).

    Examples
    --------
    >>> probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.4, 0.6]])
    >>> round(expected_calibration_error(probs, torch.tensor([0, 1, 1]), n_bins=2), 4)
    0.1
    """
    return reliability_diagram(probs, y, n_bins).ece
