r"""Reverse-time samplers from :math:`x_{t^*}` back to data: SDE (Euler–Maruyama), ODE, one shot.

``eps_model(x, t)`` is the noise predictor; the score is
:math:`s(x, t) = -\varepsilon(x, t)/\sqrt{1-\bar\alpha(t)}`. All inputs and outputs are on the
data scale [−1, 1]. Nothing here detaches: gradients flow through every step (the full-gradient
adaptive attack differentiates a sampler end to end).

- :func:`reverse_sde`: the reverse SDE of Anderson (1982) / Song et al. (ICLR 2021, Eq. 6),
  :math:`dx = [-\tfrac12\beta x - \beta s(x, t)]\,dt + \sqrt\beta\, d\bar W`, integrated with
  Euler–Maruyama from :math:`t^*` to :math:`t_{\min}` (DiffPure, Nie et al., ICML 2022).
- :func:`probability_flow`: the probability-flow ODE
  :math:`dx = [-\tfrac12\beta x - \tfrac12\beta s(x, t)]\,dt` (Song et al., Eq. 13), solved with
  the first-order exponential integrator in :math:`\bar\alpha`, which is DDIM with η = 0
  (Song, Meng and Ermon, ICLR 2021; Lu et al., DPM-Solver-1, NeurIPS 2022): deterministic and
  accurate with few steps.
- :func:`one_shot`: Tweedie's posterior mean :math:`\hat x_0` from one network call (denoised
  smoothing, Carlini et al., ICLR 2023).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fedsim.purification.diffusion.sde import VPSDE
from fedsim.purification.diffusion.training import T_MIN

__all__ = ["EpsModel", "one_shot", "probability_flow", "reverse_sde"]

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _scalar(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.tensor(t, dtype=x.dtype, device=x.device)


def one_shot(eps_model: EpsModel, sde: VPSDE, x_t: torch.Tensor, t: float) -> torch.Tensor:
    r""":math:`\hat x_0 = (x_t - \sqrt{1-\bar\alpha}\,\varepsilon(x_t, t))/\sqrt{\bar\alpha}`.

    Examples
    --------
    >>> sde, x0 = VPSDE(), torch.ones(1, 1, 2, 2)
    >>> noise = torch.full_like(x0, 0.5)
    >>> x_t, _ = sde.marginal(x0, torch.tensor(0.3), noise)
    >>> oracle = lambda x, t: noise  # knows the noise: recovers x0 exactly
    >>> torch.allclose(one_shot(oracle, sde, x_t, 0.3), x0)
    True
    """
    a = sde.alpha_bar(_scalar(t, x_t))
    return (x_t - torch.sqrt(1 - a) * eps_model(x_t, _scalar(t, x_t))) / torch.sqrt(a)


def probability_flow(
    eps_model: EpsModel, sde: VPSDE, x: torch.Tensor, t_start: float, steps: int
) -> torch.Tensor:
    r"""DDIM (η = 0) on ``steps`` equal time steps from ``t_start`` to 0.

    .. math:: \hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\,\hat\varepsilon}{\sqrt{\bar\alpha_t}}
        \text{ (clipped to } [-1, 1]), \qquad
        x_s = \sqrt{\bar\alpha_s}\,\hat x_0 + \sqrt{1-\bar\alpha_s}\,\hat\varepsilon,

    with :math:`\hat\varepsilon = \varepsilon(x_t, t)`; the last step (s = 0) returns
    :math:`\hat x_0`. Clipping :math:`\hat x_0` to the data range is DDIM's ``clip_denoised``.

    Examples
    --------
    >>> sde, x0 = VPSDE(), torch.full((1, 1, 2, 2), 0.25)
    >>> noise = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    >>> x_t, std = sde.marginal(x0, torch.tensor(0.2), noise)
    >>> oracle = lambda x, t: (x - sde.alpha_bar(t).sqrt() * x0) / (1 - sde.alpha_bar(t)).sqrt()
    >>> torch.allclose(probability_flow(oracle, sde, x_t, 0.2, steps=3), x0, atol=1e-6)
    True
    """
    times = torch.linspace(t_start, 0.0, steps + 1).tolist()
    for t, s in zip(times[:-1], times[1:], strict=True):
        a_t, a_s = sde.alpha_bar(_scalar(t, x)), sde.alpha_bar(_scalar(s, x))
        eps = eps_model(x, _scalar(t, x))
        x0 = ((x - torch.sqrt(1 - a_t) * eps) / torch.sqrt(a_t)).clamp(-1.0, 1.0)
        x = torch.sqrt(a_s) * x0 + torch.sqrt(1 - a_s) * eps if s > 0 else x0
    return x


def reverse_sde(
    eps_model: EpsModel,
    sde: VPSDE,
    x: torch.Tensor,
    t_start: float,
    steps: int,
    generator: torch.Generator,
) -> torch.Tensor:
    r"""Euler–Maruyama on the reverse SDE, ``steps`` equal steps of h from ``t_start`` to t_min.

    .. math:: x \leftarrow x + \bigl[\tfrac12\beta(t)\,x + \beta(t)\,s(x, t)\bigr] h
        + \sqrt{\beta(t)\,h}\; z, \qquad z \sim N(0, I),

    with the noise left out of the last step (Song et al.'s predictor returns the last mean).
    """
    h = (t_start - T_MIN) / steps
    for k in range(steps):
        t = _scalar(t_start - k * h, x)
        beta = sde.beta(t)
        score = -eps_model(x, t) / torch.sqrt(1 - sde.alpha_bar(t))
        x = x + (0.5 * beta * x + beta * score) * h
        if k < steps - 1:
            z = torch.randn(x.shape, generator=generator, device=generator.device)
            x = x + torch.sqrt(beta * h) * z.to(x.device, x.dtype)
    return x
