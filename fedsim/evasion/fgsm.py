"""FGSM: one signed-gradient step (Goodfellow et al., ICLR 2015)."""

from __future__ import annotations

import torch
from torch import nn

from fedsim.evasion.base import EvasionAttack, check_eps
from fedsim.evasion.core import cross_entropy_objective, perturb
from fedsim.evasion.registry import EVASION_ATTACKS

__all__ = ["FGSM"]


@EVASION_ATTACKS.register("fgsm")
class FGSM(EvasionAttack):
    r"""The fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015).

    .. math:: x' = \operatorname{clip}_{[0,1]}\bigl(x + \varepsilon\,
        \operatorname{sign}(\nabla_x \mathrm{CE}(f(x), y))\bigr)

    with :math:`f` the model of [0, 1] pixels and ε the ℓ∞ radius. Deterministic: the generator
    is not drawn from.

    Parameters
    ----------
    eps : float
        ℓ∞ radius ε ≥ 0.

    Raises
    ------
    InvalidSettingError
        If ``eps`` is negative or not finite.

    Examples
    --------
    >>> lin = nn.Linear(2, 2, bias=False)
    >>> _ = lin.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    >>> x, y = torch.tensor([[0.6, 0.4]]), torch.tensor([0])
    >>> attack = FGSM(eps=0.1)
    >>> attack.label
    'fgsm-0.1'
    >>> attack(lin, x, y, torch.Generator()).tolist()  # ∇ CE = W^T (p - e_0): (-, +)
    [[0.5, 0.5]]
    """

    name = "fgsm"
    norm = "linf"

    def __init__(self, eps: float) -> None:
        self.eps = check_eps(self.name, eps)

    @property
    def label(self) -> str:
        """``"fgsm-<eps>"``."""
        return f"fgsm-{self.eps:g}"

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """One step of size ε from ``x`` (no random start)."""
        objective = cross_entropy_objective(y)
        return perturb(model, objective, x, x, eps=self.eps, alpha=self.eps, steps=1, norm="linf")
