"""Adversarial-training losses for honest clients: PGD-AT, TRADES and FAT, per batch.

:class:`AdversarialTraining` holds the validated ``clients.adversarial_training`` settings. Its
parts are pure, so the client's local loop and the vectorized runtime call the same code:

- :meth:`~AdversarialTraining.draw` takes every random draw of a batch from a generator
  (random start, and for FAT which samples are replaced);
- :meth:`~AdversarialTraining.craft` runs the attack (:func:`~fedsim.evasion.core.perturb`) on a
  ``forward`` callable and returns detached examples;
- :meth:`~AdversarialTraining.objective` is the training loss given those examples;
- :meth:`~AdversarialTraining.loss` = craft then objective, a function of (forward, x, y, draw)
  that runs under :func:`torch.func.grad` and :func:`torch.func.vmap` over clients' parameters;
- ``settings(model, x, y, generator)`` is the eager client-loop form: the attack runs with the
  model in eval mode and frozen (:func:`~fedsim.evasion.base.attack_mode`), the loss in the
  model's own mode with gradients to its parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import attack_mode, check_alpha, check_eps, check_norm, check_steps
from fedsim.evasion.core import Forward, cross_entropy_objective, perturb, project, uniform_ball
from fedsim.validation import require_real

__all__ = [
    "AdversarialDraw",
    "AdversarialTraining",
    "METHODS",
    "prediction_entropy",
    "trades_kl",
]

METHODS = ("fat", "pgd", "trades")
TRADES_START_STD = 0.001
"""TRADES starts its inner maximisation at x + 0.001·N(0, I) (Zhang et al.'s code)."""


@dataclass(frozen=True)
class AdversarialDraw:
    """The random draws of one batch: the attack's first iterate and the samples replaced."""

    start: torch.Tensor
    replace: torch.Tensor


def prediction_entropy(logits: torch.Tensor) -> torch.Tensor:
    r"""Per-sample entropy :math:`H(p) = -\sum_k p_k \log p_k` of :math:`p = \mathrm{softmax}(z)`.

    Examples
    --------
    >>> [round(h, 4) for h in prediction_entropy(torch.tensor([[0.0, 0.0], [50.0, 0.0]])).tolist()]
    [0.6931, 0.0]
    """
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(dim=1)


def trades_kl(logits_clean: torch.Tensor, logits_adv: torch.Tensor) -> torch.Tensor:
    r"""Per-sample :math:`\mathrm{KL}(f(x) \,\|\, f(x')) = \sum_k p_k (\log p_k - \log p'_k)`.

    With :math:`p = \mathrm{softmax}(f(x))`, :math:`p' = \mathrm{softmax}(f(x'))` (TRADES' boundary
    term, Zhang et al., ICML 2019).

    Examples
    --------
    >>> trades_kl(torch.tensor([[1.0, 2.0]]), torch.tensor([[1.0, 2.0]])).tolist()
    [0.0]
    """
    logp = F.log_softmax(logits_clean, dim=1)
    logq = F.log_softmax(logits_adv, dim=1)
    return (logp.exp() * (logp - logq)).sum(dim=1)


class AdversarialTraining:
    r"""Validated adversarial-training settings and the per-batch loss they define.

    With :math:`x'` the examples crafted in the ε-ball (:math:`T` steps of size α,
    :func:`~fedsim.evasion.core.perturb`), :math:`\mathrm{CE}` averaged over the batch and
    :math:`H` the entropy of :func:`prediction_entropy` averaged over the adversarial samples:

    - ``pgd`` (Madry et al., ICLR 2018): :math:`\mathrm{CE}(f(x'), y) - \lambda H(f(x'))`, x'
      maximising CE from a uniform random start in the ball;
    - ``fat`` (Zizzo et al., "FAT: Federated Adversarial Training", NeurIPS-W 2020): the same on
      a batch whose ``ratio`` share of samples (drawn per batch) is replaced by their x';
    - ``trades`` (Zhang et al., ICML 2019): :math:`\mathrm{CE}(f(x), y) + \beta \frac{1}{B}
      \sum_i \mathrm{KL}(f(x_i) \| f(x'_i)) - \lambda H(f(x'))`, x' maximising the KL from
      :math:`x + 0.001\,N(0, I)`.

    The entropy term (λ = ``entropy_weight`` ≥ 0) rewards high-entropy, i.e. less
    over-confident, predictions on adversarial inputs: the loss *decreases* by λ·H, so
    minimising it raises H (a calibration-aware regulariser; λ = 0 turns it off).

    Parameters
    ----------
    method : {"pgd", "trades", "fat"}
    eps : float
        Radius ε ≥ 0.
    steps : int
        Attack iterations T ≥ 1.
    alpha : float or None
        Step α > 0; default 2.5 ε/T.
    ratio : float or None
        FAT's replaced share in (0, 1] (default 1); ``pgd`` and ``trades`` attack every sample
        and reject another value.
    beta : float or None
        TRADES' β ≥ 0 (default 6, the paper's 1/λ); only for ``trades``.
    entropy_weight : float
        λ ≥ 0.
    norm : {"linf", "l2"}

    Raises
    ------
    InvalidSettingError
        On an unknown method or norm, a setting out of range, or a setting the method does not
        use (``ratio`` ≠ 1 outside ``fat``, ``beta`` outside ``trades``).

    Examples
    --------
    >>> at = AdversarialTraining("pgd", eps=0.1, steps=10, alpha=0.025)
    >>> lin = nn.Linear(2, 2)
    >>> x = torch.rand(4, 2, generator=torch.Generator().manual_seed(0))
    >>> y = torch.tensor([0, 1, 0, 1])
    >>> loss = at(lin, x, y, torch.Generator().manual_seed(1))
    >>> loss.shape, loss.requires_grad
    (torch.Size([]), True)
    >>> AdversarialTraining("pgd", eps=0.1, ratio=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    fedsim.errors.InvalidSettingError: adversarial training 'pgd' attacks every sample ...
    """

    def __init__(
        self,
        method: str = "pgd",
        eps: float = 0.1,
        steps: int = 10,
        alpha: float | None = None,
        ratio: float | None = None,
        beta: float | None = None,
        entropy_weight: float = 0.0,
        norm: str = "linf",
    ) -> None:
        rule = "adversarial training"
        if method not in METHODS:
            raise InvalidSettingError(f"{rule} needs method in {METHODS}, got {method!r}")
        self.method = method
        self.eps = check_eps(rule, eps)
        self.steps = check_steps(rule, steps)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else check_alpha(rule, alpha)
        self.norm = check_norm(rule, norm)
        if ratio is not None:
            ratio = require_real(rule, "ratio", ratio, low=0.0, high=1.0, low_open=True)
            if method != "fat" and ratio != 1.0:
                raise InvalidSettingError(
                    f"{rule} {method!r} attacks every sample (ratio 1), got ratio={ratio}; "
                    "use method 'fat' to replace a share of each batch"
                )
        self.ratio = 1.0 if ratio is None else ratio
        if beta is not None and method != "trades":
            raise InvalidSettingError(
                f"{rule} {method!r} has no beta (TRADES' KL weight), got beta={beta}; "
                "drop it or use method 'trades'"
            )
        self.beta = 6.0 if beta is None else require_real(rule, "beta", beta, low=0.0)
        self.entropy_weight = require_real(rule, "entropy_weight", entropy_weight, low=0.0)

    def __repr__(self) -> str:
        unused = {"pgd": {"ratio", "beta"}, "fat": {"beta"}, "trades": {"ratio"}}[self.method]
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k not in unused)
        return f"AdversarialTraining({fields})"

    def draw(self, x: torch.Tensor, generator: torch.Generator) -> AdversarialDraw:
        """Every random draw of one batch, from ``generator`` (moved to ``x``'s device).

        ``pgd``/``fat``: ``clip(x + δ)`` with δ uniform in the ball; ``trades``:
        ``x + 0.001·ξ``, ξ ~ N(0, I). ``fat`` then draws which ``round(ratio·B)`` samples
        (at least one) are replaced.
        """
        b = len(x)
        if self.method == "trades":
            noise = torch.randn(x.shape, generator=generator, device=generator.device)
            start = x + TRADES_START_STD * noise.to(x.device, x.dtype)
        else:
            delta = uniform_ball(x.shape, self.eps, self.norm, generator).to(x.device, x.dtype)
            start = project(x + delta, x, self.eps, self.norm)
        replace = torch.ones(b, dtype=torch.bool, device=x.device)
        if self.method == "fat" and self.ratio < 1.0:
            k = max(1, round(self.ratio * b))
            chosen = torch.randperm(b, generator=generator, device=generator.device)[:k]
            replace = torch.zeros(b, dtype=torch.bool, device=x.device)
            replace[chosen.to(x.device)] = True
        return AdversarialDraw(start.detach(), replace)

    def craft(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, draw: AdversarialDraw
    ) -> torch.Tensor:
        """The batch's adversarial examples (detached); ``forward`` as the attacker sees it."""
        if self.method == "trades":
            p_clean = F.softmax(forward(x), dim=1).detach()

            def objective(logits: torch.Tensor) -> torch.Tensor:
                logq = F.log_softmax(logits, dim=1)
                return (p_clean * (p_clean.clamp_min(1e-12).log() - logq)).sum()

        else:
            objective = cross_entropy_objective(y)
        return perturb(
            forward,
            objective,
            x,
            draw.start,
            eps=self.eps,
            alpha=self.alpha,
            steps=self.steps,
            norm=self.norm,
        )

    def objective(
        self,
        forward: Forward,
        x: torch.Tensor,
        y: torch.Tensor,
        x_adv: torch.Tensor,
        draw: AdversarialDraw,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The training loss of the batch given its adversarial examples (see the class).

        ``weight`` (0/1 per sample, the vectorized runtime's padding mask) turns every mean
        over the batch into a mean over the samples of weight 1; ``None``: all of them.
        """
        mask = draw.replace
        if self.method == "trades":
            logits_clean = forward(x)
            logits_adv = forward(x_adv)
            if weight is None:
                loss = (
                    F.cross_entropy(logits_clean, y)
                    + self.beta * trades_kl(logits_clean, logits_adv).mean()
                )
            else:
                per_sample = F.cross_entropy(logits_clean, y, reduction="none") + self.beta * (
                    trades_kl(logits_clean, logits_adv)
                )
                loss = (per_sample * weight).sum() / weight.sum()
        else:
            inputs = torch.where(mask.view(-1, *([1] * (x.dim() - 1))), x_adv, x)
            logits_adv = forward(inputs)
            if weight is None:
                loss = F.cross_entropy(logits_adv, y)
            else:
                ce = F.cross_entropy(logits_adv, y, reduction="none")
                loss = (ce * weight).sum() / weight.sum()
        if self.entropy_weight:
            h = prediction_entropy(logits_adv)
            m = mask.to(h.dtype) if weight is None else mask.to(h.dtype) * weight
            loss = loss - self.entropy_weight * (h * m).sum() / m.sum().clamp_min(1.0)
        return loss

    def loss(
        self,
        forward: Forward,
        x: torch.Tensor,
        y: torch.Tensor,
        draw: AdversarialDraw,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Craft then objective with one ``forward``: pure, for ``torch.func.grad``/``vmap``."""
        return self.objective(forward, x, y, self.craft(forward, x, y, draw), draw, weight)

    def __call__(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The batch loss for a client loop (``loss.backward()`` then the optimizer step)."""
        draw = self.draw(x, generator)
        with attack_mode(model):
            x_adv = self.craft(model, x, y, draw)
        return self.objective(model, x, y, x_adv, draw)

    @classmethod
    def from_config(cls, block: dict[str, Any]) -> AdversarialTraining:
        """Build from a scenario's ``clients.adversarial_training`` mapping (unknown keys fail)."""
        try:
            return cls(**block)
        except TypeError as e:
            raise InvalidSettingError(f"clients.adversarial_training: {e}") from e
