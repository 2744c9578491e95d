"""Gaussian attack: send random noise instead of the update."""

from __future__ import annotations

import torch

from fedsim.attacks.local import UpdateAttack, as_delta
from fedsim.attacks.registry import ATTACKS
from fedsim.errors import InvalidSettingError
from fedsim.validation import require_real

__all__ = ["Gaussian"]


@ATTACKS.register("gaussian")
class Gaussian(UpdateAttack):
    r"""Send Gaussian noise instead of the honest update.

    .. math:: \tilde\Delta \sim \mathcal N(0, \sigma^2 I_d)

    :math:`d` is the number of parameters and :math:`\sigma` the ``sigma`` setting; the honest
    update only fixes the shape. The noise is drawn (in float64, on the CPU) from the
    generator passed to :meth:`transform_update`, so the same seed gives the same update.

    Parameters
    ----------
    sigma : float
        :math:`\sigma > 0`, finite (default 1).

    Examples
    --------
    >>> noise = Gaussian(sigma=2.0).transform_update(
    ...     torch.zeros(10_000), generator=torch.Generator().manual_seed(0))
    >>> round(noise.std().item(), 1), noise.dtype
    (2.0, torch.float64)

    References
    ----------
    Blanchard, El Mhamdi, Guerraoui, Stainer. Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent. NeurIPS 2017.
    """

    name = "gaussian"
    strength_key = "sigma"
    strength_bounds = (0.001, 10.0)

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = require_real("gaussian", "sigma", sigma, low=0.0, low_open=True)

    def transform_update(
        self,
        delta: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return ``N(0, sigma² I)`` noise shaped like ``delta``, drawn from ``generator``.

        Raises
        ------
        InvalidSettingError
            No generator was given (the draw must be seeded).
        """
        out = as_delta(delta, self.name)
        if generator is None:
            raise InvalidSettingError(
                "gaussian needs the client's seeded generator to draw its noise; pass generator="
            )
        noise = torch.randn(out.shape, generator=generator, dtype=torch.float64)
        return (noise * self.sigma).to(out.device)
