"""CRFL's server step: clip the global model and perturb it after each round (Xie et al., 2021).

The rule API sees a round's *updates*, not the global model, so CRFL's server step is a pure
function for the strategy to call on the new global vector (:func:`crfl_clip_and_perturb`).
The certification side — the certified radius (their Theorem 3) and the parameter-smoothing
vote at test time — lives in :mod:`fedsim.certify.crfl`; the ``crfl`` probe
(:mod:`server.probes.crfl`) runs it on the final global model.
"""

from __future__ import annotations

import torch

from server.aggregators.common import clip_to_norm, require_real

__all__ = ["crfl_clip_and_perturb"]


def crfl_clip_and_perturb(
    global_params: torch.Tensor, rho: float, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    r"""Return CRFL's server step :math:`w \min(1, \rho/\|w\|_2) + \mathcal N(0, \sigma^2 I)`.

    w is the global model's flat parameter vector after aggregation (full weights, not a
    delta), ρ the round's parameter-norm bound and σ the noise std; the noise comes from
    ``generator`` (σ = 0 draws nothing). The result is float64.

    Parameters
    ----------
    global_params : torch.Tensor
        w, shape ``(d,)``.
    rho : float
        ρ > 0.
    sigma : float
        σ ≥ 0.
    generator : torch.Generator
        The noise source (the strategy's own, seeded once per run).

    Returns
    -------
    torch.Tensor
        The new global vector, float64, shape ``(d,)``.

    Raises
    ------
    InvalidSettingError
        ρ ≤ 0 or σ < 0.

    Examples
    --------
    >>> w = torch.tensor([3.0, 4.0, 0.0])
    >>> crfl_clip_and_perturb(w, 1.0, 0.0, torch.Generator()).round(decimals=12).tolist()
    [0.6, 0.8, 0.0]
    """
    rho = require_real("crfl", "rho", rho, low=0.0, low_open=True)
    sigma = require_real("crfl", "sigma", sigma, low=0.0)
    clipped, _ = clip_to_norm(global_params.to(torch.float64).reshape(1, -1), rho)
    out = clipped[0]
    if sigma > 0:
        out = out + sigma * torch.randn(out.shape, generator=generator, dtype=torch.float64)
    return out
