"""SecAgg+ settings with Flower's names and defaults, and their resolution for a cohort.

:class:`SecAggSettings` holds what ``flwr.server.workflow.SecAggPlusWorkflow`` takes (Flower
1.42: ``num_shares``, ``reconstruction_threshold``, ``clipping_range``,
``quantization_range``, ``modulus_range``) and checks them as its ``_check_init_params`` does,
plus the sharp edges Flower leaves open, refused here with the value and the rule:

- ``clipping_range`` must be a finite number > 0 (Flower divides by it);
- ``modulus_range`` must be a power of two above ``quantization_range`` and at most 2**32
  (Flower's documented range; masks and sums are int64);
- a fraction (``num_shares`` or ``reconstruction_threshold`` as a float) lies in (0, 1];
- an integer threshold is at least 1, and below an integer ``num_shares`` (Flower's rule);
- the cohort's sum must not wrap: ``n · quantization_range < modulus_range`` for ``n`` nodes
  (checked by :meth:`SecAggSettings.for_cohort`, when ``n`` is known; Flower only warns when
  an integer ``num_shares`` exceeds ``modulus_range / quantization_range``).

``max_weight`` is not here: fedsim masks the update itself, not Flower's
``weights · n_i / max_weight`` (see :mod:`fedsim.secagg.quantize`).

Reference: Bell, Bonawitz, Gascón, Lepoint, Raykova, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead", ACM CCS 2020 (SecAgg+), as Flower 1.42 implements it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fedsim.errors import InvalidSettingError

__all__ = ["Cohort", "SecAggSettings"]

MAX_MODULUS = 2**32
"""The largest ``modulus_range`` accepted: Flower's documented ceiling."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)


