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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.pgd import PGD
from fedsim.purification.base import Purifier
from fedsim.validation import require_int

__all__ = ["BPDA", "BPDAEOT", "straight_through"]


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

    over ``eot`` = m draws of P (:class:`BPDA` per draw). Success (and a restart's keeping) is
    judged on one fresh draw, :math:`f(P(x'))`.

    With ``transfer_start`` the first candidate is the non-adaptive example: PGD on f alone
    (same ε, T, α, norm and restarts, its random starts drawn first from ``generator``), judged
    through :math:`f(P(\cdot))` on one draw of P; the EOT restarts then replace only the samples
    it did not fool (:meth:`~fedsim.evasion.pgd.PGD.restarts_of` keeps each sample's first
    success). So every sample that non-adaptive PGD, run from the same generator state, fools
    through a deterministic P is fooled here too: robust accuracy adaptive ≤ non-adaptive,
    exactly. For a randomized P (diffusion) the judge is a fresh draw, so the guarantee holds
    per draw. An adaptive evaluation subsumes the non-adaptive one (Tramèr et al., NeurIPS
    2020). With P the identity and m = 1 it is PGD with 2R restarts (R without
    ``transfer_start``).

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
        best = done = None
        if self.transfer_start:  # PGD on f alone, judged through P like every candidate
            best = PGD.generate(self, model, x, y, generator)
            with torch.no_grad():
                done = through(best).argmax(dim=1) != y
        m, tiled = self.eot, y.repeat(self.eot)

        def forward(z: torch.Tensor) -> torch.Tensor:
            return torch.cat([through(z) for _ in range(m)])  # (m·B, K): draw-major

        def objective(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, tiled, reduction="sum") / m

        return self.restarts_of(forward, objective, through, x, y, generator, best, done)

    def through(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """f(P(x)) as the attacker differentiates it: BPDA's straight-through P."""
        return BPDA(model, self.purifier, generator)
