"""Uniform noise in the ε-ball: the baseline every evasion attack must beat."""

from __future__ import annotations

import torch
from torch import nn

from fedsim.evasion.base import EvasionAttack, check_eps, check_norm
from fedsim.evasion.core import project, uniform_ball
from fedsim.evasion.registry import EVASION_ATTACKS

__all__ = ["UniformNoise"]


@EVASION_ATTACKS.register("noise")
class UniformNoise(EvasionAttack):
    r"""Random noise of the attack's budget: the floor an attack's figure is read against.

    .. math:: x' = \Pi_{B_\varepsilon(x) \cap [0,1]^d}(x + \delta), \qquad
        \delta \sim U(B_\varepsilon)

    with :math:`U(B_\varepsilon)` uniform in the ℓ∞ cube :math:`[-\varepsilon, \varepsilon]^d`
    or in the volume of the ℓ2 ball (:func:`~fedsim.evasion.core.uniform_ball`) and Π the clip to
    [0, 1] (:func:`~fedsim.evasion.core.project`). It reads neither the model nor the labels;
    an attack that does no better than this at the same ε has learned nothing about the model
    (the sanity check of Carlini et al., 2019, §5.2).

    Parameters
    ----------
    eps : float
        Radius ε ≥ 0.
    norm : {"linf", "l2"}
        The ball's norm.

    Raises
    ------
    InvalidSettingError
        On a negative or infinite ``eps`` or an unknown ``norm``.

    Examples
    --------
    >>> x = torch.full((2, 1, 2, 2), 0.95)
    >>> attack = UniformNoise(eps=0.1)
    >>> attack.label
    'noise-linf-0.1'
    >>> x_adv = attack(nn.Flatten(), x, torch.zeros(2), torch.Generator().manual_seed(0))
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), bool(x_adv.max() <= 1.0)
    (True, True)
    """

    name = "noise"

    def __init__(self, eps: float, norm: str = "linf") -> None:
        self.eps = check_eps(self.name, eps)
        self.norm = check_norm(self.name, norm)

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """``x`` plus one uniform draw per sample from ``generator``, clipped to [0, 1]."""
        delta = uniform_ball(x.shape, self.eps, self.norm, generator).to(x.device, x.dtype)
        return project(x + delta, x, self.eps, self.norm)
