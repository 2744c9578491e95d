r"""BPDA + EOT: gradient attacks through a purifier (Athalye, Carlini and Wagner, ICML 2018).

A purifier :math:`P` in front of a classifier :math:`f` often has no useful gradient
(bit-depth reduction is piecewise constant) or a random one (noise, diffusion). Backward
Pass Differentiable Approximation (BPDA, their Section 4.1) keeps :math:`f(P(x))` in the
forward pass and replaces :math:`\partial P/\partial x` by the identity in the backward pass
(the straight-through estimator, since :math:`P(x) \approx x`):

.. math:: \nabla_x J\bigl(f(P(x))\bigr) \approx \nabla_z J\bigl(f(z)\bigr)\big|_{z = P(x)}.

Expectation over Transformation (EOT, their Section 4.3) attacks a randomized :math:`P`
through :math:`\nabla_x\, \mathbb{E}_P[J(f(P(x)))] \approx \frac{1}{m}\sum_{j=1}^{m}
\nabla_x J(f(P_j(x)))` with m independent draws :math:`P_j`, as in their code (the loss averaged
over a tiled batch of draws). Inputs are [0, 1] pixels (:mod:`fedsim.evasion.pixel_space`).

An attacker who knows the defence can also try the example crafted on f alone, so the adaptive
attack's first candidate is the non-adaptive PGD example (``transfer_start``): an adaptive
evaluation should subsume the non-adaptive one (Athalye et al., ICML 2018; Tramèr, Carlini,
Brendel and Madry, "On adaptive attacks to adversarial example defenses", NeurIPS 2020).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.pgd import PGD
from fedsim.purification.base import Purifier
from fedsim.validation import require_int

__all__ = ["BPDA", "BPDAEOT", "eot_estimate", "keep_worse_for_defender", "straight_through"]


class _StraightThrough(torch.autograd.Function):
    """Forward: the purified tensor; backward: the gradient passed to ``x`` unchanged."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, purified: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return purified.clone()

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return grad, None


def straight_through(x: torch.Tensor, purified: torch.Tensor) -> torch.Tensor:
    r"""The value of ``purified`` with the gradient of the identity in ``x``.

    Works under :func:`torch.func.grad` (the attacks' :func:`~fedsim.evasion.core.input_gradient`).

    Examples
    --------
    >>> x = torch.tensor([0.2, 0.7], requires_grad=True)
    >>> out = straight_through(x, torch.round(x.detach()))
    >>> out.tolist()
    [0.0, 1.0]
    >>> (3 * out).sum().backward(); x.grad.tolist()
    [3.0, 3.0]
    """
    if purified.shape != x.shape:
        raise InvalidSettingError(
            f"BPDA needs a purifier that keeps the shape, got {tuple(purified.shape)} "
            f"for {tuple(x.shape)}"
        )
    return _StraightThrough.apply(x, purified.detach())


def eot_estimate(
    through: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, draws: int
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""The attacker's estimate of how ``x`` fares through a randomized purifier: m draws.

    .. math:: \hat a_i = \frac1m \sum_{j=1}^{m} [\arg\max f(P_j(x_i)) = y_i], \qquad
        \hat p_i = \frac1m \sum_{j=1}^{m} \mathrm{softmax}(f(P_j(x_i)))_{y_i}

    with :math:`f(P_j(\cdot))` = ``through`` called m = ``draws`` times (each call one draw
    from the attacker's generator). Lower is worse for the defender.

    Examples
    --------
    >>> logits = iter([torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])])
    >>> a, p = eot_estimate(lambda z: next(logits), torch.zeros(1, 2), torch.tensor([0]), 2)
    >>> a.tolist(), round(p.item(), 4)  # one draw of two correct; (0.8808 + 0.1192) / 2
    ([0.5], 0.5)
    """
    correct = torch.zeros(len(y), device=y.device)
    prob = torch.zeros(len(y), device=y.device)
    with torch.no_grad():
        for _ in range(draws):
            logits = through(x)
            correct += (logits.argmax(dim=1) == y).float()
            prob += torch.softmax(logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)
    return correct / draws, prob / draws


def keep_worse_for_defender(
    best: torch.Tensor,
    key: tuple[torch.Tensor, torch.Tensor],
    candidate: torch.Tensor,
    estimate: tuple[torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Per sample, ``candidate`` replaces ``best`` only where its estimate is strictly worse.

    Estimates are :func:`eot_estimate`'s (share correct, mean correct-class probability),
    compared in that order; on a tie the earlier candidate (the non-adaptive one first) stays.

    Examples
    --------
    >>> best, cand = torch.tensor([[1.0], [2.0], [3.0]]), torch.full((3, 1), 9.0)
    >>> key = (torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.4, 0.4, 0.4]))
    >>> estimate = (torch.tensor([0.25, 0.5, 0.5]), torch.tensor([0.9, 0.3, 0.4]))
    >>> new, (a, p) = keep_worse_for_defender(best, key, cand, estimate)
    >>> new.flatten().tolist(), a.tolist(), [round(v, 2) for v in p.tolist()]
    ([9.0, 9.0, 3.0], [0.25, 0.5, 0.5], [0.9, 0.3, 0.4])
    """
    (a, p), (a_new, p_new) = key, estimate
    worse = (a_new < a) | ((a_new == a) & (p_new < p))
    take = worse.view(-1, *([1] * (best.dim() - 1)))
    return torch.where(take, candidate, best), (
        torch.where(worse, a_new, a),
        torch.where(worse, p_new, p),
    )


