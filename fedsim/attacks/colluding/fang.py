"""Fang et al.'s attacks tailored to Krum and to coordinate-wise median / trimmed mean."""

from __future__ import annotations

import logging
import math

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.registry import ATTACKS
from fedsim.distances import pairwise_sq_distances
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_real

__all__ = ["Fang"]

logger = logging.getLogger(__name__)

TARGET_RULES = ("krum", "median", "trimmed_mean")


@ATTACKS.register("fang")
class Fang(ColludingAttack):
    r"""Local model poisoning tailored to the server's rule (Fang et al.).

    Let :math:`\Delta_1, \dots, \Delta_k` be the observed benign updates (the full-knowledge
    attack when they are all the round's benign updates), :math:`s_j = \operatorname{sign}
    (\frac1k\sum_i \Delta_{ij})` the direction coordinate *j* would move without attack, *d*
    the number of parameters, *n* the updates aggregated and *f* the malicious ones.

    **Median / trimmed mean** (``target_rule`` ``"median"`` or ``"trimmed_mean"``, the same
    attack). With :math:`w_{\max,j}, w_{\min,j}` the largest and smallest observed value of
    coordinate *j*, every malicious value is drawn uniformly (independently per client and
    coordinate, from the given generator) on the wrong side of the benign range:

    * :math:`s_j < 0`: on :math:`[w_{\max,j}, b\,w_{\max,j}]` if :math:`w_{\max,j} > 0`, else
      on :math:`[w_{\max,j}, w_{\max,j}/b]` — never below :math:`w_{\max,j}`;
    * :math:`s_j \ge 0` (a zero mean is treated as positive): on
      :math:`[w_{\min,j}/b, w_{\min,j}]` if :math:`w_{\min,j} > 0`, else on
      :math:`[b\,w_{\min,j}, w_{\min,j}]` — never above :math:`w_{\min,j}`.

    **Krum**. Every malicious client sends :math:`m = -\lambda s` (the paper's
    :math:`w'_1 = w_{Re} - \lambda s` in update form; the paper's other malicious models, "close
    to" :math:`w'_1`, are taken equal to it), with :math:`\lambda` halved, starting from the
    paper's upper bound

    .. math:: \lambda_0 = \frac{1}{(n - 2f - 1)\sqrt d}\,\min_{i}
              \sum_{l \in \Gamma_i} \lVert \Delta_l - \Delta_i \rVert
              + \frac{1}{\sqrt d}\max_i \lVert \Delta_i \rVert,

    (:math:`\Gamma_i` the :math:`n - f - 2` observed updates nearest to :math:`\Delta_i`, fewer
    if fewer were observed), until Krum applied to the observed updates followed by the *f*
    copies of *m* selects a copy, or :math:`\lambda` drops below ``lambda_min``; then the last
    halved :math:`\lambda` is used and ``info["selected"]`` is false. Krum is simulated with
    exact float64 squared distances, :math:`n - f - 2` neighbours (at most the other rows) and
    ties going to the benign updates (listed first). The attack succeeds when the benign
    updates are spread widely compared with their norms (as stochastic updates in high
    dimension are); against tightly clustered updates Krum keeps choosing a benign one.

    Parameters
    ----------
    target_rule : {"krum", "median", "trimmed_mean"}
        The aggregation rule the attack is tailored to (default ``"krum"``).
    b : float
        :math:`b > 1`, how far beyond the benign range values are drawn (default 2, as in
        the paper); used by the median / trimmed-mean attack.
    lambda_min : float
        The threshold (``> 0``, default 1e-5) below which the Krum attack stops halving.

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> out = Fang("median")(u, n=5, f=2, generator=torch.Generator().manual_seed(0))
    >>> bool((out.updates <= u.min(dim=0).values).all())  # every mean is ≥ 0: pushed down
    True
    >>> benign = torch.tensor([[1.0, -1.0], [-1.0, 1.5], [2.0, 1.0], [-0.5, -1.5], [0.5, 2.0]],
    ...                       dtype=torch.float64)
    >>> out = Fang("krum")(benign, n=7, f=2, generator=torch.Generator())
    >>> out.info["selected"], round(out.info["lambda"], 4), out.updates.shape
    (True, 0.4816, torch.Size([2, 2]))

    References
    ----------
    Fang, Cao, Jia, Gong. Local Model Poisoning Attacks to Byzantine-Robust Federated
    Learning. USENIX Security 2020.
    """

    name = "fang"

    def __init__(self, target_rule: str = "krum", b: float = 2.0, lambda_min: float = 1e-5) -> None:
        if target_rule not in TARGET_RULES:
            raise InvalidSettingError(
                f"fang needs target_rule in {list(TARGET_RULES)}, got {target_rule!r}"
            )
        self.target_rule = target_rule
        self.b = require_real("fang", "b", b, low=1.0, low_open=True)
        self.lambda_min = require_real("fang", "lambda_min", lambda_min, low=0.0, low_open=True)

    def check_round(self, n: int, f: int) -> None:
        """Also require Krum's ``n ≥ 2f + 3`` for ``target_rule="krum"``."""
        super().check_round(n, f)
        if self.target_rule == "krum" and n < 2 * f + 3:
            raise InvalidSettingError(
                f"fang with target_rule='krum' needs n ≥ 2f+3 (Krum's requirement), "
                f"got n={n}, f={f}"
            )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        """Craft the *f* malicious updates for the configured target rule."""
        if self.target_rule == "krum":
            return self._against_krum(observed, n, f)
        return self._against_median(observed, f, generator)

    def _against_median(
        self, observed: torch.Tensor, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        b = self.b
        w_max = observed.max(dim=0).values
        w_min = observed.min(dim=0).values
        up = observed.mean(dim=0) < 0  # benign mean moves down: push the coordinate up
        lo = torch.where(up, w_max, torch.where(w_min > 0, w_min / b, b * w_min))
        hi = torch.where(up, torch.where(w_max > 0, b * w_max, w_max / b), w_min)
        u = torch.rand((f, observed.shape[1]), generator=generator, dtype=torch.float64)
        malicious = lo + (hi - lo) * u.to(observed.device)
        return CraftedUpdates(malicious, {"target_rule": self.target_rule, "b": b})

    def _against_krum(self, observed: torch.Tensor, n: int, f: int) -> CraftedUpdates:
        k, d = observed.shape
        direction = torch.sign(observed.mean(dim=0))
        benign_sq = pairwise_sq_distances(observed)
        near = min(n - f - 2, k - 1)
        dist = benign_sq.sqrt().fill_diagonal_(math.inf)
        closest = dist.sort(dim=1).values[:, :near].sum(dim=1).min()
        largest = torch.linalg.vector_norm(observed, dim=1).max()
        upper = float(closest / ((n - 2 * f - 1) * math.sqrt(d)) + largest / math.sqrt(d))

        rows = k + f
        neighbours = min(n - f - 2, rows - 1)
        sq = torch.zeros(rows, rows, dtype=torch.float64, device=observed.device)
        sq[:k, :k] = benign_sq
        lam, selected = upper, False
        while lam >= self.lambda_min:
            to_malicious = (observed + lam * direction).square().sum(dim=1)
            sq[:k, k:] = to_malicious[:, None]
            sq[k:, :k] = to_malicious[None, :]
            if _krum_index(sq, neighbours) >= k:
                selected = True
                break
            lam /= 2
        if not selected:
            logger.warning(
                "fang: no lambda ≥ lambda_min=%g made Krum select a malicious update",
                self.lambda_min,
            )
        logger.debug("fang: lambda=%.6g (upper bound %.6g), selected=%s", lam, upper, selected)
        malicious = (-lam * direction).expand(f, -1).clone()
        info = {
            "target_rule": "krum",
            "lambda": lam,
            "lambda_upper": upper,
            "selected": selected,
        }
        return CraftedUpdates(malicious, info)


def _krum_index(sq: torch.Tensor, neighbours: int) -> int:
    """Return Krum's choice: argmin of the sum of the ``neighbours`` smallest ``sq[i, j]``, j ≠ i.

    ``sq`` holds exact squared distances; ties go to the lowest index.
    """
    others = sq.clone().fill_diagonal_(math.inf)
    scores = others.sort(dim=1).values[:, :neighbours].sum(dim=1)
    return int(torch.argmin(scores))
