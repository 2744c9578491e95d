"""IPM: inner-product manipulation, sending a small negative multiple of the mean."""

from __future__ import annotations

import torch

from fedsim.attacks.colluding.base import ColludingAttack, CraftedUpdates
from fedsim.attacks.registry import ATTACKS
from fedsim.attacks.strength import Tunable
from fedsim.validation import require_real

__all__ = ["IPM"]


@ATTACKS.register("ipm")
class IPM(ColludingAttack):
    r"""Inner-product manipulation: every malicious client sends :math:`-\varepsilon\,\mu`.

    .. math:: m = -\varepsilon \cdot \frac{1}{k}\sum_{i=1}^{k} \Delta_i

    :math:`\Delta_1, \dots, \Delta_k` are the observed updates and :math:`\varepsilon` the
    ``epsilon`` setting. A small :math:`\varepsilon` (0.1) keeps *m* close to the benign
    updates and defeats Krum-like rules; a large one (100) defeats median-like rules.

    Parameters
    ----------
    epsilon : float
        :math:`\varepsilon > 0`, finite (default 0.1).

    Examples
    --------
    >>> u = torch.tensor([[1.0, 0.0, 2.0], [3.0, 0.0, 2.0], [5.0, 3.0, 2.0]], dtype=torch.float64)
    >>> IPM(epsilon=0.5)(u, n=5, f=2, generator=torch.Generator()).updates.tolist()
    [[-1.5, -0.5, -1.0], [-1.5, -0.5, -1.0]]

    References
    ----------
    Xie, Koyejo, Gupta. Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product
    Manipulation. UAI 2020.
    """

    name = "ipm"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = require_real("ipm", "epsilon", epsilon, low=0.0, low_open=True)

    def tunable(
        self,
        observed: torch.Tensor,
        *,
        n: int,
        f: int,
        generator: torch.Generator | None = None,
    ) -> Tunable:
        r"""The round with ε free: :math:`m(\varepsilon) = -\varepsilon\mu`."""
        mean = observed.mean(dim=0)
        return Tunable(
            key="epsilon",
            default=self.epsilon,
            craft=lambda eps: (-eps * mean).expand(f, -1).clone(),
            info=lambda eps: {"epsilon": eps},
        )

    def craft(
        self, observed: torch.Tensor, *, n: int, f: int, generator: torch.Generator
    ) -> CraftedUpdates:
        r"""Return *f* copies of :math:`-\varepsilon\mu`."""
        malicious = -self.epsilon * observed.mean(dim=0)
        return CraftedUpdates(malicious.expand(f, -1).clone(), {"epsilon": self.epsilon})