@dataclass(frozen=True)
class SecAggSettings:
    """The settings of Flower's SecAgg+ workflow, validated.

    Parameters
    ----------
    num_shares : int or float
        Shares each node's secrets are split into, i.e. the size of its neighbourhood
        (itself included). A float is a fraction of the cohort; the integer 1 means all nodes
        (Flower's convention). An integer must otherwise be > 2.
    reconstruction_threshold : int or float
        Shares needed to rebuild a secret (Shamir's ``t``); a float is a fraction of
        ``num_shares``, the integer 1 means all of them (Flower's convention).
    clipping_range : float
        ``c``: each coordinate is clipped to ``[-c, c]`` before quantization.
    quantization_range : int
        ``Q``: a clipped coordinate maps to an integer in ``[0, Q]``.
    modulus_range : int
        ``m``: masks and sums live modulo ``m``, a power of two in ``(Q, 2**32]``.

    Raises
    ------
    InvalidSettingError
        A value breaks a rule above; the message names the value and the rule.

    Examples
    --------
    >>> SecAggSettings().for_cohort(10)
    Cohort(num_nodes=10, num_shares=5, threshold=3)
    >>> SecAggSettings(clipping_range=0.0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: ... clipping_range must be a finite number > 0, got 0.0
    """

    num_shares: int | float = 0.5
    reconstruction_threshold: int | float = 0.6
    clipping_range: float = 8.0
    quantization_range: int = 4194304
    modulus_range: int = 4294967296

    def __post_init__(self) -> None:
        shares, threshold = self.num_shares, self.reconstruction_threshold
        if not _is_number(shares):
            _refuse(f"num_shares must be an int or a float, got {shares!r}")
        if _is_int(shares) and shares != 1 and shares <= 2:
            _refuse(f"num_shares as an integer must be 1 (all nodes) or > 2, got {shares}")
        if isinstance(shares, float) and not 0 < shares <= 1:
            _refuse(f"num_shares as a float is a fraction of the cohort in (0, 1], got {shares}")
        if not _is_number(threshold):
            _refuse(f"reconstruction_threshold must be an int or a float, got {threshold!r}")
        if _is_int(threshold) and threshold < 1:
            _refuse(f"reconstruction_threshold as an integer must be >= 1, got {threshold}")
        if isinstance(threshold, float) and not 0 < threshold <= 1:
            _refuse(
                "reconstruction_threshold as a float is a fraction of num_shares in (0, 1], "
                f"got {threshold}"
            )
        if _is_int(threshold) and threshold != 1 and _is_int(shares) and shares != 1:
            if threshold >= shares:
                _refuse(
                    f"reconstruction_threshold={threshold} must be less than num_shares={shares}"
                )
        c = self.clipping_range
        if not _is_number(c) or not math.isfinite(c) or c <= 0:
            _refuse(f"clipping_range must be a finite number > 0, got {c!r}")
        q, m = self.quantization_range, self.modulus_range
        if not _is_int(q) or q <= 0:
            _refuse(f"quantization_range must be an integer > 0, got {q!r}")
        if not _is_int(m) or m <= q:
            _refuse(f"modulus_range must be an integer > quantization_range={q}, got {m!r}")
        if m & (m - 1):
            _refuse(f"modulus_range must be a power of two, got {m}")
        if m > MAX_MODULUS:
            _refuse(f"modulus_range must be at most 2**32 = {MAX_MODULUS}, got {m}")

    def for_cohort(self, num_nodes: int) -> Cohort:
        """Resolve ``num_shares`` and the threshold for ``num_nodes`` sampled nodes.

        As Flower's ``SecAggPlusWorkflow.setup_stage``: a fraction ``f`` of ``n`` nodes gives
        ``k = round(f · n)``, made odd (``+1``) when even and below ``n``, and ``k = n`` when
        ``k ≤ 2``; a fractional threshold ``g`` gives ``t = max(round(g · k), 2)``. An integer
        ``k`` is used as given, made odd when even and below ``n`` (Flower does so for the
        neighbour graph only and then fails, its clients splitting into ``k`` shares), and
        capped at ``n``.

        Parameters
        ----------
        num_nodes : int
            ``n``, the nodes sampled for the round (≥ 2).

        Returns
        -------
        Cohort
            ``n``, ``k`` and ``t``.

        Raises
        ------
        InvalidSettingError
            ``n < 2``; ``n · quantization_range ≥ modulus_range`` (the sum of ``n`` quantized
            vectors would wrap); or ``t > k`` (no secret could ever be rebuilt).

        Examples
        --------
        >>> SecAggSettings().for_cohort(4)  # round(0.5 * 4) = 2 is even: 3
        Cohort(num_nodes=4, num_shares=3, threshold=2)
        >>> SecAggSettings().for_cohort(2)  # round(0.5 * 2) = 1 <= 2: all nodes
        Cohort(num_nodes=2, num_shares=2, threshold=2)
        >>> SecAggSettings(num_shares=0.3).for_cohort(20)  # 6 is even: 7
        Cohort(num_nodes=20, num_shares=7, threshold=4)
        >>> SecAggSettings().for_cohort(1024)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        fedsim.errors.InvalidSettingError: ... n=1024 quantized vectors ... wraps modulo ...
        """
        n = num_nodes
        if not _is_int(n) or n < 2:
            _refuse(f"a SecAgg+ cohort needs at least 2 nodes, got {n!r}")
        q, m = self.quantization_range, self.modulus_range
        if n * q >= m:
            _refuse(
                f"the sum of n={n} quantized vectors reaches n * quantization_range = {n * q}, "
                f"which wraps modulo modulus_range = {m}; need n * quantization_range < "
                "modulus_range (sample fewer nodes, lower quantization_range or raise "
                "modulus_range)"
            )
        shares = 1.0 if self.num_shares == 1 and _is_int(self.num_shares) else self.num_shares
        if isinstance(shares, float):
            k = round(shares * n)
            if k < n and k % 2 == 0:
                k += 1
            if k <= 2:
                k = n
        else:
            k = shares + 1 if shares < n and shares % 2 == 0 else shares
            k = min(k, n)
        threshold = self.reconstruction_threshold
        if _is_int(threshold) and threshold == 1:
            threshold = 1.0
        t = max(round(threshold * k), 2) if isinstance(threshold, float) else threshold
        if t > k:
            _refuse(
                f"reconstruction_threshold={t} exceeds the {k} shares of a cohort of {n} "
                "nodes: no secret could be rebuilt"
            )
        return Cohort(num_nodes=n, num_shares=k, threshold=t)


@dataclass(frozen=True)
class Cohort:
    """One round's resolved SecAgg+ sizes: ``n`` nodes, ``k`` shares, threshold ``t``.

    Made by :meth:`SecAggSettings.for_cohort`.

    Examples
    --------
    >>> Cohort(num_nodes=5, num_shares=3, threshold=2).threshold
    2
    """

    num_nodes: int
    num_shares: int
    threshold: int


def _refuse(message: str) -> None:
    raise InvalidSettingError(f"secure aggregation: {message}")
