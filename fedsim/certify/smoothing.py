r"""Randomized smoothing: PREDICT and CERTIFY of Cohen, Rosenfeld and Kolter (ICML 2019).

The smoothed classifier of a base classifier :math:`f` is

.. math:: g(x) = \arg\max_c \; P\bigl(f(x + \varepsilon) = c\bigr), \quad
    \varepsilon \sim N(0, \sigma^2 I).

If the top class has probability at least :math:`\underline{p_A} > 1/2`, then :math:`g` is
constant on the ℓ2 ball of radius :math:`R = \sigma\,\Phi^{-1}(\underline{p_A})` around
:math:`x` (Cohen et al., Theorem 1 with :math:`\overline{p_B} = 1 - \underline{p_A}`).
CERTIFY (their Algorithm 1, right) guesses :math:`\hat c_A` from ``n0`` noisy copies, counts
:math:`n_A` hits of it in ``n`` fresh copies and takes the one-sided :math:`(1-\alpha)`
Clopper–Pearson lower bound :math:`\underline{p_A} = B(\alpha; n_A, n - n_A + 1)`, the
α-quantile of a Beta distribution; it abstains when :math:`\underline{p_A} \le 1/2`. The
certificate holds with probability at least :math:`1 - \alpha` over the noise draws.

**Space.** Noise is added where fedsim's evasion attacks perturb: [0, 1] pixel space
(:mod:`fedsim.evasion.pixel_space`). ``model`` is a model of pixels (wrap a model of
normalised inputs with :func:`~fedsim.evasion.pixel_space.model_in_pixel_space`), σ and the
radius are ℓ2 distances between pixel images, and the noisy copies are *not* clipped to
[0, 1]: as in Cohen et al.'s code, which adds the noise before its normalisation layer.

**Denoised smoothing.** With ``denoiser`` D the base classifier is :math:`f \circ D`: each noisy
copy is denoised before it is classified (Salman et al., NeurIPS 2020; with a diffusion model
as D, Carlini et al., ICLR 2023). D receives the noisy batch and must know σ itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import attack_mode
from fedsim.validation import require_int, require_real

__all__ = [
    "ABSTAIN",
    "Certificate",
    "RandomizedSmoothing",
    "certified_accuracy",
    "certified_radius",
    "lower_confidence_bound",
]

ABSTAIN = -1
"""The prediction of a smoothed classifier that abstains."""

Denoiser = Callable[[torch.Tensor], torch.Tensor]


def lower_confidence_bound(count: int, n: int, alpha: float) -> float:
    r"""One-sided :math:`(1-\alpha)` Clopper–Pearson lower bound on a binomial proportion.

    .. math:: \underline{p} = B(\alpha;\, k,\, n - k + 1) \text{ for } k \ge 1, \qquad
        \underline{p} = 0 \text{ for } k = 0,

    with :math:`B(\alpha; a, b)` the α-quantile of Beta(a, b) (Clopper & Pearson, 1934). It is
    the lower end of statsmodels' ``proportion_confint(k, n, alpha=2α, method="beta")``, the
    call in Cohen et al.'s code. For :math:`k = n`, :math:`\underline{p} = \alpha^{1/n}`.

    Examples
    --------
    >>> round(lower_confidence_bound(1000, 1000, 0.001), 6)  # 0.001 ** (1 / 1000)
    0.993116
    >>> lower_confidence_bound(0, 10, 0.05)
    0.0
    """
    if count == 0:
        return 0.0
    return float(beta.ppf(alpha, count, n - count + 1))


def certified_radius(p_lower: float, sigma: float) -> float:
    r"""The ℓ2 radius :math:`R = \sigma\,\Phi^{-1}(\underline{p_A})`; 0 on abstention.

    Abstention is :math:`\underline{p_A} \le 1/2` (Cohen et al., Algorithm 1).

    Examples
    --------
    >>> round(certified_radius(0.001 ** (1 / 1000), 0.25), 3)  # REFERENCE.md: 0.616
    0.616
    >>> certified_radius(0.5, 0.25)
    0.0
    """
    if p_lower <= 0.5:
        return 0.0
    return float(sigma * norm.ppf(p_lower))


@dataclass(frozen=True)
class Certificate:
    r"""One sample's CERTIFY result: the row of ``RUN_DIR/robustness/certify_round<r>.json``.

    Attributes
    ----------
    label : int
        The true class.
    prediction : int
        :math:`\hat c_A`, or ``-1`` (:data:`ABSTAIN`).
    count : int
        :math:`n_A`, the hits of :math:`\hat c_A` among the ``n`` counting draws.
    n : int
        Counting draws.
    radius : float
        Certified ℓ2 radius in pixel space (0 on abstention).
    """

    label: int
    prediction: int
    count: int
    n: int
    radius: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON row: ``{"label", "prediction", "count", "n", "radius"}``."""
        return asdict(self)


