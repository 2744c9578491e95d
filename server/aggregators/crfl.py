"""CRFL: clip and perturb the global model each round; certify by parameter smoothing.

The rule API sees a round's *updates*, not the global model, so CRFL's server step is a pure
function for the strategy to call on the new global vector (see :func:`crfl_clip_and_perturb`);
the certification side is :func:`certified_radius` and :func:`certified_accuracy`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, norm

from fedsim.errors import InvalidSettingError
from server.aggregators.common import clip_to_norm, require_real

__all__ = [
    "CRFLSetting",
    "certified_accuracy",
    "certified_radius",
    "clopper_pearson_lower",
    "crfl_clip_and_perturb",
]


def crfl_clip_and_perturb(
    global_params: torch.Tensor, rho: float, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    r"""Return CRFL's server step :math:`w \min(1, \rho/\|w\|_2) + \mathcal N(0, \sigma^2 I)`.

    w is the global model's flat parameter vector after aggregation (full weights, not a
    delta), ρ the round's parameter-norm bound and σ the noise std; the noise comes from
    ``generator`` (σ = 0 draws nothing). The result is float64.

    Parameters
    ----------
    global_params : torch.Tensor
        w, shape ``(d,)``.
    rho : float
        ρ > 0.
    sigma : float
        σ ≥ 0.
    generator : torch.Generator
        The noise source (the strategy's own, seeded once per run).

    Returns
    -------
    torch.Tensor
        The new global vector, float64, shape ``(d,)``.

    Raises
    ------
    InvalidSettingError
        ρ ≤ 0 or σ < 0.

    Examples
    --------
    >>> w = torch.tensor([3.0, 4.0, 0.0])
    >>> crfl_clip_and_perturb(w, 1.0, 0.0, torch.Generator()).round(decimals=12).tolist()
    [0.6, 0.8, 0.0]
    """
    rho = require_real("crfl", "rho", rho, low=0.0, low_open=True)
    sigma = require_real("crfl", "sigma", sigma, low=0.0)
    clipped, _ = clip_to_norm(global_params.to(torch.float64).reshape(1, -1), rho)
    out = clipped[0]
    if sigma > 0:
        out = out + sigma * torch.randn(out.shape, generator=generator, dtype=torch.float64)
    return out


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


def certified_radius(p_a: float, p_b: float, setting: CRFLSetting) -> float:
    r"""Return CRFL's certified bound on the backdoor magnitude ‖δ‖ for one test sample.

    .. math::
        \mathrm{RAD} = \sqrt{\frac{-\sigma^2 \ln\big(1 - (\sqrt{p_A} - \sqrt{p_B})^2\big)}
        {2 R \tau^2 L_Z^2 \gamma^2 \eta^2 (q_B/n_B)^2 \sum_{i=1}^R p_i^2
         \prod_{t=t_{adv}+1}^{T} \big(2\Phi(\rho_t/\sigma_t) - 1\big)}}

    with :math:`p_A` (a lower bound on) the probability of the top class and :math:`p_B`
    (an upper bound on) the runner-up's under parameter smoothing, Φ the standard normal
    CDF, :math:`\sigma_t = \sigma` for t < T and :math:`\sigma_T` = ``sigma_test``; the other
    symbols are :class:`CRFLSetting`'s. This is the form the authors' certification code
    evaluates (``cal_prob_bound`` in github.com/AI-secure/CRFL, the paper's Theorem 3 with a
    Hellinger-distance bound). The prediction is certified for every backdoor with
    ‖δ‖ < RAD. Returns 0 when :math:`p_A \le p_B` and ∞ when :math:`p_A = 1, p_B = 0`.

    Examples
    --------
    >>> s = CRFLSetting(1.0, 1.0, [40.0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, [1.0])
    >>> round(certified_radius(0.9, 0.1, s), 6)  # √(−ln 0.6 / 2)
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


def clopper_pearson_lower(successes: int, trials: int, alpha: float) -> float:
    """Return the one-sided (1 − α) Clopper–Pearson lower bound on a binomial proportion.

    Examples
    --------
    >>> round(clopper_pearson_lower(100, 100, 0.001), 6)  # α^(1/M) when every draw succeeds
    0.933254
    """
    if successes <= 0:
        return 0.0
    return float(beta.ppf(alpha, successes, trials - successes + 1))


def certified_accuracy(
    counts: np.ndarray,
    labels: np.ndarray,
    radii: Sequence[float],
    setting: CRFLSetting,
    alpha: float = 0.001,
) -> list[float]:
    r"""Return the certified accuracy at each radius from Monte-Carlo class counts.

    ``counts[s, c]`` is how many of the M smoothed models (M = the row sum) predict class c
    on test sample s. Per sample: A = argmax (ties to the lower class),
    :math:`\underline{p_A}` = :func:`clopper_pearson_lower` (count_A, M, α),
    :math:`\overline{p_B} = 1 - \underline{p_A}` (Cohen et al.'s choice), radius =
    :func:`certified_radius`. The certified accuracy at r is the share of samples with
    A = label and radius ≥ r (a sample with :math:`\underline{p_A} \le 1/2` abstains).

    Examples
    --------
    >>> s = CRFLSetting(1.0, 1.0, [40.0], 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, [1.0])
    >>> counts = np.array([[100, 0], [0, 100], [50, 50]])
    >>> certified_accuracy(counts, np.array([0, 0, 0]), [0.0, 0.5, 2.0], s)
    [0.3333333333333333, 0.3333333333333333, 0.0]
    """
    alpha = require_real("crfl", "alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
    counts = np.asarray(counts)
    predicted = counts.argmax(axis=1)
    radius = np.zeros(len(counts))
    for s, row in enumerate(counts):
        p_a = clopper_pearson_lower(int(row[predicted[s]]), int(row.sum()), alpha)
        radius[s] = certified_radius(p_a, 1.0 - p_a, setting) if p_a > 0.5 else -1.0
    correct = predicted == np.asarray(labels)
    return [float(np.mean(correct & (radius >= r))) for r in radii]
