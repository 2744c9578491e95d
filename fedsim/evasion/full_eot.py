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
from torch import nn

from fedsim.evasion.bpda import BPDAEOT
from fedsim.evasion.purified import Purified

__all__ = ["FullEOT"]


class FullEOT(BPDAEOT):
    r"""PGD through a purifier with its true gradient, EOT over ``eot`` draws.

    Each step differentiates :math:`\frac1m\sum_j \mathrm{CE}(f(P_j(x)), y)` end to end; the
    first candidate is the non-adaptive PGD example (``transfer_start``), and candidates are
    judged as in :class:`~fedsim.evasion.bpda.BPDAEOT` (exactly through a deterministic P; by
    the attacker's m-draw estimate, keeping the worst for the defender, through a random one).
    With P the identity and m = 1 it is PGD with 2R restarts. The same attack as
    :class:`~fedsim.evasion.bpda.BPDAEOT` (settings, restarts, EOT) but for the gradient it
    follows.

    Parameters
    ----------
    purifier : Purifier
        P; its forward pass must be differentiable (bit depth's is zero almost everywhere: use
        BPDA there).
    eps, steps, alpha, norm, restarts, random_start
        As :class:`~fedsim.evasion.pgd.PGD`.
    eot : int
        Draws m ≥ 1 per gradient.
    transfer_start : bool
        Try the non-adaptive PGD example (crafted on f alone) first; default ``True``.

    Examples
    --------
    >>> from fedsim.evasion.pgd import PGD
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

    def through(self, model: nn.Module, generator: torch.Generator) -> nn.Module:
        """f(P(x)) differentiated end to end, through every step of P."""
        return Purified(model, self.purifier, generator)
