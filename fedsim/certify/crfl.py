r"""CRFL's certified prediction: parameter smoothing of the final global model (Xie et al., 2021).

"CRFL: Certifiably Robust Federated Learning against Backdoor Attacks" (Xie, Chen, Chen & Li,
ICML 2021). Training clips the global model to norm ρ and adds N(0, σ²I) after every round
(the server step, ``server.aggregators.crfl``). At test time the final model is clipped once
more and smoothed: the smoothed classifier predicts

.. math:: h_s(w_T; x) = \arg\max_c \; P\bigl(h(w_T + \varepsilon; x) = c\bigr), \quad
    \varepsilon \sim N(0, \sigma_T^2 I),

estimated from M noisy copies of the parameters (majority vote). Their Theorem 3 bounds how
much R attackers who poison a share :math:`q_B/n_B` of their batches with a trigger δ in round
:math:`t_{adv}` can move the parameters' distribution; the vote is unchanged for every trigger
with :math:`\lVert\delta\rVert_2 < \mathrm{RAD}` (:func:`crfl_radius`). The probabilities
are bounded as in Cohen et al. (ICML 2019): :math:`\underline{p_A}` the one-sided Clopper–Pearson
lower bound on the top class, :math:`\overline{p_B} = 1 - \underline{p_A}`, so the certificate
holds with probability at least 1 − α over the M draws. The authors' ``certify_*.py`` use
Hoeffding bounds on :math:`p_A` and on the runner-up separately instead (each at α, with no
union bound); Clopper–Pearson with :math:`\overline{p_B} = 1 - \underline{p_A}` is one valid
bound.

A pure core: torch and SciPy, no Flower, no ``clients``/``server`` imports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from scipy.stats import norm
from torch import nn

from fedsim.certify.smoothing import ABSTAIN, Certificate, lower_confidence_bound
from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import attack_mode
from fedsim.params import load_flat_params
from fedsim.validation import require_int, require_real

__all__ = ["CRFLSetting", "ParameterSmoothing", "crfl_radius"]


@dataclass(frozen=True)
class CRFLSetting:
    """The training constants CRFL's certified radius depends on.

    Attributes
    ----------
    sigma : float
        σ, the parameter-noise std of the training rounds before T (> 0).
    sigma_test : float
        σ_T, the smoothing noise std at test time (round T, > 0).
    rhos : sequence of float
        ρ_t, the global-norm bounds of rounds t_adv+1, …, T (the last one is ρ_T).
    lr : float
        η, the clients' learning rate.
    local_iters : float
        τ, local iterations per round.
    lipschitz : float
        L_Z, the Lipschitz constant of the loss gradient in the poisoned input.
    scale : float
        γ, the attackers' scale (model-replacement) factor.
    poison_per_batch : float
        q_B, poisoned samples per batch.
    batch_size : float
        n_B, samples per batch.
    attacker_weights : sequence of float
        pᵢ, the aggregation weights of the R attackers (R = its length).
    """

    sigma: float
    sigma_test: float
    rhos: Sequence[float]
    lr: float
    local_iters: float
    lipschitz: float
    scale: float
    poison_per_batch: float
    batch_size: float
    attacker_weights: Sequence[float]

    def __post_init__(self) -> None:
        """Validate every constant (all > 0, ρ_t > 0, at least one round and one attacker)."""
        for name in ("sigma", "sigma_test", "lr", "local_iters", "lipschitz", "scale"):
            require_real("crfl", name, getattr(self, name), low=0.0, low_open=True)
        for name in ("poison_per_batch", "batch_size"):
            require_real("crfl", name, getattr(self, name), low=0.0, low_open=True)
        if not self.rhos or not self.attacker_weights:
            raise InvalidSettingError("crfl needs at least one rho_t and one attacker weight")
        for rho in self.rhos:
            require_real("crfl", "rho_t", rho, low=0.0, low_open=True)
        for p in self.attacker_weights:
            require_real("crfl", "attacker weight", p, low=0.0, low_open=True)

    def with_attackers(self, count: int) -> CRFLSetting:
        """The same setting with ``count`` attackers, each of the first attacker's weight.

        Examples
        --------
        >>> s = CRFLSetting(1.0, 1.0, [40.0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, [0.1])
        >>> s.with_attackers(3).attacker_weights
        (0.1, 0.1, 0.1)
        """
        count = require_int("crfl", "attackers", count, minimum=1)
        return replace(self, attacker_weights=(self.attacker_weights[0],) * count)


def crfl_radius(p_a: float, p_b: float, setting: CRFLSetting) -> float:
    r"""Return CRFL's certified bound on the backdoor magnitude ‖δ‖ for one test sample.

    .. math::
        \mathrm{RAD} = \sqrt{\frac{-\sigma^2 \ln\big(1 - (\sqrt{p_A} - \sqrt{p_B})^2\big)}
        {2 R \tau^2 L_Z^2 \gamma^2 \eta^2 (q_B/n_B)^2 \sum_{i=1}^R p_i^2
         \prod_{t=t_{adv}+1}^{T} \big(2\Phi(\rho_t/\sigma_t) - 1\big)}}

    with :math:`p_A` (a lower bound on) the probability of the top class and :math:`p_B`
    (an upper bound on) the runner-up's under parameter smoothing, Φ the standard normal
    CDF, :math:`\sigma_t = \sigma` for t < T and :math:`\sigma_T` = ``sigma_test``; the other
    symbols are :class:`CRFLSetting`'s. The numerator is the Hellinger-distance condition
    on the two smoothed distributions, the product is the contraction of each clip-and-noise
    round after the attack (the paper's Theorem 3, the form ``cal_prob_bound`` in
    github.com/AI-secure/CRFL evaluates). With equal weights p the radius is
    ∝ 1/(R·p): more attackers, smaller radius. Returns 0 when :math:`p_A \le p_B` and ∞ when
    :math:`p_A = 1, p_B = 0`.

    Examples
    --------
    >>> s = CRFLSetting(1.0, 1.0, [40.0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, [1.0])
    >>> round(crfl_radius(0.9, 0.1, s), 6)  # √(−ln 0.6 / 2)
    0.505384
    """
    p_a = require_real("crfl", "p_a", p_a, low=0.0, high=1.0)
    p_b = require_real("crfl", "p_b", p_b, low=0.0, high=1.0)
    if p_a <= p_b:
        return 0.0
    gap = (math.sqrt(p_a) - math.sqrt(p_b)) ** 2
    if gap >= 1.0:
        return math.inf
    sigmas = [setting.sigma] * (len(setting.rhos) - 1) + [setting.sigma_test]
    contraction = math.prod(
        2 * norm.cdf(rho / s) - 1 for rho, s in zip(setting.rhos, sigmas, strict=True)
    )
    weights = sum(p * p for p in setting.attacker_weights)
    denominator = (
        2
        * len(setting.attacker_weights)
        * (setting.local_iters * setting.lipschitz * setting.scale * setting.lr) ** 2
        * (setting.poison_per_batch / setting.batch_size) ** 2
        * weights
        * contraction
    )
    return math.sqrt(-(setting.sigma**2) * math.log1p(-gap) / denominator)


class ParameterSmoothing:
    r"""CRFL's test-time step: vote of M models :math:`\Pi_\rho(w_T) + N(0, \sigma_T^2 I)`.

    :math:`\Pi_\rho(w) = w \min(1, \rho/\lVert w\rVert_2)` clips the flat parameter vector (the
    model's ``parameters()``, buffers untouched) as in training; each of the M copies draws
    fresh noise from the caller's generator and classifies every sample once. Per sample,
    :math:`\hat c_A` is the most frequent class (ties: the lowest index), :math:`n_A` its votes,
    :math:`\underline{p_A}` = :func:`~fedsim.certify.lower_confidence_bound` (n_A, M, α); it
    abstains when :math:`\underline{p_A} \le 1/2`, else its radius is
    :func:`crfl_radius` (:math:`\underline{p_A}, 1 - \underline{p_A}`). Unlike Cohen et
    al.'s CERTIFY there is no separate selection sample: the authors' code also votes and
    bounds on the same M draws, and :math:`\hat c_A` does not depend on the draw order.

    Parameters
    ----------
    sigma_test : float
        σ_T > 0, the noise std on every parameter.
    rho : float
        ρ > 0, the clipping bound (the run's ``defense.crfl.rho``).
    models : int
        M ≥ 1 noisy copies.
    alpha : float
        Failure probability, 0 < α < 1.

    Raises
    ------
    InvalidSettingError
        On a setting outside the ranges above.

    Examples
    --------
    >>> lin = nn.Linear(2, 2)
    >>> _ = lin.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    >>> _ = lin.bias.data.zero_()
    >>> smoothing = ParameterSmoothing(sigma_test=0.01, rho=10.0, models=100, alpha=0.001)
    >>> x, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])
    >>> votes = smoothing.votes(lin, torch.cat([lin.weight.flatten(), lin.bias]), x,
    ...                         torch.Generator().manual_seed(0))
    >>> votes.tolist()
    [[100, 0], [0, 100]]
    >>> s = CRFLSetting(1.0, 1.0, [40.0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, [1.0])
    >>> [(c.prediction, c.count, round(c.radius, 4)) for c in smoothing.certify(votes, y, s)]
    [(0, 100, 0.5894), (1, 100, 0.5894)]
    """

    def __init__(
        self, sigma_test: float, rho: float, models: int = 100, alpha: float = 0.001
    ) -> None:
        rule = "crfl certification"
        self.sigma_test = require_real(rule, "sigma_test", sigma_test, low=0.0, low_open=True)
        self.rho = require_real(rule, "rho", rho, low=0.0, low_open=True)
        self.models = require_int(rule, "models", models, minimum=1)
        self.alpha = require_real(
            rule, "alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True
        )

    def votes(
        self, model: nn.Module, params: torch.Tensor, x: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Votes ``(B, K)`` int64: how many of the M noisy models put each sample in each class.

        ``model`` is a scratch copy of the architecture (its parameters are overwritten);
        ``params`` the flat global vector w_T.
        """
        w = params.detach().to(torch.float64).cpu()
        w = w * min(1.0, self.rho / max(float(torch.linalg.vector_norm(w)), 1e-300))
        if not bool(torch.isfinite(w).all()):
            raise InvalidSettingError("crfl certification needs finite global parameters")
        votes: torch.Tensor | None = None
        with attack_mode(model), torch.no_grad():
            for _ in range(self.models):
                noise = torch.randn(w.shape, generator=generator, dtype=torch.float64)
                load_flat_params(model, w + self.sigma_test * noise)
                logits = model(x)
                top = logits.argmax(dim=1).cpu()
                if votes is None:
                    votes = torch.zeros(len(x), logits.shape[1], dtype=torch.int64)
                votes[torch.arange(len(x)), top] += 1
        assert votes is not None
        return votes

    def certify(
        self, votes: torch.Tensor, y: torch.Tensor, setting: CRFLSetting
    ) -> list[Certificate]:
        """One :class:`~fedsim.certify.Certificate` per sample, its radius under ``setting``."""
        return [
            Certificate(
                label=int(label),
                prediction=ABSTAIN if radius is None else top,
                count=count,
                n=int(row.sum()),
                radius=0.0 if radius is None else radius,
            )
            for row, label in zip(votes, y.tolist(), strict=True)
            for top, count, radius in [self._one(row, setting)]
        ]

    def radii(self, votes: torch.Tensor, setting: CRFLSetting) -> list[float]:
        """Each sample's certified radius under ``setting`` (0 on abstention)."""
        return [self._one(row, setting)[2] or 0.0 for row in votes]

    def _one(self, row: torch.Tensor, setting: CRFLSetting) -> tuple[int, int, float | None]:
        """Top class, its votes, and the radius (``None``: abstain) of one sample's votes."""
        top = int(row.argmax())
        count = int(row[top])
        p_lower = lower_confidence_bound(count, int(row.sum()), self.alpha)
        if p_lower <= 0.5:
            return top, count, None
        return top, count, crfl_radius(p_lower, 1.0 - p_lower, setting)
