"""MI-FGSM: momentum iterative FGSM on a surrogate ensemble, for transfer (Dong et al., 2018)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedsim.errors import InvalidSettingError
from fedsim.evasion.base import (
    EvasionAttack,
    attack_mode,
    check_alpha,
    check_eps,
    check_norm,
    check_steps,
)
from fedsim.evasion.core import cross_entropy_objective, perturb
from fedsim.evasion.registry import EVASION_ATTACKS
from fedsim.validation import require_real

__all__ = [
    "Ensemble",
    "MIFGSM",
]


class Ensemble(nn.Module):
    r"""Logit fusion of models (Dong et al., CVPR 2018, eq. 7 with equal weights).

    .. math:: \ell(x) = \frac{1}{M} \sum_{m=1}^{M} \ell_m(x)

    Examples
    --------
    >>> a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    >>> for m, v in ((a, 1.0), (b, 3.0)):
    ...     _ = m.weight.data.fill_(v); _ = m.bias.data.zero_()
    >>> Ensemble([a, b])(torch.ones(1, 1)).item()
    2.0
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise InvalidSettingError("an ensemble needs at least one surrogate model, got none")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean logits of the members."""
        return torch.stack([m(x) for m in self.members]).mean(dim=0)


@EVASION_ATTACKS.register("mifgsm")
class MIFGSM(EvasionAttack):
    r"""Momentum iterative FGSM (Dong et al., CVPR 2018).

    "Boosting Adversarial Attacks with Momentum".

    From :math:`x^0 = x`, :math:`g^0 = 0`, for :math:`t = 0, \dots, T-1`:

    .. math:: g^{t+1} = \mu g^t + \frac{\nabla_x J(x^t)}{\lVert \nabla_x J(x^t) \rVert_1},
        \qquad x^{t+1} = \Pi_{B_\varepsilon(x) \cap [0,1]^d}\bigl(x^t + \alpha\, s(g^{t+1})\bigr)

    with :math:`J` the cross-entropy of the surrogates' fused logits (:class:`Ensemble`),
    :math:`s` = sign (ℓ∞) or ℓ2 normalisation, μ the decay (1 in the paper) and
    :math:`\alpha = \varepsilon/T` by default. Crafted on ``surrogates`` when given (a transfer,
    black-box attack on the model it is called with); on that model itself otherwise.

    Parameters
    ----------
    eps : float
        Radius ε ≥ 0.
    steps : int
        Iterations T ≥ 1.
    alpha : float or None
        Step size α > 0; default ε/T.
    decay : float
        Momentum μ ≥ 0.
    norm : {"linf", "l2"}
        The ball's norm.
    surrogates : sequence of nn.Module or None
        Models of [0, 1] pixels the examples are crafted on.

    Raises
    ------
    InvalidSettingError
        On invalid ``eps``, ``steps``, ``alpha``, ``decay`` or ``norm``, or an empty
        ``surrogates`` list.

    Examples
    --------
    >>> lin = nn.Linear(2, 2, bias=False)
    >>> _ = lin.weight.data.copy_(torch.eye(2))
    >>> x, y = torch.tensor([[0.6, 0.4]]), torch.tensor([0])
    >>> x_adv = MIFGSM(eps=0.2, steps=4)(lin, x, y, torch.Generator())
    >>> [round(v, 4) for v in x_adv[0].tolist()]
    [0.4, 0.6]
    """

    name = "mifgsm"

    def __init__(
        self,
        eps: float,
        steps: int = 10,
        alpha: float | None = None,
        decay: float = 1.0,
        norm: str = "linf",
        surrogates: Sequence[nn.Module] | None = None,
    ) -> None:
        self.eps = check_eps(self.name, eps)
        self.steps = check_steps(self.name, steps)
        self.alpha = self.eps / self.steps if alpha is None else check_alpha(self.name, alpha)
        self.decay = require_real(self.name, "decay", decay, low=0.0)
        self.norm = check_norm(self.name, norm)
        self._surrogate = None if surrogates is None else Ensemble(list(surrogates))

    @property
    def label(self) -> str:
        """``"mifgsm-<norm>-<eps>"``, with ``-transfer`` when crafted on surrogates."""
        suffix = "-transfer" if self._surrogate is not None else ""
        return f"{self.name}-{self.norm}-{self.eps:g}{suffix}"

    def generate(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Momentum steps on the surrogates (or ``model``); the generator is not drawn from."""
        source = model if self._surrogate is None else self._surrogate
        with attack_mode(source):
            return perturb(
                source,
                cross_entropy_objective(y),
                x,
                x,
                eps=self.eps,
                alpha=self.alpha,
                steps=self.steps,
                norm=self.norm,
                decay=self.decay,
            )
