r"""PGD with exact gradients through a differentiable purifier, averaged over EOT draws.

Where the purifier's forward pass fits in memory with its graph (a diffusion purifier with the
fast few-step sampler, :mod:`fedsim.purification.diffusion`), the adaptive attacker needs no
approximation: each PGD step follows

.. math:: \frac{1}{m} \sum_{j=1}^{m} \nabla_x \mathrm{CE}\bigl(f(P_j(x^t)), y\bigr)

backpropagated through every sampler step of m independent draws :math:`P_j` (Expectation over
Transformation, Athalye, Carlini and Wagner, ICML 2018, Section 4.3; the "full gradient"
evaluation of DiffPure, Nie et al., ICML 2022, and Lee & Kim, ICCV 2023). BPDA
(:class:`~fedsim.evasion.bpda.BPDAEOT`) replaces :math:`\partial P/\partial x` by the identity
instead. Memory grows with the sampler's steps × m × the batch. Inputs are [0, 1] pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.pgd import PGD
from fedsim.evasion.purified import Purified
from fedsim.purification.base import Purifier
from fedsim.validation import require_int

__all__ = ["FullEOT"]


class FullEOT(PGD):
    r"""PGD through a purifier with its true gradient, EOT over ``eot`` draws.

    Each step differentiates :math:`\frac1m\sum_j \mathrm{CE}(f(P_j(x)), y)` end to end; success
    (and a restart's keeping) is judged on one fresh draw :math:`f(P(x'))`. With P the identity
    and m = 1 it is PGD.

    Parameters
    ----------
    purifier : Purifier
        P; its forward pass must be differentiable (bit depth's is zero almost everywhere: use
        BPDA there).
    eps, steps, alpha, norm, restarts, random_start
        As :class:`~fedsim.evasion.pgd.PGD`.
    eot : int
        Draws m ≥ 1 per gradient.

    Examples
    --------
    >>> from fedsim.purification import Identity
    >>> lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    >>> _ = lin[1].weight.data.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[[[0.6, 0.4]]]]), torch.tensor([0])
    >>> attack = FullEOT(Identity(), eps=0.2, steps=10)
    >>> attack.label
    'pgd_full_eot-linf-0.2'
    >>> torch.equal(attack(lin, x, y, torch.Generator().manual_seed(0)),
    ...             PGD(eps=0.2, steps=10)(lin, x, y, torch.Generator().manual_seed(0)))
    True
    """

    name = "pgd_full_eot"

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
    ) -> None:
        super().__init__(eps, steps, alpha, norm, restarts, random_start)
        if not callable(purifier):
            raise InvalidSettingError(f"{self.name} needs a callable purifier, got {purifier!r}")
        self.purifier = purifier
        self.eot = require_int(self.name, "eot", eot, minimum=1)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """PGD's restarts with the EOT-averaged gradient through the purifier."""
        through = Purified(model, self.purifier, generator)
        m, tiled = self.eot, y.repeat(self.eot)

        def forward(z: torch.Tensor) -> torch.Tensor:
            return torch.cat([through(z) for _ in range(m)])  # (m·B, K): draw-major

        def objective(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, tiled, reduction="sum") / m

        return self.restarts_of(forward, objective, through, x, y, generator)
