"""The Robust Membership Inference Attack (RMIA) on precomputed true-label probabilities.

RMIA compares how much more likely x is under the target model than on average over reference
models, relative to the same ratio for population samples z (Zarifzadeh, Liu, Shokri, "Low-Cost
High-Power Membership Inference Attacks", ICML 2024). Inputs are
:func:`~fedsim.membership.scores.true_label_probability` values: the target model's on the
``(n,)`` candidates x and the ``(m,)`` population samples z, and the ``(R, ·)`` reference
models' on the same examples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsim.errors import InvalidSettingError
from fedsim.membership._checks import as_float_array
from fedsim.validation import require_real

__all__ = ["rmia_scores"]

RULE = "RMIA"
MIN_PROBABILITY = 1e-300  # a probability that underflowed to 0 (float64 softmax)


def rmia_scores(
    target_x: Any,
    reference_x: Any,
    target_z: Any,
    reference_z: Any,
    *,
    gamma: float = 1.0,
    offline_a: float | None = None,
) -> np.ndarray:
    r"""RMIA score: the fraction of population samples z that x dominates by a factor γ.

    .. math::
        \mathrm{LR}(x, z) = \frac{\Pr(x \mid \theta) / \Pr(x)}{\Pr(z \mid \theta) / \Pr(z)},
        \qquad s(x) = \frac{1}{m} \big|\{z : \mathrm{LR}(x, z) \ge \gamma\}\big|,

    with :math:`\Pr(\cdot \mid \theta)` the target model's probability of the true label and
    :math:`\Pr(\cdot)` its mean over the R reference models. **Online** (``offline_a`` is
    None) the references are trained on random halves of a population containing the
    candidates, so the mean is over in- and out-models alike. **Offline** all references are
    out-models and the paper's linear correction estimates the missing in-models:
    :math:`\Pr(x) = \tfrac12\big((1 + a)\Pr_{out}(x) + (1 - a)\big)`, applied to x and, the same
    way, to z (one estimator for both sides of the ratio). Computed for all pairs at once:
    :math:`\mathrm{LR}(x, z) \ge \gamma \iff r(z) \le r(x)/\gamma` with
    :math:`r(\cdot) = \Pr(\cdot \mid \theta)/\Pr(\cdot)`, a sorted search over the r(z)
    (O((n + m) log m)). Probabilities that underflowed to 0 are floored at 1e-300.

    Parameters
    ----------
    target_x : array-like
        ``(n,)`` :math:`\Pr(x \mid \theta)` of the candidates, in [0, 1].
    reference_x : array-like
        ``(R, n)`` the reference models' probabilities of the candidates.
    target_z : array-like
        ``(m,)`` :math:`\Pr(z \mid \theta)` of population samples (never trained on by the
        target), m ≥ 1.
    reference_z : array-like
        ``(R, m)`` the reference models' probabilities of the population samples.
    gamma : float
        γ > 0 (the paper uses values near 1; 1 by default).
    offline_a : float or None
        a in [0, 1] for the offline correction (the paper tunes it on reference models), or
        None for online references.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` float64 scores in [0, 1], higher = more likely a member.

    Examples
    --------
    >>> ref_x = [[0.5, 0.5], [0.5, 0.5]]  # Pr(x) = 0.5: r(x) = [1.8, 1.0]
    >>> ref_z = [[0.5, 0.4], [0.5, 0.4]]  # Pr(z) = [0.5, 0.4]: r(z) = [1.0, 1.5]
    >>> rmia_scores([0.9, 0.5], ref_x, [0.5, 0.6], ref_z)
    array([1. , 0.5])
    """
    gamma = require_real(RULE, "gamma", gamma, low=0.0, low_open=True)
    if offline_a is not None:
        offline_a = require_real(RULE, "offline_a", offline_a, low=0.0, high=1.0)
    tx = _probabilities("target_x", target_x, ndim=1)
    rx = _probabilities("reference_x", reference_x, ndim=2)
    tz = _probabilities("target_z", target_z, ndim=1)
    rz = _probabilities("reference_z", reference_z, ndim=2)
    if tz.size == 0:
        raise InvalidSettingError(f"{RULE} needs at least one population sample z, got none")
    for name, ref, target in (("reference_x", rx, tx), ("reference_z", rz, tz)):
        if ref.shape[1] != target.shape[0] or ref.shape[0] == 0:
            raise InvalidSettingError(
                f"{RULE} needs {name} of shape (R >= 1, {target.shape[0]}), got {ref.shape}"
            )
    if rx.shape[0] != rz.shape[0]:
        raise InvalidSettingError(
            f"{RULE} needs the same reference models for x and z, got {rx.shape[0]} and "
            f"{rz.shape[0]} rows"
        )
    ratio_x = tx / _marginal(rx, offline_a)
    ratio_z = np.sort(tz / _marginal(rz, offline_a))
    dominated = np.searchsorted(ratio_z, ratio_x / gamma, side="right")
    return dominated / ratio_z.size


def _marginal(reference: np.ndarray, offline_a: float | None) -> np.ndarray:
    """Pr(·): the mean over reference models, with the offline correction when a is given."""
    mean = reference.mean(axis=0)
    if offline_a is not None:
        mean = 0.5 * ((1.0 + offline_a) * mean + (1.0 - offline_a))
    return np.maximum(mean, MIN_PROBABILITY)


def _probabilities(name: str, value: Any, *, ndim: int) -> np.ndarray:
    array = as_float_array(RULE, name, value, ndim=ndim)
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise InvalidSettingError(
            f"{RULE} needs {name} to be probabilities in [0, 1], got range "
            f"[{array.min():.4g}, {array.max():.4g}]"
        )
    return np.maximum(array, MIN_PROBABILITY)
