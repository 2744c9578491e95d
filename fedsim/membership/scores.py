"""Per-example statistics of a model's logits that membership attacks build on.

All take ``(n, C)`` logits and ``(n,)`` integer labels (NumPy arrays or torch tensors; computed
in float64) and return ``(n,)`` float64 NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import as_float_array, to_numpy

__all__ = ["logit_confidence", "loss_score", "true_label_probability"]


def loss_score(logits: Any, labels: Any) -> np.ndarray:
    r"""The loss attack's score: minus the cross-entropy.

    :math:`-\ell(x, y) = z_y - \log\sum_j e^{z_j}`.
    Members tend to have lower loss, so a higher score means "more likely a member"
    (Yeom, Giacomelli, Fredrikson, Jha, "Privacy Risk in Machine Learning: Analyzing the
    Connection to Overfitting", IEEE CSF 2018).

    Parameters
    ----------
    logits : array-like
        ``(n, C)`` logits :math:`z`.
    labels : array-like
        ``(n,)`` true labels :math:`y` in ``[0, C)``.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 scores, ≤ 0.

    Examples
    --------
    >>> loss_score([[2.0, 0.0], [0.0, 0.0]], [0, 1]).round(4)  # -log(1+e^-2), -log 2
    array([-0.1269, -0.6931])
    """
    z, y = _logits_and_labels("loss attack", logits, labels)
    return z[np.arange(len(y)), y] - logsumexp(z, axis=1)


def logit_confidence(logits: Any, labels: Any) -> np.ndarray:
    r"""LiRA's logit-scaled confidence :math:`\phi = \log\frac{p_y}{1 - p_y}`, computed stably.

    With :math:`p = \mathrm{softmax}(z)`,
    :math:`\phi = z_y - \log\sum_{j \ne y} e^{z_j}`, which stays finite when :math:`p_y`
    rounds to 1 (Carlini et al., "Membership Inference Attacks From First Principles",
    IEEE S&P 2022).

    Parameters
    ----------
    logits : array-like
        ``(n, C)`` logits, C ≥ 2.
    labels : array-like
        ``(n,)`` true labels.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 φ.

    Examples
    --------
    >>> logit_confidence([[2.0, 0.0, 0.0], [40.0, 0.0, 0.0]], [0, 0]).round(4)  # 2 - log 2
    array([ 1.3069, 39.3069])
    """
    z, y = _logits_and_labels("LiRA", logits, labels)
    if z.shape[1] < 2:
        raise InvalidSettingError(f"LiRA needs at least 2 classes, got logits of shape {z.shape}")
    rows = np.arange(len(y))
    others = z.copy()
    others[rows, y] = -np.inf
    return z[rows, y] - logsumexp(others, axis=1)


def true_label_probability(logits: Any, labels: Any) -> np.ndarray:
    r"""The softmax probability of the true label.

    :math:`\Pr(x \mid \theta) = e^{z_y} / \sum_j e^{z_j}`, RMIA's per-model statistic
    (Zarifzadeh, Liu, Shokri, "Low-Cost High-Power Membership Inference Attacks", ICML 2024).

    Examples
    --------
    >>> true_label_probability([[0.0, 0.0], [2.0, 0.0]], [1, 0]).round(4)
    array([0.5   , 0.8808])
    """
    z, y = _logits_and_labels("RMIA", logits, labels)
    return np.exp(z[np.arange(len(y)), y] - logsumexp(z, axis=1))


def _logits_and_labels(rule: str, logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = as_float_array(rule, "logits", logits, ndim=2)
    y = to_numpy(labels)
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise InvalidSettingError(
            f"{rule} needs one label per row of logits {z.shape}, got labels of shape {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer) or (
        y.size and (y.min() < 0 or y.max() >= z.shape[1])
    ):
        raise InvalidSettingError(
            f"{rule} needs integer labels in [0, {z.shape[1]}), got dtype {y.dtype}"
            + (f" and range [{y.min()}, {y.max()}]" if y.size else "")
        )
    return z, y.astype(np.int64)