class BPDA(nn.Module):
    r"""The classifier behind a purifier, f(P(x)), with BPDA's backward pass: dP/dx := I.

    A model of [0, 1] pixels that any gradient attack (:class:`~fedsim.evasion.pgd.PGD`) can
    take. A randomized purifier draws from ``generator`` on every call (one EOT draw).

    Parameters
    ----------
    model : nn.Module
        The classifier f, a model of [0, 1] pixels.
    purifier : Purifier
        P, from :mod:`fedsim.purification`.
    generator : torch.Generator or None
        For a randomized purifier's draws.

    Examples
    --------
    >>> from fedsim.purification import BitDepth
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 1, bias=False))
    >>> _ = lin[1].weight.data.copy_(torch.tensor([[2.0, -1.0]]))
    >>> x = torch.tensor([[[[0.2, 0.7]]]])
    >>> BPDA(lin, BitDepth(bits=1))(x).item()  # f(P(x)) = 2·0 − 1·1
    -1.0
    >>> torch.func.grad(lambda z: BPDA(lin, BitDepth(bits=1))(z).sum())(x).flatten().tolist()
    [2.0, -1.0]
    >>> torch.func.grad(lambda z: lin(BitDepth(bits=1)(z)).sum())(x).flatten().tolist()
    [0.0, 0.0]
    """

    def __init__(
        self, model: nn.Module, purifier: Purifier, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if not callable(purifier):
            raise InvalidSettingError(f"BPDA needs a callable purifier, got {purifier!r}")
        self.model = model
        self.purifier = purifier
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the purified inputs; gradients reach ``x`` as if P were the identity."""
        return self.model(straight_through(x, self.purifier(x.detach(), self.generator)))


class BPDAEOT(PGD):
    r"""PGD through a purifier with BPDA and EOT (Athalye et al., ICML 2018).

    Each PGD step (:class:`~fedsim.evasion.pgd.PGD`, same settings and defaults) follows

    .. math:: \frac{1}{m} \sum_{j=1}^{m} \nabla_z \mathrm{CE}\bigl(f(z), y\bigr)
        \big|_{z = P_j(x^t)}

    over ``eot`` = m draws of P (:class:`BPDA` per draw).

    Which candidate a sample keeps depends on P:

    - **deterministic** P: success is judged exactly, on f(P(x')), and each sample keeps its
      first success (:meth:`~fedsim.evasion.pgd.PGD.restarts_of`).
    - **randomized** P (diffusion): one draw of P is a coin flip, not a verdict, so every
      candidate x' is judged by the attacker's own EOT estimate over m fresh draws
      :math:`P_1, \dots, P_m` from ``generator`` (:func:`eot_estimate`): the share of draws
      classified correctly, :math:`\hat a = \frac1m\sum_j [f(P_j(x')) = y]`, ties broken by
      the mean correct-class probability :math:`\hat p = \frac1m\sum_j
      \mathrm{softmax}(f(P_j(x')))_y`. Each sample keeps the candidate that is worst for the
      defender, replacing it only where a later one is strictly worse
      (:func:`keep_worse_for_defender`). The attacker never sees the draws the evaluation
      scores with (:class:`~fedsim.evasion.purified.Purified` with ``fixed_draws``).

    With ``transfer_start`` the first candidate is the non-adaptive example: PGD on f alone
    (same ε, T, α, norm and restarts, its random starts drawn first from ``generator``), judged
    like every other candidate; the restarts then try to beat it. So every sample that
    non-adaptive PGD, run from the same generator state, fools through a deterministic P is
    fooled here too: robust accuracy adaptive ≤ non-adaptive, exactly. Through a randomized P
    the same holds for the attacker's estimate, and where no restart is strictly worse the
    example returned *is* the non-adaptive one, so an evaluation with common random numbers
    (:func:`~fedsim.evasion.evaluation.robust_accuracy`: every attack from the same generator
    state, every example scored with the same draw) gives both the same verdict. An adaptive
    evaluation subsumes the non-adaptive one (Tramèr et al., NeurIPS 2020). With P the
    identity and m = 1 it is PGD with 2R restarts (R without ``transfer_start``).

    Parameters
    ----------
    purifier : Purifier
        P, from :mod:`fedsim.purification`.
    eps, steps, alpha, norm, restarts, random_start
        As :class:`~fedsim.evasion.pgd.PGD`.
    eot : int
        Draws m ≥ 1 per gradient (1 for a deterministic purifier).
    transfer_start : bool
        Try the non-adaptive PGD example first (default ``True``).

    Examples
    --------
    >>> from fedsim.purification import BitDepth
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    >>> _ = lin[1].weight.data.copy_(torch.eye(2))
    >>> attack = BPDAEOT(BitDepth(bits=2), eps=0.2, steps=10, eot=1)
    >>> attack.label
    'pgd_bpda_eot-linf-0.2'
    >>> x = torch.tensor([[[[0.6, 0.4]]]])
    >>> x_adv = attack(lin, x, torch.tensor([0]), torch.Generator().manual_seed(0))
    >>> [round(v, 4) for v in x_adv.flatten().tolist()]
    [0.4, 0.6]
    >>> lin(BitDepth(bits=2)(x_adv)).argmax(dim=1).item()  # P(x') = (1/3, 2/3): fooled
    1
    """

    name = "pgd_bpda_eot"

    def __init__(
        self,
        purifier: Purifier,
        eps: float,
        steps: int = 10,
        alpha: float | None = None,
        norm: str = "linf",
        restarts: int = 1,
        random_start: bool = True,
        eot: int = 1,
        transfer_start: bool = True,
    ) -> None:
        super().__init__(eps, steps, alpha, norm, restarts, random_start)
        if not callable(purifier):
            raise InvalidSettingError(f"{self.name} needs a callable purifier, got {purifier!r}")
        self.purifier = purifier
        self.eot = require_int(self.name, "eot", eot, minimum=1)
        if not isinstance(transfer_start, bool):
            raise InvalidSettingError(
                f"{self.name} needs transfer_start true or false, got {transfer_start!r}"
            )
        self.transfer_start = transfer_start

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """The non-adaptive example first, then PGD's restarts with :meth:`through`'s gradient.

        The restarts follow the EOT-averaged gradient of :meth:`through` (BPDA's here).
        """
        through = self.through(model, generator)
        m, tiled = self.eot, y.repeat(self.eot)

        def forward(z: torch.Tensor) -> torch.Tensor:
            return torch.cat([through(z) for _ in range(m)])  # (m·B, K): draw-major

        def objective(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, tiled, reduction="sum") / m

        if getattr(self.purifier, "randomized", False):
            return self._worst_by_estimate(model, forward, objective, through, x, y, generator)
        best = done = None
        if self.transfer_start:  # PGD on f alone, judged through P like every candidate
            best = PGD.generate(self, model, x, y, generator)
            with torch.no_grad():
                done = through(best).argmax(dim=1) != y
        return self.restarts_of(forward, objective, through, x, y, generator, best, done)

    def _worst_by_estimate(
        self,
        model: nn.Module,
        forward: Callable[[torch.Tensor], torch.Tensor],
        objective: Callable[[torch.Tensor], torch.Tensor],
        through: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Randomized P: every candidate judged by :func:`eot_estimate`, the worst one kept."""
        best = key = None
        if self.transfer_start:
            best = PGD.generate(self, model, x, y, generator)
            key = eot_estimate(through, best, y, self.eot)
        for _ in range(self.restarts):
            if key is not None and bool((key[0] == 0).all()):
                break  # every sample misclassified on every draw the attacker made
            candidate = self.restart(forward, objective, x, generator)
            estimate = eot_estimate(through, candidate, y, self.eot)
            if best is None or key is None:
                best, key = candidate, estimate
            else:
                best, key = keep_worse_for_defender(best, key, candidate, estimate)
        if best is None:
            raise InvalidSettingError(f"{self.name} ran no candidate")
        return best

    def through(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """f(P(x)) as the attacker differentiates it: BPDA's straight-through P."""
        return BPDA(model, self.purifier, generator)
