"""Scaling: send the honest update multiplied by a factor."""

from __future__ import annotations

import torch

from fedsim.attacks.local import UpdateAttack, as_delta
from fedsim.attacks.registry import ATTACKS
from fedsim.errors import InvalidSettingError
from fedsim.validation import is_real

__all__ = ["Scaling"]


@ATTACKS.register("scaling")
class Scaling(UpdateAttack):
    r"""Send the honest update scaled: :math:`\tilde\Delta = \lambda\,\Delta`.

    :math:`\Delta` is the client's honest update and :math:`\lambda` the ``factor``; a large
    factor lets one client dominate a plain mean (explicit boosting).

    Parameters
    ----------
    factor : float
        :math:`\lambda`, finite and non-zero (default 10).

    Examples
    --------
    >>> Scaling(factor=3.0).transform_update(torch.tensor([1.0, -0.5, 0.0])).tolist()
    [3.0, -1.5, 0.0]

    References
    ----------
    Bhagoji, Chakraborty, Mittal, Calo. Analyzing Federated Learning through an Adversarial
    Lens. ICML 2019.
    """

    name = "scaling"
    strength_key = "factor"

    def __init__(self, factor: float = 10.0) -> None:
        if not (is_real(factor) and factor != 0):
            raise InvalidSettingError(f"scaling needs a finite, non-zero factor, got {factor!r}")
        self.factor = float(factor)

    def transform_update(
        self,
        delta: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return ``factor · delta`` (float64)."""
        return as_delta(delta, self.name) * self.factor
