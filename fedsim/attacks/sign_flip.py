"""Sign flipping: send the negated (optionally scaled) honest update."""

from __future__ import annotations

import torch

from fedsim.attacks.local import UpdateAttack, as_delta
from fedsim.attacks.registry import ATTACKS
from fedsim.validation import require_real

__all__ = ["SignFlip"]


@ATTACKS.register("sign_flip")
class SignFlip(UpdateAttack):
    r"""Send the honest update reversed: :math:`\tilde\Delta = -s\,\Delta`.

    :math:`\Delta` is the client's honest update and :math:`s` the ``scale``.

    Parameters
    ----------
    scale : float
        :math:`s > 0`, finite (default 1: plain sign flip).

    Examples
    --------
    >>> SignFlip(scale=2.0).transform_update(torch.tensor([1.0, -0.5, 0.0])).tolist()
    [-2.0, 1.0, -0.0]

    References
    ----------
    Damaskinos, El Mhamdi, Guerraoui, Patra, Taziki. Asynchronous Byzantine Machine Learning
    (the case of SGD). ICML 2018.
    Li, Xu, Chen, Giannakis, Ling. RSA: Byzantine-Robust Stochastic Aggregation Methods for
    Distributed Learning from Heterogeneous Datasets. AAAI 2019.
    """

    name = "sign_flip"
    strength_key = "scale"

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = require_real("sign_flip", "scale", scale, low=0.0, low_open=True)

    def transform_update(
        self,
        delta: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return ``−scale · delta`` (float64)."""
        return as_delta(delta, self.name) * -self.scale
