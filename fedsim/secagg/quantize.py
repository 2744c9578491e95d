r"""Stochastic quantization of a float update into SecAgg+'s integers, and decoding of a sum.

A coordinate ``x`` (times an optional public ``weight`` ``w``) is clipped to ``[-c, c]`` and
mapped to ``y = (clip(w·x, -c, c) + c) · Q / (2c)`` in ``[0, Q]``, then rounded at random to
``⌊y⌋`` or ``⌈y⌉`` so that ``E[q] = y`` (stochastic rounding). A sum of ``n`` quantized vectors
decodes to the sum of the clipped values as

.. math:: \hat S = \frac{2c}{Q} \sum_{i=1}^{n} q_i - n c,

computed in float64 as Flower does (dequantize once, then add ``-(n-1)·c``). Symbols: ``c``
``clipping_range``, ``Q`` ``quantization_range``, ``n`` the vectors summed.

**Error bound.** Each ``q_i`` is within one step of ``y_i`` (``|q_i - y_i| < 1``), so per
coordinate ``|Ŝ - Σ clip(w_i x_i)| < n · 2c/Q`` (:func:`sum_error_bound`), up to float64
rounding; the error is zero-mean.

**Departures from Flower** (``flwr.common.secure_aggregation.quantization``): the rounding
draws come from a generator the caller passes in (Flower draws from NumPy's global state, so
its runs are not reproducible); results are int64, never int32; and fedsim quantizes the update
(delta) a client sends, not Flower's ``weights · n_i / max_weight``: a FedAvg weight, when the
caller wants one, is the public factor ``weight`` applied *before* clipping, so the clipping
range then bounds the weighted value ``w·x``.

Reference: Bell, Bonawitz, Gascón, Lepoint, Raykova, ACM CCS 2020; Flower 1.42's
``quantize``/``dequantize``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedsim.errors import InvalidSettingError
from fedsim.secagg.settings import SecAggSettings

__all__ = ["decode_sum", "dequantize", "quantize", "sum_error_bound"]


def quantize(
    values: Any,
    settings: SecAggSettings,
    rng: np.random.Generator | np.random.RandomState,
    *,
    weight: float = 1.0,
) -> np.ndarray:
    """Stochastically quantize ``weight · values`` to integers in ``[0, Q]``.

    Parameters
    ----------
    values : array-like
        The float update, any shape.
    settings : SecAggSettings
        Gives ``c`` (``clipping_range``) and ``Q`` (``quantization_range``).
    rng : numpy.random.Generator or numpy.random.RandomState
        Draws the rounding (one uniform per coordinate).
    weight : float
        Public factor ``w`` applied before clipping (1 = the update as it is).

    Returns
    -------
    numpy.ndarray
        int64 array of ``values``' shape.

    Raises
    ------
    InvalidSettingError
        ``values`` or ``weight`` holds a NaN or an infinity.

    Examples
    --------
    ``c = 1``, ``Q = 4``: a step is 0.5, and ``x ↦ 2(x + 1)``; 0.25 maps to 2.5, rounded to 2 or
    3 at random, everything else lands on an integer.

    >>> s = SecAggSettings(clipping_range=1.0, quantization_range=4, modulus_range=16)
    >>> q = quantize([-2.0, -1.0, 0.0, 1.0, 0.25], s, np.random.default_rng(0))
    >>> q[:4].tolist(), int(q[4]) in (2, 3)
    ([0, 0, 2, 4], True)
    >>> dequantize(q[:4], s).tolist()
    [-1.0, -1.0, 0.0, 1.0]
    """
    x = np.asarray(values, dtype=np.float64) * float(weight)
    if not np.all(np.isfinite(x)):
        raise InvalidSettingError("secure aggregation: cannot quantize a non-finite update")
    c, big_q = float(settings.clipping_range), settings.quantization_range
    y = (np.clip(x, -c, c) + c) * (big_q / (2 * c))
    low = np.floor(y)
    up = rng.random(y.shape) < (y - low)
    return np.clip(low.astype(np.int64) + up, 0, big_q)


def dequantize(quantized: Any, settings: SecAggSettings) -> np.ndarray:
    """Map integers back to floats: ``q · 2c/Q - c`` (float64).

    Parameters
    ----------
    quantized : array-like
        Integers from :func:`quantize` (or a sum of them, then see :func:`decode_sum`).
    settings : SecAggSettings
        Gives ``c`` and ``Q``.

    Returns
    -------
    numpy.ndarray
        float64 array.

    Examples
    --------
    >>> s = SecAggSettings(clipping_range=1.0, quantization_range=4, modulus_range=16)
    >>> dequantize([0, 1, 4], s).tolist()
    [-1.0, -0.5, 1.0]
    """
    c = float(settings.clipping_range)
    return np.asarray(quantized, dtype=np.float64) * (2 * c / settings.quantization_range) - c


def decode_sum(quantized_sum: Any, num_summed: int, settings: SecAggSettings) -> np.ndarray:
    """Decode a sum of ``n`` quantized vectors: ``Σq · 2c/Q - n·c`` (float64).

    Parameters
    ----------
    quantized_sum : array-like
        ``Σ q_i`` over ``n`` clients (below ``modulus_range``, so unwrapped).
    num_summed : int
        ``n``.
    settings : SecAggSettings
        Gives ``c`` and ``Q``.

    Returns
    -------
    numpy.ndarray
        The sum of the ``n`` clipped vectors, within :func:`sum_error_bound` per coordinate.

    Examples
    --------
    Two clients, ``c = 1``, ``Q = 4``: 0.5 and -1 quantize exactly to 3 and 0.

    >>> s = SecAggSettings(clipping_range=1.0, quantization_range=4, modulus_range=16)
    >>> decode_sum([3 + 0], 2, s).tolist()
    [-0.5]
    """
    c = float(settings.clipping_range)
    return dequantize(quantized_sum, settings) - (num_summed - 1) * c


def sum_error_bound(num_summed: int, settings: SecAggSettings) -> float:
    """The bound ``n · 2c/Q`` on a decoded sum's error per coordinate (one step per client).

    Parameters
    ----------
    num_summed : int
        ``n``.
    settings : SecAggSettings
        Gives ``c`` and ``Q``.

    Returns
    -------
    float
        ``n · 2c / Q``.

    Examples
    --------
    >>> sum_error_bound(10, SecAggSettings())  # 10 * 16 / 2**22
    3.814697265625e-05
    """
    return num_summed * 2 * float(settings.clipping_range) / settings.quantization_range
