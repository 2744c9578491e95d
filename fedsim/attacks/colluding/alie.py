"""ALIE ("A Little Is Enough"): shift every coordinate by z standard deviations."""

from __future__ import annotations

import logging

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.registry import ATTACKS
from fedsim.attacks.strength import Tunable
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_real

__all__ = ["ALIE"]

logger = logging.getLogger(__name__)

Z_MODES = ("paper", "fixed")


@ATTACKS.register("alie")
class ALIE(ColludingAttack):
    r"""A Little Is Enough: send the mean shifted by z standard deviations per coordinate.

    .. math:: m_j = \mu_j - z\,\sigma_j, \qquad
              s = \lfloor n/2 + 1 \rfloor - f, \qquad z = \Phi^{-1}\!\left(\frac{n - s}{n}\right)

    :math:`\mu_j` and :math:`\sigma_j` are the mean and standard deviation of coordinate *j*
    over the observed updates, *n* the number of updates aggregated in the round, *f* the
    number of malicious ones, *s* the number of benign clients the attackers need on their
    side, and :math:`\Phi^{-1}` the standard normal *inverse* CDF (quantile function; some
    public code wrongly applies the CDF :math:`\Phi`). All *f* malicious clients send *m*.

    ``z_mode="paper"`` computes *z* from *n* and *f* every round and needs :math:`s \ge 1`,
    i.e. :math:`f \le \lfloor n/2 \rfloor`; ``z_mode="fixed"`` uses the given ``z``
    (default 1.5). The *z* used is logged (``info["z"]``).

    :math:`\sigma` is the population standard deviation (divisor *k*, the number of observed
    updates) by default, which is defined for a single observed update; ``unbiased=True``
    uses Bessel's divisor *k − 1* (``torch.std``'s default) and needs *k ≥ 2*.

    Parameters
    ----------
    z_mode : {"paper", "fixed"}
        How *z* is chosen.
    z : float or None
        The fixed *z* (finite, ≥ 0) for ``z_mode="fixed"``; ``None`` means 1.5. Must be
        ``None`` with ``z_mode="paper"``.
    unbiased : bool
        Bessel-corrected standard deviation instead of the population one.

    Raises
    ------
    InvalidSettingError
        Invalid settings; at call time ``f < 1``, ``n ≤ f``, :math:`s < 1` in paper mode, or
        ``unbiased`` with fewer than two observed updates.

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = ALIE(z_mode="fixed", z=1.5)(u, n=5, f=2, generator=torch.Generator())
    >>> [round(v, 4) for v in out.updates[0].tolist()], out.info["z"]
    ([0.5505, -1.1213, 2.0], 1.5)
    >>> round(ALIE().z_for(n=20, f=4), 4)  # s = 7, z = Φ⁻¹(13/20)
    0.3853

    References
    ----------
    Baruch, Baruch, Goldberg. A Little Is Enough: Circumventing Defenses For Distributed
    Learning. NeurIPS 2019.
    """

    name = "alie"

    def __init__(
        self, z_mode: str = "paper", z: float | None = None, unbiased: bool = False
    ) -> None:
        if z_mode not in Z_MODES:
            raise InvalidSettingError(f"alie needs z_mode in {list(Z_MODES)}, got {z_mode!r}")
        if z_mode == "paper" and z is not None:
            raise InvalidSettingError(
                f"alie computes z from n and f with z_mode='paper', so z must not be set "
                f"(got z={z!r}); use z_mode='fixed' to fix it"
            )
        if z_mode == "fixed":
            z = 1.5 if z is None else z
            z = require_real("alie", "z", z, low=0.0)
        if not isinstance(unbiased, bool):
            raise InvalidSettingError(f"alie needs unbiased to be true or false, got {unbiased!r}")
        self.z_mode = z_mode
        self.z = z
        self.unbiased = unbiased

    def check_round(self, n: int, f: int) -> None:
        r"""Also require :math:`s = \lfloor n/2+1 \rfloor - f \ge 1` in paper mode."""
        super().check_round(n, f)
        if self.z_mode == "paper" and n // 2 + 1 - f < 1:
            raise InvalidSettingError(
                f"alie with z_mode='paper' needs s = ⌊n/2+1⌋ − f ≥ 1, i.e. f ≤ ⌊n/2⌋, "
                f"got n={n}, f={f}; use z_mode='fixed'"
            )

    def z_for(self, n: int, f: int) -> float:
        """Return the *z* used in a round with ``n`` updates, ``f`` of them malicious."""
        if self.z_mode == "fixed":
            return float(self.z)
        self.check_round(n, f)
        s = n // 2 + 1 - f
        p = torch.tensor((n - s) / n, dtype=torch.float64)
        return float(torch.special.ndtri(p))

    def tunable(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable:
        r"""The round with *z* free: :math:`m(z) = \mu - z\sigma`, default :meth:`z_for`."""
        k = observed.shape[0]
        if self.unbiased and k < 2:
            raise InvalidSettingError(
                f"alie with unbiased=True needs at least 2 observed updates, got {k}"
            )
        mean = observed.mean(dim=0)
        std = observed.std(dim=0, correction=1 if self.unbiased else 0)
        return Tunable(
            key="z",
            default=self.z_for(n, f),
            craft=lambda z: (mean - z * std).expand(f, -1).clone(),
            info=lambda z: {"z": z, "observed": k},
        )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        r"""Return *f* copies of :math:`\mu - z\sigma` (:meth:`tunable` at :meth:`z_for`)."""
        round_ = self.tunable(observed, n=n, f=f)
        z = round_.default
        logger.debug("alie: n=%d f=%d k=%d z=%.6g", n, f, observed.shape[0], z)
        info = round_.info(z)
        if self.z_mode == "paper":
            info["s"] = n // 2 + 1 - f
        return CraftedUpdates(round_.craft(z), info)