class RandomizedSmoothing:
    r"""Cohen et al.'s PREDICT and CERTIFY for a model of [0, 1] pixels.

    Noisy copies are drawn ``batch_size`` at a time from the caller's ``torch.Generator``, so a
    result is a function of the seed (and of ``batch_size``, which changes how the stream is
    cut).

    Parameters
    ----------
    sigma : float
        Noise level σ > 0 (ℓ2, pixel space).
    n0 : int
        Selection draws (CERTIFY's first stage), ≥ 1.
    n : int
        Counting draws (CERTIFY's second stage, and PREDICT's), ≥ 1.
    alpha : float
        Failure probability, 0 < α < 1.
    batch_size : int
        Noisy copies per forward pass, ≥ 1.
    denoiser : callable or None
        Applied to each noisy batch before ``model`` (denoised smoothing).

    Raises
    ------
    InvalidSettingError
        On a setting outside the ranges above.

    Examples
    --------
    >>> always_zero = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> _ = always_zero[1].weight.data.zero_(); _ = always_zero[1].bias.data.copy_(
    ...     torch.tensor([1.0, 0.0, 0.0]))
    >>> rs = RandomizedSmoothing(sigma=0.25, n0=10, n=1000, alpha=0.001)
    >>> x, y = torch.full((2, 1, 2, 2), 0.5), torch.tensor([0, 1])
    >>> [(c.prediction, c.count, round(c.radius, 3))
    ...  for c in rs.certify(always_zero, x, y, torch.Generator().manual_seed(0))]
    [(0, 1000, 0.616), (0, 1000, 0.616)]
    >>> rs.predict(always_zero, x, torch.Generator().manual_seed(0)).tolist()
    [0, 0]
    """

    def __init__(
        self,
        sigma: float,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        denoiser: Denoiser | None = None,
    ) -> None:
        rule = "randomized smoothing"
        self.sigma = require_real(rule, "sigma", sigma, low=0.0, low_open=True)
        self.n0 = require_int(rule, "n0", n0, minimum=1)
        self.n = require_int(rule, "n", n, minimum=1)
        self.alpha = require_real(
            rule, "alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.batch_size = require_int(rule, "batch_size", batch_size, minimum=1)
        if denoiser is not None and not callable(denoiser):
            raise InvalidSettingError(f"{rule} needs a callable denoiser or None, got {denoiser!r}")
        self.denoiser = denoiser

    def counts(
        self, model: nn.Module, x: torch.Tensor, num: int, generator: torch.Generator
    ) -> torch.Tensor:
        r"""Class counts of ``num`` noisy copies of one input ``x`` ``(C, H, W)``: int64 ``(K,)``.

        The counts of :math:`f(D(x + \varepsilon_i))`, :math:`i = 1, \dots, \mathrm{num}`.
        """
        counts: torch.Tensor | None = None
        left = num
        with torch.no_grad():
            while left > 0:
                m = min(self.batch_size, left)
                noise = torch.randn((m, *x.shape), generator=generator, device=generator.device)
                batch = x.unsqueeze(0) + self.sigma * noise.to(x.device, x.dtype)
                if self.denoiser is not None:
                    batch = self.denoiser(batch)
                logits = model(batch)
                top = logits.argmax(dim=1)
                if counts is None:
                    counts = torch.zeros(logits.shape[1], dtype=torch.int64, device=top.device)
                counts += torch.bincount(top, minlength=len(counts))
                left -= m
        assert counts is not None
        return counts.cpu()

    def predict(
        self, model: nn.Module, x: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        r"""PREDICT (Cohen et al., Algorithm 1, left): the smoothed class, or −1.

        With :math:`n_A \ge n_B` the two largest of ``n`` counts, return :math:`\hat c_A` if the
        two-sided binomial test of :math:`n_A` successes in :math:`n_A + n_B` trials at
        :math:`p = 1/2` has p-value ≤ α, else abstain; it returns a class other than
        :math:`g(x)` with probability at most α (their Theorem 2).
        """
        out = []
        with attack_mode(model):
            for xi in x:
                c = self.counts(model, xi, self.n, generator)
                top2 = torch.topk(c, min(2, len(c)))
                n_a = int(top2.values[0])
                n_b = int(top2.values[1]) if len(c) > 1 else 0
                p = binomtest(n_a, n_a + n_b, 0.5).pvalue
                out.append(int(top2.indices[0]) if p <= self.alpha else ABSTAIN)
        return torch.tensor(out, dtype=torch.int64)

    def certify(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
    ) -> list[Certificate]:
        r"""CERTIFY (Cohen et al., Algorithm 1, right) for each sample of ``x`` ``(B, C, H, W)``.

        :math:`\hat c_A` = the most frequent class in ``n0`` draws (ties: the lowest index);
        :math:`n_A` its count in ``n`` fresh draws; then :func:`lower_confidence_bound` and
        :func:`certified_radius`. Abstention gives ``prediction = -1``, ``radius = 0``.
        """
        if x.dim() < 2 or len(x) != len(y):
            raise InvalidSettingError(
                "randomized smoothing needs x of shape (B, ...) and y of shape (B,), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        records = []
        with attack_mode(model):
            for xi, yi in zip(x, y.tolist(), strict=True):
                guess = int(self.counts(model, xi, self.n0, generator).argmax())
                count = int(self.counts(model, xi, self.n, generator)[guess])
                p_lower = lower_confidence_bound(count, self.n, self.alpha)
                abstain = p_lower <= 0.5
                records.append(
                    Certificate(
                        label=int(yi),
                        prediction=ABSTAIN if abstain else guess,
                        count=count,
                        n=self.n,
                        radius=certified_radius(p_lower, self.sigma),
                    )
                )
        return records


def certified_accuracy(
    records: Iterable[Certificate | Mapping[str, Any]], radii: Sequence[float]
) -> dict[str, float]:
    r"""Certified accuracy at each radius r: the share correct and certified at least r.

    A sample counts at r when ``prediction == label`` and ``radius >= r``.

    The comparison is ≥, as in Cohen et al.'s ``analyze.py`` (``df["correct"] & (df["radius"]
    >= radius)``), so at r = 0 it is the smoothed classifier's clean accuracy without
    abstentions. Keys are ``"r<r:g>"`` (``"r0.25"``); with no records every share is NaN.

    Examples
    --------
    >>> rows = [Certificate(1, 1, 990, 1000, 0.5), Certificate(2, 2, 900, 1000, 0.25),
    ...         Certificate(3, 0, 999, 1000, 0.7), Certificate(4, -1, 400, 1000, 0.0)]
    >>> certified_accuracy(rows, [0.0, 0.25, 0.5, 1.0])
    {'r0': 0.5, 'r0.25': 0.5, 'r0.5': 0.25, 'r1': 0.0}
    """
    rows = [r.to_dict() if isinstance(r, Certificate) else dict(r) for r in records]
    out = {}
    for r in radii:
        radius = require_real("certified_accuracy", "radius", r, low=0.0)
        hits = sum(
            1 for row in rows if row["prediction"] == row["label"] and row["radius"] >= radius
        )
        out[f"r{radius:g}"] = hits / len(rows) if rows else math.nan
    return out
